"""Benchmark: loading CaD-Inst from the original LLaVA JSON arrays vs. from the Hub layout we build.

What: a synthetic CaD-Inst release of the real size (349,000 rows of ~1.65 KB, ~580 MB of JSON,
phase 1 = 278K rows, phase 2 = 71K rows, the original ``json_files/`` layout) is generated, then
five steps are measured, each in a fresh child process (wall seconds and peak RSS):

a. ``json.load`` of both files: what a LLaVA-style trainer does (baseline 1);
b. ``datasets.load_dataset("json", ...)`` on the raw arrays: the packaged loader (baseline 2);
c. ``cadinst.hub.build``: the release turned into the Hub layout (parquet, card, plots);
d. ``datasets.load_dataset(<built folder>, "all", split="train")`` with a fresh cache;
e. iterating every row of the dataset of d (cache of d reused, only the loop is timed).

Why: the Hub layout exists so that users load CaD-Inst quickly and with little memory. The goals
checked are: d at least 8x faster than b, d's peak RSS at most 40% of a's, and c within 60 s.
The exit status is 1 when a goal (or the row-count sanity check) fails, 2 when a step crashes.

Peak RSS is ``VmHWM`` of ``/proc/self/status`` read inside each child at the end of its step: the
high-water mark of that process's own address space, which a fresh ``exec`` starts anew (unlike
``ru_maxrss``, which Linux carries over from the forking parent across ``exec``). It includes the
interpreter and its imports, and file pages mapped by Arrow that were touched.

Run ``python benchmarks/bench_datasets.py --help`` for the options; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FULL_ROWS = 349_000
PHASE1_SHARE = 278 / 349  # the release's 278K:71K split
PHASE1_FILE = "json_files/phase1_instruct_data_278k.json"
PHASE2_FILE = "json_files/phase2_instruct_data_71k.json"
RESULT_MARKER = "BENCH-RESULT "
REPO_ROOT = Path(__file__).resolve().parent.parent
CHILD_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}

SPEEDUP_GOAL = 8.0  # d at least this many times faster than b
RSS_SHARE_GOAL = 0.40  # d's peak RSS at most this share of a's
BUILD_SECONDS_GOAL = 60.0  # c at most this long

# ---------------------------------------------------------------------------------------------
# Synthetic release
# ---------------------------------------------------------------------------------------------

FIRST_PROMPT = (
    "Image 1: <image>\nImage 2: <image>\nSummarize the commonalities and differences about the visual content of the "
    "two images, including the object types, object attributes, counting the objects, object actions, object "
    "locations, relative positions between objects, etc."
)
CAPTION_PROMPT = (
    'Which image suits the caption "{caption}" better?\nA. Image 1\nB. Image 2\n'
    "Answer with the option's letter from the given choices directly."
)
AXIS_LABELS = (
    "Object types",
    "Object attributes",
    "Counting the objects",
    "Object actions",
    "Object locations",
    "Relative positions between objects",
)
CONTENT_WORDS = (
    "man woman person child boy girl dog cat horse bird car bus truck bicycle train boat plane table chair sofa bed "
    "tree grass flower building house street road sidewalk window door wall sky cloud water river beach sand field "
    "park kitchen room plate bowl cup glass bottle pizza cake fruit banana apple laptop phone book bag umbrella hat "
    "shirt jacket dress red blue green white black brown yellow gray orange wooden metal large small tall short old "
    "young bright dark sunny cloudy open closed empty full standing sitting walking running riding holding eating "
    "looking playing wearing carrying lying parked flying floating near behind beside above below under front left "
    "right center background foreground corner middle top bottom edge side two three four several many few one some "
    "both each other while whereas also only visible appears shows features contains depicts includes group pair "
    "together scene image picture view area place outdoors indoors daytime evening light shadow"
)
FUNCTION_WORDS = "a an the of in on at to with and is are its by from"
# Function words weighted 8x so that words have the lengths of real text (rows of ~1.65 KB).
WORDS = CONTENT_WORDS.split() + 8 * FUNCTION_WORDS.split()


def _words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def synthetic_row(rng: random.Random, row_id: str, images: list[str]) -> dict[str, Any]:
    """One CaD-Inst row in the LLaVA shape: ~157-word CaD summary, ~36-word caption question."""
    common = f"Both images {_words(rng, 34, 42)}."
    differences = "\n".join(
        f"{number}. {label}: Image 1 {_words(rng, 4, 7)}, while Image 2 {_words(rng, 4, 7)}."
        for number, label in enumerate(AXIS_LABELS, start=1)
    )
    caption = f"In this picture I can see {_words(rng, 27, 33)}."
    return {
        "id": row_id,
        "image": images,
        "conversations": [
            {"from": "human", "value": FIRST_PROMPT},
            {"from": "gpt", "value": f"Commonalities:\n{common}\n\nDifferences:\n{differences}"},
            {"from": "human", "value": CAPTION_PROMPT.format(caption=caption)},
            {"from": "gpt", "value": rng.choice("AB")},
        ],
    }


def phase_rows(total: int) -> tuple[int, int]:
    """Rows of phase 1 and phase 2 for ``total`` rows, in the release's 278:71 ratio."""
    phase1 = round(total * PHASE1_SHARE)
    return phase1, total - phase1


