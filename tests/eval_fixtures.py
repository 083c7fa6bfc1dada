"""Fixtures for the lmms-eval tasks: a tiny random LLaVA and small benchmark folders in the official formats.

Nothing is downloaded. The model is built from configs (Llama text model, hidden 64, 2 layers; CLIP
vision tower, 32 px images, patch 8 -> 16 image tokens), with a byte-level BPE tokenizer trained on a
few sentences that knows ``<image>`` and ``<pad>``, and a ``vicuna_v1`` chat template that renders the
user's content in order (so interleaved images land where the official ``<image>`` placeholders were).
The benchmark folders hold the first rows of each official question file (read from the shared copies)
and one small generated image per image name, laid out as ``eval_tasks/data.py`` documents.

Import the fixtures into a test module (``from tests.eval_fixtures import cadvi_bench, tiny_llava``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from builders.llm.tiny import LLAVA_SYSTEM
from eval_tasks.metrics import GROUP_SUMMARY_FIELDS, Summary
from tests.conftest import SHARED_EVAL, shared_file

FIVE_TASKS = ("bison", "svo_probes", "nlvr2", "eqben", "cola")
OFFICIAL_FILES = {
    "bison": "BISON.jsonl",
    "svo_probes": "SVO_Probes.jsonl",
    "nlvr2": "NLVR2.jsonl",
    "eqben": "EQBEN.jsonl",
    "cola": "COLA.jsonl",
}
IMAGE_SIZE = 32
PATCH_SIZE = 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 16 per image
SYSTEM = LLAVA_SYSTEM  # the vicuna_v1 system line the tiny LLaVA's chat template starts with

# Rows taken from the head of each official file (EQBEN: two groups of two subsets; SVO: two per category),
# plus one synthetic group for EQBEN and COLA (see synthetic_group).
ROWS_PER_TASK = {"bison": 4, "nlvr2": 4, "cola": 4}


def build_tiny_llava(folder: Path, seed: int = 0) -> Path:
    """A tiny random ``LlavaForConditionalGeneration`` + ``LlavaProcessor`` in ``folder`` (~2 s; the library's)."""
    from builders.llm.tiny import build_tiny_llava as build

    return build(folder, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, seed=seed)


@dataclass
class BenchFolders:
    """Fixture benchmark folders: annotation files, per-benchmark image roots and the env that selects them."""

    annotations: Path
    images: Path
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {"CADVI_EVAL_DATA_DIR": str(self.annotations), "CADVI_EVAL_IMAGE_ROOT": str(self.images)}

    def image_root(self, task: str) -> Path:
        return self.images / task


def official_rows(task: str) -> list[dict[str, Any]]:
    with open(shared_file(SHARED_EVAL / OFFICIAL_FILES[task]), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def fixture_rows(task: str) -> list[dict[str, Any]]:
    """A few official rows per benchmark, chosen so that every metric has something to count."""
    rows = official_rows(task)
    if task == "svo_probes":
        return [row for category in ("subject", "verb", "object") for row in _first(rows, category, 2)]
    if task == "eqben":
        subsets: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            subsets.setdefault(row["image"][0].split("/")[0], []).append(row)
        chosen = []
        for subset in ("eqbensd", "eqbenkubric_cnt"):
            chosen += subsets[subset][:4]  # two complete groups each (rows come in <k>_0, <k>_1 order)
        return chosen + synthetic_group(chosen[0], "eqbenag/900/image0.png", "eqbenag/900/image1.png")
    if task == "cola":
        # The synthetic group's images are stored under Visual Genome names (VG_100K/<id>.jpg).
        return rows[:4] + synthetic_group(rows[0], "900_2390001.jpg", "900_2390002.jpg")
    return rows[: ROWS_PER_TASK[task]]


def synthetic_group(template: dict[str, Any], first: str, second: str) -> list[dict[str, Any]]:
    """Our own group ``900`` in the official format whose two answers are both ``B``: official groups
    always pair an ``A`` with a ``B``, so without it a constant answer could never get a group right."""
    return [{**template, "image": [first, second], "answer": "B", "question_id": f"900_{member}"} for member in (0, 1)]


def _first(rows: list[dict[str, Any]], category: str, count: int) -> list[dict[str, Any]]:
    return [row for row in rows if row["category"] == category][:count]


def write_image(path: Path, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((seed * 53) % 256, (seed * 97) % 256, (seed * 193) % 256)
    image = Image.new("RGB", (48, 40), colour)
    image.save(path)


def build_bench(root: Path) -> BenchFolders:
    bench = BenchFolders(annotations=root / "annotations", images=root / "images")
    bench.annotations.mkdir(parents=True, exist_ok=True)
    for task in FIVE_TASKS:
        rows = fixture_rows(task)
        bench.rows[task] = rows
        with open(bench.annotations / OFFICIAL_FILES[task], "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        for index, name in enumerate(sorted({name for row in rows for name in row["image"]})):
            stored = f"VG_100K/{name.split('_', 1)[1]}" if name.startswith("900_") else name
            write_image(bench.image_root(task) / stored, seed=index + 7 * len(task))
    return bench


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("eval-model") / "tiny-llava")


@pytest.fixture(scope="session")
def cadvi_bench(tmp_path_factory: pytest.TempPathFactory) -> BenchFolders:
    return build_bench(tmp_path_factory.mktemp("eval-bench"))


@pytest.fixture
def bench_env(cadvi_bench: BenchFolders, monkeypatch: pytest.MonkeyPatch) -> Iterator[BenchFolders]:
    """The fixture benchmarks selected through the environment, as a user would."""
    for key in [key for key in os.environ if key.startswith("CADVI_")]:
        monkeypatch.delenv(key)
    for key, value in cadvi_bench.env.items():
        monkeypatch.setenv(key, value)
    yield cadvi_bench


LMMS_EVAL = Path(sys.executable).with_name("lmms-eval")


def tiny_llava_arguments(model: Path, tasks: Sequence[str], limit: int, *extra: str) -> list[str]:
    """lmms-eval arguments that run the tiny LLaVA on CPU over ``tasks`` (six new tokens per answer)."""
    return [
        *("--model", "llava_hf", "--model_args", f"pretrained={model},device=cpu,device_map=cpu"),
        *("--tasks", ",".join(tasks), "--limit", str(limit), "--gen_kwargs", "max_new_tokens=6"),
        *extra,
    ]


def run_lmms_eval(
    args: list[str], env: dict[str, str], tmp_path: Path, *, timeout: float = 300
) -> tuple[dict[str, Any], str]:
    """Run the real ``lmms-eval`` CLI offline with ``env`` (our ``CADVI_*`` variables only from it).

    lmms-eval exits 0 even when a task fails, so the results JSON must exist; returns its
    ``results`` and the console output.
    """
    output = tmp_path / "out"
    full_env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("CADVI_")},
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **env,
    }
    process = subprocess.run(
        [str(LMMS_EVAL), *args, "--output_path", str(output)],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    console = process.stdout + process.stderr
    assert process.returncode == 0, console[-4000:]
    found = sorted(output.rglob("*_results.json"))
    assert found, f"lmms-eval wrote no results:\n{console[-4000:]}"
    return json.loads(found[-1].read_text())["results"], console


# --- reading plain-number metrics ----------------------------------------------------------------------

LMMS_EVAL_STDERR_SUFFIXES = ("_stderr", "_stderr_clt", "_stderr_clustered")


def summary_of(task_results: dict[str, Any], name: str) -> dict[str, Any]:
    """The figures of summary ``name`` in lmms-eval's results of one task (``accuracy,none``,
    ``accuracy_ci_low,none``, ...) gathered back into the scorer's dict (``value``, ``ci_low``, ...)."""
    metrics = {key.partition(",")[0] for key in task_results}
    found = _figures(name, metrics, lambda metric: task_results[f"{metric},none"])
    assert "value" in found, (name, sorted(task_results))
    return found


def figures_of(utils: Any, name: str, per_metric: dict[str, list[dict]]) -> dict[str, Any]:
    """The same from a task's ``utils`` module: each figure's own aggregation over its own results."""
    return _figures(name, set(per_metric), lambda metric: getattr(utils, metric)(per_metric[metric]))


def _figures(name: str, metrics: set[str], value_of: Callable[[str], Any]) -> dict[str, Any]:
    summary = Summary(name)
    return {
        figure: value_of(summary.metric(figure)) for figure in GROUP_SUMMARY_FIELDS if summary.metric(figure) in metrics
    }


def plain_number_problems(task_results: dict[str, Any], *, allow_empty: bool = False) -> list[str]:
    """Every metric value of one task's results that is not an int or float (bools excluded).

    lmms-eval's own keys are not ours to shape: ``alias``, and the stderr it writes next to every metric
    (a number, or its "N/A" for an aggregation it has no stderr for). ``allow_empty`` accepts ``None`` for
    the figures of a summary whose ``n`` is 0 (a subset the fixture or ``--limit`` left out).
    """
    problems = []
    for key, value in task_results.items():
        metric = key.partition(",")[0]
        if key == "alias":
            continue
        if metric.endswith(LMMS_EVAL_STDERR_SUFFIXES):
            if not (value == "N/A" or _is_number(value)):
                problems.append(f"{key}: {value!r}")
            continue
        if _is_number(value):
            continue
        if value is None and allow_empty and _empty_summary(task_results, metric):
            continue
        problems.append(f"{key}: {value!r}")
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _empty_summary(task_results: dict[str, Any], metric: str) -> bool:
    """A value or interval figure (the ones that are None without data) of a summary with ``n`` 0."""
    summary = metric.removesuffix("_ci_low").removesuffix("_ci_high")
    return task_results.get(f"{summary}_n,none") == 0


def table_rows(console: str, tasks: tuple[str, ...] | list[str]) -> dict[tuple[str, str], str]:
    """lmms-eval's printed results table: (task, metric) -> the Value cell, for the rows of ``tasks``."""
    rows = {}
    for line in console.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and cells[0] in tasks:
            rows[(cells[0], cells[3])] = cells[5]
    return rows
