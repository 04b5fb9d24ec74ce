"""What precise prefix routing costs the EPP: per request, and per KV event ingested.

Per request (8k-token prompts, medians of ``--repeats``): tokenizing with a real BPE
``tokenizer.json`` (8192 tokens, built here with the ``tokenizers`` package, nothing
downloaded) and with the simulator's tokenizer; computing the block keys; the index lookup
against 8 endpoints' entries; and the two producers' whole ``prepare`` as the scheduler runs it.

Ingestion: a child process runs 8 PUB sockets, each sending vLLM ``KVEventBatch``es at
``--rate`` block events per second (half ``BlockStored``, half ``BlockRemoved``, one batch every
20 ms, as an engine step would); this process subscribes over real ZMQ (127.0.0.1) through
:class:`KVEventSubscriber`, and its own CPU time over the window (``getrusage``) is the cost.

    .venv/bin/python benchmarks/precise_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from endpoint_picker.datalayer.kvevents_zmq import KVEventSubscriber
from endpoint_picker.datastore import Datastore
from endpoint_picker.requests.tokenize import HFTokenizer, SimTokenizer
from endpoint_picker.requests.tokenize_cache import ChunkedTokenizer
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.plugins.precise import PrecisePrefixCacheProducer
from endpoint_picker.scheduling.plugins.precise_index import block_keys, root_key
from endpoint_picker.scheduling.plugins.token_producer import TokenProducer

SERVERS = 8
PROMPT_TOKENS = 8192
WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "ra", "se", "ti", "vo") for b in "aeiouyxz"]


def build_tokenizer(directory: Path) -> Path:
    """A byte-level BPE with 8192 tokens, trained on generated text (seconds, offline)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

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
    path = directory / "tokenizer.json"
    tok.save(str(path))
    return path


def prompt_of(backend: HFTokenizer | SimTokenizer, rng: random.Random) -> str:
    """Text of about ``PROMPT_TOKENS`` tokens for ``backend``."""
    words: list[str] = []
    while True:
        words.extend(rng.choice(WORDS) + rng.choice(WORDS) for _ in range(2000))
        text = " ".join(words)
        if len(backend.encode(text, True)) >= PROMPT_TOKENS:
            return text