def generate_release(folder: Path, total: int, seed: int) -> list[Path]:
    """Write the two JSON arrays of a synthetic release under ``folder``; returns their paths."""
    rng = random.Random(seed)
    image_pool = [f"{rng.getrandbits(64):016x}.jpg" for _ in range(max(2, total))]
    paths = []
    serial = 0
    for name, count in zip((PHASE1_FILE, PHASE2_FILE), phase_rows(total), strict=True):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("[")
            for index in range(count):
                serial += 1  # unique across both phases
                row_id = f"{rng.randrange(10)}_{serial}_{rng.randrange(10)}_{rng.randrange(1_000_000)}"
                row = synthetic_row(rng, row_id, rng.sample(image_pool, 2))
                handle.write(("\n" if index == 0 else ",\n") + json.dumps(row))
            handle.write("\n]\n")
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# Steps (each runs in its own child process: ``--child STEP``)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where one run keeps its release, caches and built folder."""

    root: Path

    @property
    def release(self) -> Path:
        return self.root / "release"

    @property
    def files(self) -> list[Path]:
        return [self.release / PHASE1_FILE, self.release / PHASE2_FILE]

    @property
    def built(self) -> Path:
        return self.root / "hub"

    def cache(self, step: str) -> Path:
        return self.root / f"cache-{step}"


