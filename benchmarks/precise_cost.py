"""What precise prefix routing costs the EPP: per request, and per KV event ingested.

Per request (8k-token prompts, medians of ``--repeats``): tokenizing with a real BPE
``tokenizer.json`` (8192 tokens, built here with the ``tokenizers`` package, nothing
downloaded) as the EPP does (its fast encoder, checked against the package), with the package
alone, and with the simulator's tokenizer; computing the block keys; the index lookup against 8
endpoints' entries; the two producers' whole ``prepare`` as the scheduler runs it (block size
16, and 64 as llm-d's deploy config has it); and, for comparison, the approximate prefix
producer's ``prepare`` on the same kind of request.

Two kinds of text. The first three columns use generated words of an artificial language
(``WORDS``), on which the 8192-token BPE is trained: about 7 characters per token, so an
8k-token prompt is ~57 KB, a worst case for everything that scales with the text (tokenizing,
digests, cut searches). The fourth trains the same kind of BPE on English: the docstrings of
this Python's standard library (read from its source files with ``ast``, nothing imported or
downloaded; the figures move a little with the Python version), and cuts prompts and questions
out of that text, at about 4 characters per token as English has with real models' tokenizers.

Ingestion: a child process runs 8 PUB sockets, each sending vLLM ``KVEventBatch``es at
``--rate`` block events per second (half ``BlockStored``, half ``BlockRemoved``, one batch every
20 ms, as an engine step would); this process subscribes over real ZMQ (127.0.0.1) through
:class:`KVEventSubscriber` on uvloop (the event loop ``epp run`` uses), and its own CPU time
over a window (``getrusage``) is the cost: the median of three windows.

    .venv/bin/python benchmarks/precise_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import multiprocessing as mp
import random
import resource
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import cache, partial
from pathlib import Path
from typing import Any

from endpoint_picker.datalayer.kvevents_zmq import KVEventSubscriber
from endpoint_picker.datastore import Datastore
from endpoint_picker.requests.tokenize import HFTokenizer, SimTokenizer
from endpoint_picker.requests.tokenize_cache import ChunkedTokenizer
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.plugins.precise import PrecisePrefixCacheProducer
from endpoint_picker.scheduling.plugins.precise_index import block_keys, root_key
from endpoint_picker.scheduling.plugins.prefix import ApproxPrefixCacheProducer
from endpoint_picker.scheduling.plugins.token_producer import TokenProducer
from results_file import write_results

SERVERS = 8
PROMPT_TOKENS = 8192
SUFFIXES = (256, 819)  # a fresh question of 256 tokens; 10% of the prompt
# Requests before timing: past the chunk cache's self-check (its first 16 prompts are also
# tokenized whole) and the fast BPE encoder's (its first 64 calls are also run through the
# tokenizers package); both then check one call in hundreds, which a median does not see.
WARM = 70
WINDOWS = 3  # ingestion windows; the median is the figure
WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "ra", "se", "ti", "vo") for b in "aeiouyxz"]


def build_tokenizer(directory: Path, corpus: list[str] | None = None) -> Path:
    """A byte-level BPE with 8192 tokens, trained on ``corpus`` (default: generated words)
    in seconds, offline; its ``tokenizer.json`` in ``directory``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if corpus is None:
        rng = random.Random(1)
        corpus = [
            " ".join(rng.choice(WORDS) + rng.choice(WORDS) for _ in range(200)) for _ in range(500)
        ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=8192, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(corpus, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.json"
    tok.save(str(path))
    return path


Source = Callable[[random.Random, int], str]  # n words of text


def words_of(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) + rng.choice(WORDS) for _ in range(n))


ENGLISH_CHARS = 1_000_000  # docstring text gathered (the first files' in sorted order)
SKIP = {"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "site-packages"}


@cache
def english_docs() -> tuple[str, ...]:
    """Docstrings of 200+ characters from the standard library's source files, in path order,
    until ``ENGLISH_CHARS`` (parsed with ``ast``: nothing is imported)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: dict[str, None] = {}
    size = 0
    for path in sorted(root.rglob("*.py")):
        if SKIP & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 200 and doc not in docs:
                    docs[doc] = None
                    size += len(doc)
        if size >= ENGLISH_CHARS:
            break
    return tuple(docs)


@cache
def _english_words() -> list[str]:
    return "\n\n".join(english_docs()).split(" ")


def english_of(rng: random.Random, n: int) -> str:
    """``n`` consecutive space-separated words of the docstrings, from a random place."""
    words = _english_words()
    start = rng.randrange(len(words) - n) if len(words) > n else 0
    return " ".join(words[start : start + n])


def text_of(
    backend: HFTokenizer | SimTokenizer, rng: random.Random, tokens: int, source: Source = words_of
) -> str:
    """Text of at most ``tokens`` tokens for ``backend``, as close as whole words get."""
    words = source(rng, tokens).split(" ")
    per_word = len(backend.encode(" ".join(words), True)) / len(words)
    guess = int(tokens / per_word)
    while len(backend.encode(" ".join(words[:guess]), True)) < tokens and guess < len(words):
        words += source(rng, tokens // 4).split(" ")
        guess = min(len(words), guess + tokens // 8)
    lo, hi = max(1, int(guess * 0.9)), min(len(words), int(guess * 1.1) + 1)
    if len(backend.encode(" ".join(words[:lo]), True)) > tokens:
        lo = 1
    while lo < hi:  # the most words that stay within ``tokens``
        mid = (lo + hi + 1) // 2
        if len(backend.encode(" ".join(words[:mid]), True)) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def p50_us(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median CPU time of ``fn`` (the process's, ``time.process_time``) and median wall time,
    in us. CPU time is the figure: on a machine shared with other work, wall time measures the
    other work's share of the cores as much as ours, while CPU time is what the call itself
    costs (the two agree on an idle machine: the call never waits)."""
    cpu, wall = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return statistics.median(cpu) * 1e6, statistics.median(wall) * 1e6


def populated_producer(
    keys: list[int], rng: random.Random, block_size: int = 16
) -> PrecisePrefixCacheProducer:
    """The precise producer as config precise-prefix.yaml builds it, its index holding: each of
    8 endpoints a different share of ``keys``, and 20,000 unrelated 8-block chains."""
    prod = PrecisePrefixCacheProducer.from_params(
        "p", {"tokenProcessorConfig": {"blockSize": block_size}, "speculativeIndexing": True}
    )
    for s in range(SERVERS):
        prod.index.add(keys[: len(keys) * (s + 1) // SERVERS], f"ep-{s}")
    for s in range(20_000):
        prod.index.add([rng.getrandbits(63) for _ in range(8)], f"ep-{s % SERVERS}")
    return prod


def completion(text: str) -> InferenceRequest:
    """A fresh completions request for ``text``, as the EPP parses one."""
    return InferenceRequest(
        "r", {}, body={"prompt": text}, api="completions", target_model="m", prompt_text=text
    )


def prepare_p50(
    backend: HFTokenizer | SimTokenizer,
    prod: PrecisePrefixCacheProducer,
    prompts: Iterator[str],
    repeats: int,
    warm: int,
) -> tuple[float, float]:
    """p50 of both producers' ``prepare`` (token-producer, then precise-prefix-cache-producer)
    as the scheduler runs them, for fresh requests with the texts ``prompts`` yields."""
    tp = TokenProducer("t", ChunkedTokenizer(backend))

    def prepare() -> None:
        req = completion(next(prompts))
        tp.prepare(req, [])
        prod.prepare(req, [])

    for _ in range(warm):  # past the self-checks (see WARM); memo warm
        prepare()
    return p50_us(prepare, repeats)


def approx_p50(prompts: Iterator[str], repeats: int) -> tuple[float, float]:
    """p50 of ``approx-prefix-cache-producer``'s ``prepare`` (the default configuration's
    prefix producer, which the precise pipeline replaces) for the same requests, its index
    holding each prompt's blocks on one of 8 endpoints."""
    prod = ApproxPrefixCacheProducer("a")

    def prepare() -> None:
        req = completion(next(prompts))
        prod.prepare(req, [])
        state = req.state[prod.state_key]
        prod.index.add(state.hashes, f"ep-{len(state.hashes) % SERVERS}", 1_000_000)

    for _ in range(20):
        prepare()
    return p50_us(prepare, repeats)


def per_request(repeats: int, tokenizers: Path) -> dict[str, Any]:
    """Medians per request, per tokenizer and text (see the module docstring); the tokenizer
    files are built under ``tokenizers``."""
    rng = random.Random(7)
    words = build_tokenizer(tokenizers / "words")
    english = build_tokenizer(tokenizers / "english", list(english_docs()))
    columns: tuple[tuple[str, HFTokenizer | SimTokenizer, Source], ...] = (
        ("bpe-8192", HFTokenizer(str(words)), words_of),
        ("bpe-8192, tokenizers package only", HFTokenizer(str(words), fast=False), words_of),
        ("simulator", SimTokenizer(), words_of),
        ("bpe-8192, English text", HFTokenizer(str(english)), english_of),
    )
    novel_repeats = max(10, repeats // 5)
    print(f"per request, {PROMPT_TOKENS}-token prompts, medians of {repeats}:", flush=True)
    out: dict[str, Any] = {"prompt_tokens": PROMPT_TOKENS, "repeats": repeats, "tokenizers": {}}
    for name, backend, source in columns:
        row: dict[str, Any] = {}
        m: dict[str, tuple[float, float]] = {}  # key -> (CPU, wall) medians
        text = text_of(backend, rng, PROMPT_TOKENS, source)
        ids = backend.encode(text, True)
        row["tokens"] = len(ids)
        row["chars_per_token"] = round(len(text) / len(ids), 2)
        for _ in range(WARM):  # past the fast encoder's check window (see WARM)
            backend.encode("warm up", True)
        m["tokenize_whole_us"] = p50_us(partial(backend.encode, text, True), repeats)
        root = root_key("", "m")
        m["keys_whole_us"] = p50_us(partial(block_keys, ids, 16, root), repeats)
        prod = populated_producer(block_keys(ids, 16, root), rng)
        keys = block_keys(ids, 16, root)
        m["lookup_us"] = p50_us(partial(prod.index.match, keys, 0.0), repeats)
        question = " " + text_of(backend, rng, SUFFIXES[0], source)
        m["tokenize_suffix_us"] = p50_us(partial(backend.encode, question, True), repeats)
        for suffix in SUFFIXES:
            system = text_of(backend, rng, PROMPT_TOKENS - suffix, source)
            questions = [" " + text_of(backend, rng, suffix, source) for _ in range(repeats + WARM)]
            prompts = (system + q for q in questions)
            m[f"prepare_shared_{suffix}_us"] = prepare_p50(backend, prod, prompts, repeats, WARM)
            if suffix == SUFFIXES[0]:
                # llm-d's deploy config (epp-precise-prefix-cache-config.yaml): blockSize 64
                ids64 = backend.encode(system, True)
                prod64 = populated_producer(block_keys(ids64, 64, root), rng, 64)
                more = iter(
                    [
                        system + " " + text_of(backend, rng, suffix, source)
                        for _ in range(repeats + WARM)
                    ]
                )
                m[f"prepare_shared_{suffix}_block64_us"] = prepare_p50(
                    backend, prod64, more, repeats, WARM
                )
                if "approx_shared_us" not in out:
                    again = iter(
                        [
                            system + " " + text_of(backend, rng, suffix, source)
                            for _ in range(repeats + 20)
                        ]
                    )
                    out["approx_shared_us"], out["approx_shared_wall_us"] = approx_p50(
                        again, repeats
                    )
        novel = iter(
            [text_of(backend, rng, PROMPT_TOKENS, source) for _ in range(novel_repeats + WARM)]
        )
        m["prepare_novel_us"] = prepare_p50(backend, prod, novel, novel_repeats, WARM)
        row.update({key: cpu for key, (cpu, _) in m.items()})
        row["wall_us"] = {key: wall for key, (_, wall) in m.items()}
        out["tokenizers"][name] = row
        print(
            f"  {name:10s} tokens={row['tokens']} ({row['chars_per_token']} chars/token)  "
            f"tokenize whole {row['tokenize_whole_us']:7.0f} us"
            f"  keys whole {row['keys_whole_us']:4.0f} us  lookup {row['lookup_us']:4.0f} us  "
            + "  ".join(
                f"prepare, shared prefix + {s}-token suffix {row[f'prepare_shared_{s}_us']:5.0f} us"
                for s in SUFFIXES
            )
            + f"  prepare, novel prompt {row['prepare_novel_us']:7.0f} us",
            flush=True,
        )
    print(f"  approximate prefix producer, shared prefix + 256: {out['approx_shared_us']:.0f} us")
    return out


# -- ingestion -------------------------------------------------------------------------------


def batch_stream(servers: int, per_batch: int) -> Iterator[tuple[int, bytes]]:
    """The publishers' batches, round robin over ``servers``: (server, ``KVEventBatch``), each
    storing ``per_batch`` new blocks and removing the ones its server stored before."""
    from endpoint_picker.sim.kvevents import block_removed, block_stored, encode_batch

    rng = random.Random(3)
    prev: list[list[int]] = [[] for _ in range(servers)]
    while True:
        for i in range(servers):
            hashes = [rng.getrandbits(63) for _ in range(per_batch)]
            tokens = [rng.randrange(50_000) for _ in range(per_batch * 16)]
            events = [block_stored(hashes, None, tokens, 16)]
            if prev[i]:
                events.append(block_removed(prev[i]))
            prev[i] = hashes
            yield i, encode_batch(events, time.time())


def per_batch_of(rate: float) -> int:
    """Blocks stored per batch (as many removed), one batch every 20 ms per server."""
    return max(1, int(rate * 0.02 / 2))


def publish(ports: list[int], rate: float, seconds: float, ready: object) -> None:
    """Child process: 8 PUB sockets, ``rate`` block events/s each, batches every 20 ms."""
    import zmq

    ctx = zmq.Context()
    socks = []
    for port in ports:
        s = ctx.socket(zmq.PUB)
        s.bind(f"tcp://127.0.0.1:{port}")
        socks.append(s)
    ready.set()  # type: ignore[attr-defined]
    time.sleep(1.0)  # slow joiners
    stream = batch_stream(len(socks), per_batch_of(rate))
    seqs = [0] * len(socks)
    end = time.monotonic() + seconds
    tick = time.monotonic()
    while time.monotonic() < end:
        for _ in socks:
            i, payload = next(stream)
            socks[i].send_multipart([b"kv@x@m", seqs[i].to_bytes(8, "big"), payload])
            seqs[i] += 1
        tick += 0.02
        time.sleep(max(0.0, tick - time.monotonic()))
    for s in socks:
        s.close(linger=0)


def ingesting_producer() -> PrecisePrefixCacheProducer:
    """The precise producer whose ingester the ingestion figures measure (block size 16)."""
    return PrecisePrefixCacheProducer.from_params("p", {"tokenProcessorConfig": {"blockSize": 16}})


def apply_cost(rate: float, batches: int = 4000) -> float:
    """CPU time per batch (us) of the ingester alone, no sockets: ``batches`` of the
    publishers' batches applied in arrival order, the median of three passes."""
    stream = batch_stream(SERVERS, per_batch_of(rate))
    recorded = [next(stream) for _ in range(batches)]
    passes = []
    for _ in range(3):
        ing = ingesting_producer().ingester
        c = time.process_time()
        for n, (i, payload) in enumerate(recorded):
            ing.receive(f"ep-{i}", b"kv@x@m", n // SERVERS, payload)
        passes.append((time.process_time() - c) / batches * 1e6)
    return statistics.median(passes)


async def ingestion(rate: float, seconds: float) -> dict[str, Any]:
    import socket

    ports = []
    for _ in range(SERVERS):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    prod = ingesting_producer()
    ds = Datastore()
    names = [f"ep-{i}" for i in range(SERVERS)]
    sub = KVEventSubscriber(
        prod.ingester,
        addresses={n: f"tcp://127.0.0.1:{p}" for n, p in zip(names, ports, strict=True)},
    )
    sub.attach(ds)
    ready = mp.Event()
    child = mp.Process(target=publish, args=(ports, rate, WINDOWS * seconds + 1.0, ready))
    child.start()
    ready.wait(10)
    await sub.start()
    ds.set_static_endpoints({n: ("127.0.0.1", 8000 + i) for i, n in enumerate(names)})
    await asyncio.sleep(1.5)
    # The median of WINDOWS windows: one window's share moves by a point or two with what else
    # the (shared) machine runs.
    windows: list[tuple[float, float, int]] = []  # (cpu s, wall s, events)
    for _ in range(WINDOWS):
        before_events = prod.ingester.stats.events
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        windows.append((cpu, time.monotonic() - t0, prod.ingester.stats.events - before_events))
    shares = [c / w * 100 for c, w, _ in windows]
    cpu, wall, events = sorted(windows, key=lambda x: x[0] / x[1])[len(windows) // 2]
    await sub.stop()
    child.join(10)
    blocks_per_event = per_batch_of(rate)
    apply_us = apply_cost(rate)
    batches_per_s = SERVERS / 0.02
    print(
        f"ingestion: {SERVERS} servers x {rate:.0f} block events/s for {wall:.1f} s: "
        f"{events} events (~{events * blocks_per_event / wall:.0f} block events/s) used "
        f"{cpu / wall * 100:.1f}% of a core (user+sys, this process; median of "
        f"{', '.join(f'{x:.1f}' for x in shares)}); "
        f"index {len(prod.index)} keys; {prod.ingester.stats}; applying a batch alone "
        f"(no sockets) {apply_us:.0f} us, {apply_us * batches_per_s / 1e4:.1f}% of a core"
    )
    stats = prod.ingester.stats
    return {
        "servers": SERVERS,
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "block_events_per_s_per_server": rate,
        "seconds": round(wall, 2),
        "block_events_per_s_measured": round(events * blocks_per_event / wall),
        "core_percent": round(cpu / wall * 100, 2),
        "core_percent_windows": [round(x, 2) for x in shares],
        "apply_us_per_batch": round(apply_us, 1),
        "apply_core_percent": round(apply_us * batches_per_s / 1e4, 2),
        "gaps": stats.gaps,
        "errors": stats.errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter window")
    parser.add_argument("--repeats", type=int, default=0)
    parser.add_argument("--rate", type=float, default=1000.0, help="block events/s per server")
    parser.add_argument(
        "--no-save", action="store_true", help="print only; leave benchmarks/results/ alone"
    )
    args = parser.parse_args()
    repeats = args.repeats or (30 if args.quick else 200)
    with tempfile.TemporaryDirectory() as tmp:
        request = per_request(repeats, Path(tmp))
    import uvloop  # as `epp run` runs its event loop

    ingest = uvloop.run(ingestion(args.rate, 3.0 if args.quick else 10.0))
    if not args.no_save:
        path = write_results("precise_cost", {"per_request": request, "ingestion": ingest})
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
