"""The benchmark client's own environment: inference-perf in a Python 3.12 venv, and a tokenizer.

inference-perf needs Python >= 3.12 while this project runs on 3.11, so it lives in a venv of
its own (``benchmarks/out/venv-bench``, git-ignored), created on first use. It also insists on a
Hugging Face tokenizer directory; ``benchmarks/make_tokenizer.py`` trains one offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
OUT = BENCH / "out"
VENV = OUT / "venv-bench"
TOKENIZER = OUT / "tok-bpe8k"
PYTHON_CANDIDATES = ("/root/.pyenv/versions/3.12.1/bin/python3.12", "python3.12", "python3.13")
INFERENCE_PERF_SPEC = "inference-perf>=0.7,<0.8"


class BenchUnavailable(RuntimeError):
    """The load generator cannot be set up here (no Python >= 3.12, no package index...)."""


def find_python312() -> str | None:
    """A Python >= 3.12 interpreter, or None."""
    override = os.environ.get("BENCH_PYTHON")
    for cand in (override, *PYTHON_CANDIDATES):
        if not cand:
            continue
        path = cand if os.path.isabs(cand) else shutil.which(cand)
        if path and os.access(path, os.X_OK):
            return path
    return None


def inference_perf_bin(venv: Path = VENV) -> Path:
    return venv / "bin" / "inference-perf"


INSTALL_TIMEOUT_S = 900


def ensure_venv(venv: Path = VENV) -> Path:
    """Create the venv and install inference-perf unless already there; the binary's path."""
    binary = inference_perf_bin(venv)
    if binary.exists():
        return binary
    python = find_python312()
    if python is None:
        raise BenchUnavailable(
            "inference-perf needs Python >= 3.12 and none was found "
            f"(tried {', '.join(PYTHON_CANDIDATES)}; set BENCH_PYTHON)"
        )
    print(f"creating {venv} with {python} and installing {INFERENCE_PERF_SPEC} ...", flush=True)
    steps = [
        [python, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", INFERENCE_PERF_SPEC],
    ]
    for cmd in steps:
        try:  # bounded: a stalled index must fail the run, not hold it to CI's limit
            proc = subprocess.run(
                cmd, capture_output=True, text=True, check=False, timeout=INSTALL_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            shutil.rmtree(venv, ignore_errors=True)
            raise BenchUnavailable(f"{' '.join(cmd[:4])} failed:\n" + "\n".join(tail))
    return binary


def ensure_tokenizer(venv: Path = VENV, out: Path = TOKENIZER) -> Path:
    """Train the local BPE tokenizer with the venv's Python unless it exists."""
    if (out / "tokenizer.json").exists():
        return out
    script = BENCH / "make_tokenizer.py"
    proc = subprocess.run(
        [str(venv / "bin" / "python"), str(script), str(out)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if proc.returncode != 0:
        raise BenchUnavailable(f"tokenizer build failed:\n{proc.stderr.strip()[-800:]}")
    return out


def inference_perf_version(venv: Path = VENV) -> str:
    """The installed inference-perf version, from its dist-info directory name."""
    for info in sorted(venv.glob("lib/python3*/site-packages/inference_perf-*.dist-info")):
        return info.name.removeprefix("inference_perf-").removesuffix(".dist-info")
    return "unknown"


def ensure_all() -> tuple[Path, Path]:
    """(inference-perf binary, tokenizer dir), built on demand."""
    binary = ensure_venv()
    return binary, ensure_tokenizer()


if __name__ == "__main__":
    try:
        print(*ensure_all())
    except BenchUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