def peak_rss_mb() -> float:
    """Peak RSS of this process (VmHWM), in MB; ``ru_maxrss`` where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def step_json_load(layout: Layout) -> int:
    loaded = []
    for path in layout.files:
        with open(path, encoding="utf-8") as handle:
            loaded.append(json.load(handle))
    return sum(len(rows) for rows in loaded)


def step_json_loader(layout: Layout) -> int:
    import datasets

    data_files = {"train": [str(path) for path in layout.files]}
    dataset = datasets.load_dataset("json", data_files=data_files, cache_dir=str(layout.cache("b")))
    return dataset["train"].num_rows


def step_build(layout: Layout) -> int:
    import cadinst.hub

    phases = cadinst.hub.build(layout.release, layout.built, cache_dir=layout.cache("c"))
    return sum(len(dataset) for dataset in phases.values())


def _load_built(layout: Layout) -> Any:
    import datasets

    return datasets.load_dataset(str(layout.built), "all", split="train", cache_dir=str(layout.cache("d")))


def step_load_built(layout: Layout) -> int:
    return len(_load_built(layout))


def step_iterate(layout: Layout) -> tuple[int, float]:
    dataset = _load_built(layout)  # the cache of step d: no conversion here
    start = time.perf_counter()
    count = 0
    for _row in dataset:
        count += 1
    return count, time.perf_counter() - start


STEPS: dict[str, tuple[str, Callable[[Layout], Any]]] = {
    "a": ("json.load of both files (baseline 1)", step_json_load),
    "b": ('load_dataset("json") on the raw arrays (baseline 2)', step_json_loader),
    "c": ("cadinst.hub.build to the Hub layout", step_build),
    "d": ('load_dataset(<built>, "all", split="train")', step_load_built),
    "e": ("iterate every row of d (loop only)", step_iterate),
}


def run_child_step(step: str, layout: Layout, profile: bool) -> None:
    """Body of a child process: run ``step``, print its result as one JSON line."""
    function = STEPS[step][1]
    baseline = peak_rss_mb()
    start = time.perf_counter()
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(function, layout)
        elapsed = time.perf_counter() - start
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(15)
    else:
        result = function(layout)
        elapsed = time.perf_counter() - start
    rows, seconds = result if isinstance(result, tuple) else (result, elapsed)
    payload = {"rows": rows, "seconds": seconds, "rss_mb": peak_rss_mb(), "rss_start_mb": baseline}
    print(RESULT_MARKER + json.dumps(payload), flush=True)


# ---------------------------------------------------------------------------------------------
# Parent: generate, run the children, report
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    step: str
    seconds: float  # the measured call (or loop) only, timed inside the child
    process_seconds: float  # the whole child, interpreter start and imports included
    rss_mb: float  # peak RSS of the child
    rss_start_mb: float  # RSS high-water mark before the step (interpreter + imports of this script)
    rows: int


def spawn_step(step: str, layout: Layout, *, profile: bool = False) -> Measurement:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", step, "--child-root", str(layout.root)]
    if profile:
        command.append("--profile-build")
    env = {**os.environ, **CHILD_ENV, "HF_HOME": str(layout.root / "hf-home")}
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    process_seconds = time.perf_counter() - start
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if completed.returncode != 0 or not lines:
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-8000:])
        raise SystemExit(f"step {step} failed (exit status {completed.returncode}); its output is above")
    if profile:
        sys.stdout.write(completed.stderr)
    payload = json.loads(lines[-1][len(RESULT_MARKER) :])
    return Measurement(
        step, payload["seconds"], process_seconds, payload["rss_mb"], payload["rss_start_mb"], payload["rows"]
    )


def report(results: dict[str, Measurement], total_rows: int, json_mb: float, generate_seconds: float) -> bool:
    """Print the tables; True when every goal and the row-count check pass."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    console.print(
        f"synthetic release: {total_rows:,} rows ({'/'.join(f'{n:,}' for n in phase_rows(total_rows))}), "
        f"{json_mb:,.1f} MB of JSON ({json_mb * 1e6 / 1e3 / total_rows:,.2f} KB per row), "
        f"generated in {generate_seconds:.1f} s"
    )
    steps = Table(title="Steps (each in a fresh child process)")
    for column in ("step", "what", "seconds", "process s", "peak RSS MB", "RSS before MB", "rows"):
        steps.add_column(column, justify="left" if column in ("step", "what") else "right")
    for name, measurement in results.items():
        steps.add_row(
            name,
            STEPS[name][0],
            f"{measurement.seconds:.2f}",
            f"{measurement.process_seconds:.2f}",
            f"{measurement.rss_mb:,.0f}",
            f"{measurement.rss_start_mb:,.0f}",
            f"{measurement.rows:,}",
        )
    console.print(steps)
    a, b, c, d = (results[key] for key in "abcd")
    speedup = b.seconds / d.seconds
    rss_share = d.rss_mb / a.rss_mb
    goals = [
        ("load of built folder vs json loader (b/d time)", f"{speedup:.1f}x", f">= {SPEEDUP_GOAL:g}x",
         speedup >= SPEEDUP_GOAL),
        ("RSS of d as % of json.load RSS (d/a)", f"{rss_share:.0%}", f"<= {RSS_SHARE_GOAL:.0%}",
         rss_share <= RSS_SHARE_GOAL),
        ("build time (c)", f"{c.seconds:.1f} s", f"<= {BUILD_SECONDS_GOAL:g} s", c.seconds <= BUILD_SECONDS_GOAL),
    ]  # fmt: skip
    table = Table(title="Goals")
    for column in ("goal", "measured", "target", "result"):
        table.add_column(column, justify="left" if column == "goal" else "right")
    for goal, measured, target, passed in goals:
        table.add_row(goal, measured, target, "[green]PASS[/]" if passed else "[red]FAIL[/]")
    console.print(table)
    rows_ok = d.rows == total_rows
    console.print(
        f"rows loaded in d: {d.rows:,} (generated {total_rows:,}): "
        + ("[green]OK[/]" if rows_ok else "[red]MISMATCH[/]")
    )
    failed = [goal for goal, _, _, passed in goals if not passed]
    if failed or not rows_ok:
        console.print(f"[red]FAILED[/]: {', '.join(failed + ([] if rows_ok else ['row count']))}")
        return False
    console.print("[green]all goals met[/]")
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=FULL_ROWS, help=f"rows to generate (default {FULL_ROWS:,})")
    parser.add_argument("--workdir", type=Path, default=None, help="where to make the run's folder (default /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (release, caches, built layout)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic release")
    parser.add_argument(
        "--profile-build",
        action="store_true",
        help="only generate and run the build (c) under cProfile; print the top 15 cumulative entries",
    )
    parser.add_argument("--child", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--child-root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows < 2:
        parser.error("--rows must be at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child_step(args.child, Layout(args.child_root), args.profile_build)
        return 0
    parent = args.workdir if args.workdir is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    layout = Layout(Path(tempfile.mkdtemp(prefix="cadvi-bench-", dir=parent)))  # only this folder is deleted
    try:
        print(f"run folder: {layout.root}", flush=True)
        start = time.perf_counter()
        generate_release(layout.release, args.rows, args.seed)
        generate_seconds = time.perf_counter() - start
        json_mb = sum(path.stat().st_size for path in layout.files) / 1e6
        if args.profile_build:
            measurement = spawn_step("c", layout, profile=True)
            print(f"build of {args.rows:,} rows under cProfile: {measurement.seconds:.1f} s", flush=True)
            return 0
        results: dict[str, Measurement] = {}
        for step in STEPS:
            print(f"step {step}: {STEPS[step][0]} ...", flush=True)
            results[step] = spawn_step(step, layout)
        return 0 if report(results, args.rows, json_mb, generate_seconds) else 1
    finally:
        if args.keep:
            print(f"kept {layout.root}")
        else:
            shutil.rmtree(layout.root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