def p50_us(fn: object, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e6


def per_request(repeats: int, tokenizer_path: Path) -> None:
    rng = random.Random(7)
    hf = HFTokenizer(str(tokenizer_path))
    sim = SimTokenizer()
    print(f"per request, ~{PROMPT_TOKENS}-token prompts, median of {repeats}:")
    for name, backend in (("hf bpe-8192", hf), ("simulator", sim)):
        text = prompt_of(backend, rng)
        n = len(backend.encode(text, True))
        tok_us = p50_us(lambda b=backend, t=text: b.encode(t, True), repeats)
        # A shared system prompt (~90% of the tokens) and a fresh question every time.
        cut = text.index(" ", len(text) * 9 // 10)
        system = text[:cut]
        questions = iter(
            [
                " " + " ".join(rng.choice(WORDS) + rng.choice(WORDS) for _ in range(300))
                for _ in range(4 * repeats + 40)
            ]
        )
        chunked = ChunkedTokenizer(backend)
        for _ in range(chunked.verify_first + 1):  # warm the cache; past the self-check
            chunked.encode(system + next(questions), True)
        shared_us = p50_us(
            lambda c=chunked, q=questions, s=system: c.encode(s + next(q), True), repeats
        )
        ids = backend.encode(text, True)[:PROMPT_TOKENS]
        root = root_key("", "m")
        keys_us = p50_us(lambda i=ids, r=root: block_keys(i, 16, r), repeats)
        prod = PrecisePrefixCacheProducer.from_params(
            "p", {"tokenProcessorConfig": {"blockSize": 16}}
        )
        keys = block_keys(ids, 16, root_key("", ""))
        for s in range(SERVERS):  # each endpoint holds a different share of this prefix
            prod.index.add(keys[: len(keys) * (s + 1) // SERVERS], f"ep-{s}")
        for s in range(20_000):  # and unrelated entries
            prod.index.add([rng.getrandbits(63) for _ in range(8)], f"ep-{s % SERVERS}")
        match_us = p50_us(lambda k=keys, p=prod: p.index.match(k, 0.0), repeats)
        producer = TokenProducer("t", chunked)

        def prepare(tp: TokenProducer = producer, pp=prod, q=questions, s=system) -> None:  # type: ignore[no-untyped-def]
            t = s + next(q)
            req = InferenceRequest(
                "r", {}, body={"prompt": t}, api="completions", target_model="m", prompt_text=t
            )
            tp.prepare(req, [])
            pp.prepare(req, [])

        all_us = p50_us(prepare, repeats)
        print(
            f"  {name:12s} tokens={n:5d}  tokenize whole {tok_us:8.0f} us, "
            f"shared system prompt (chunk cache) {shared_us:6.0f} us  keys {keys_us:5.0f} us  "
            f"lookup {match_us:5.0f} us  both producers' prepare (shared) {all_us:6.0f} us"
        )


# -- ingestion -------------------------------------------------------------------------------


def publish(ports: list[int], rate: float, seconds: float, ready: object) -> None:
    """Child process: 8 PUB sockets, ``rate`` block events/s each, batches every 20 ms."""
    import zmq

    from endpoint_picker.sim.kvevents import block_removed, block_stored, encode_batch

    ctx = zmq.Context()
    socks = []
    for port in ports:
        s = ctx.socket(zmq.PUB)
        s.bind(f"tcp://127.0.0.1:{port}")
        socks.append(s)
    ready.set()  # type: ignore[attr-defined]
    time.sleep(1.0)  # slow joiners
    per_batch = max(1, int(rate * 0.02 / 2))  # stored blocks per batch (as many removed)
    rng = random.Random(3)
    seqs = [0] * len(socks)
    prev: list[list[int]] = [[] for _ in socks]
    end = time.monotonic() + seconds
    tick = time.monotonic()
    while time.monotonic() < end:
        for i, s in enumerate(socks):
            hashes = [rng.getrandbits(63) for _ in range(per_batch)]
            tokens = [rng.randrange(50_000) for _ in range(per_batch * 16)]
            events = [block_stored(hashes, None, tokens, 16)]
            if prev[i]:
                events.append(block_removed(prev[i]))
            prev[i] = hashes
            s.send_multipart(
                [b"kv@x@m", seqs[i].to_bytes(8, "big"), encode_batch(events, time.time())]
            )
            seqs[i] += 1
        tick += 0.02
        time.sleep(max(0.0, tick - time.monotonic()))
    for s in socks:
        s.close(linger=0)


async def ingestion(rate: float, seconds: float) -> None:
    import socket

    ports = []
    for _ in range(SERVERS):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    prod = PrecisePrefixCacheProducer.from_params("p", {"tokenProcessorConfig": {"blockSize": 16}})
    ds = Datastore()
    names = [f"ep-{i}" for i in range(SERVERS)]
    sub = KVEventSubscriber(
        prod.ingester,
        addresses={n: f"tcp://127.0.0.1:{p}" for n, p in zip(names, ports, strict=True)},
    )
    sub.attach(ds)
    ready = mp.Event()
    child = mp.Process(target=publish, args=(ports, rate, seconds + 1.0, ready))
    child.start()
    ready.wait(10)
    await sub.start()
    ds.set_static_endpoints({n: ("127.0.0.1", 8000 + i) for i, n in enumerate(names)})
    await asyncio.sleep(1.5)
    before_events = prod.ingester.stats.events
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - t0
    events = prod.ingester.stats.events - before_events
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    await sub.stop()
    child.join(10)
    blocks_per_event = max(1, int(rate * 0.02 / 2))
    print(
        f"ingestion: {SERVERS} servers x {rate:.0f} block events/s for {wall:.1f} s: "
        f"{events} events (~{events * blocks_per_event / wall:.0f} block events/s) used "
        f"{cpu / wall * 100:.1f}% of a core (user+sys, this process); "
        f"index {len(prod.index)} keys; {prod.ingester.stats}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter window")
    parser.add_argument("--repeats", type=int, default=0)
    parser.add_argument("--rate", type=float, default=1000.0, help="block events/s per server")
    args = parser.parse_args()
    repeats = args.repeats or (30 if args.quick else 200)
    with tempfile.TemporaryDirectory() as tmp:
        per_request(repeats, build_tokenizer(Path(tmp)))
    asyncio.run(ingestion(args.rate, 3.0 if args.quick else 10.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
