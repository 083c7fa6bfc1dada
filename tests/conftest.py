"""Shared fixtures: small CaD-Inst / CaD-QA releases in every shape the builders read.

Everything runs offline: the Hub is never contacted (``HF_HUB_OFFLINE=1``), datasets get a
per-test cache folder, and images are drawn on the fly.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

pytest_plugins = ("tests.llm_fixtures", "tests.recipe_fixtures")
# The engine tests (tests/engines) need vLLM and Ray Data: they run in .venv-engines (scripts/setup-engines-env.sh,
# run by .ci/run after the main tests), where they fail, not skip, when an engine cannot start.
collect_ignore = [] if importlib.util.find_spec("vllm") else ["engines"]

SHARED = Path(__file__).resolve().parents[2] / "shared"  # the project's shared data, beside the checkout
CADQA_OFFICIAL = SHARED / "data" / "cadvi_eval" / "CaD_QA_eval.jsonl"
SHARED_EVAL = SHARED / "data" / "cadvi_eval"
COCO_CAPTIONS = SHARED / "data" / "captions" / "coco2014_val_80_caps_boxes.jsonl"


def shared_file(path: Path) -> Path:
    """``path`` under ``../shared``, or a failed test that says so: tests needing it never skip quietly."""
    if not path.exists():
        pytest.fail(
            f"{path} is missing: these tests read the project's shared data in {SHARED} (beside the checkout; "
            "CI has it, see its data/README.md)",
            pytrace=False,
        )
    return path


def pytest_report_header(config: pytest.Config) -> str:
    return f"shared data: {SHARED} ({'found' if SHARED.is_dir() else 'MISSING: tests that read it will fail'})"


INSTRUCTION = "Image 1: <image>\nImage 2: <image>\nSummarize the commonalities and differences of the two images."
SUMMARY = (
    "Commonalities:\nBoth images show a {thing} outdoors.\n\nDifferences:\n"
    "1. Object types: Image 1 has a {thing}, Image 2 has a bird.\n"
    "2. Counting the objects: Image 1 shows {n} of them; Image 2 shows one."
)


def cadinst_row(index: int, phase: int = 1) -> dict[str, Any]:
    """One valid release row (two turns for phase 2, four for phase 1, as in the release)."""
    turns = [
        {"from": "human", "value": INSTRUCTION},
        {"from": "gpt", "value": SUMMARY.format(thing=["dog", "cat", "horse"][index % 3], n=index + 2)},
    ]
    if phase == 1:
        turns += [
            {
                "from": "human",
                "value": f'Which image suits the caption "a dog number {index}" better?\nA. Image 1\n'
                "B. Image 2\nAnswer with the option's letter from the given choices directly.",
            },
            {"from": "gpt", "value": "AB"[index % 2]},
        ]
    return {
        "id": f"p{phase}_{index}",
        "image": [f"p{phase}_{index}_a.jpg", f"p{phase}_{index}_b.jpg"],
        "conversations": turns,
    }


def cadqa_row(index: int) -> dict[str, Any]:
    return {
        "image": [f"VG_100K/{index}.jpg", f"VG_100K_2/{1000 + index}.jpg"],
        "text": f"Image 1: <image>\nImage 2: <image>\nWhat differs in picture {index}?",
        "answer": f"Image 1 shows {index} apples; Image 2 shows none.",
        "question_id": f"{index}_{1000 + index}",
    }


def write_json_release(folder: Path, phases: dict[int, list[dict[str, Any]]]) -> Path:
    """The original LLaVA JSON arrays under ``json_files/``."""
    (folder / "json_files").mkdir(parents=True, exist_ok=True)
    for phase, rows in phases.items():
        (folder / "json_files" / f"phase{phase}_instruct_data_test.json").write_text(json.dumps(rows))
    return folder


def write_hub_parquet_release(folder: Path, phases: dict[int, list[dict[str, Any]]]) -> Path:
    """The original Hub parquet: stringified Python lists, ``__null_dask_index__``, phase-1 scores."""
    for phase, rows in phases.items():
        table: dict[str, list[Any]] = {
            "id": [r["id"] for r in rows],
            "image": [str(r["image"]) for r in rows],
            "conversations": [str(r["conversations"]) for r in rows],
            "__null_dask_index__": list(range(len(rows))),
        }
        if phase == 1:
            table["clip_sim_score"] = [0.5 + i / 100 for i in range(len(rows))]
        (folder / f"Phase{phase}").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(table), folder / f"Phase{phase}" / f"phase{phase}_test.parquet")
    return folder


@pytest.fixture
def phase_rows() -> dict[int, list[dict[str, Any]]]:
    return {1: [cadinst_row(i, 1) for i in range(6)], 2: [cadinst_row(i, 2) for i in range(3)]}


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "hf-cache"


@pytest.fixture
def json_release(tmp_path: Path, phase_rows) -> Path:
    return write_json_release(tmp_path / "json-release", phase_rows)


@pytest.fixture
def hub_parquet_release(tmp_path: Path, phase_rows) -> Path:
    return write_hub_parquet_release(tmp_path / "hub-release", phase_rows)


@pytest.fixture
def image_root(tmp_path: Path, phase_rows) -> Path:
    from cadvi.demo import draw_stand_in_images

    root = tmp_path / "images"
    draw_stand_in_images((name for rows in phase_rows.values() for row in rows for name in row["image"]), root)
    return root


@pytest.fixture
def write_rows(tmp_path: Path) -> Callable[..., Path]:
    """Write rows as a JSON array (``.json``) or JSON Lines (``.jsonl``) file and return its path."""

    def write(rows: list[Any], name: str = "phase1_instruct_data_bad.json") -> Path:
        path = tmp_path / "custom" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".jsonl"):
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            path.write_text(json.dumps(rows))
        return path

    return write
