"""Fixtures of the training-recipe tests: a tiny llava-hf start point, images, LLaVA-format mixes, recipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAIR_PROMPT = "Image 1: <image>\nImage 2: <image>\nSummarize the commonalities and differences of the two images."
ANSWER = "Commonalities: Both images show a dog outdoors on the grass."


def pair_row(row_id: str, first: str, second: str) -> dict[str, Any]:
    return {
        "id": row_id,
        "image": [first, second],
        "conversations": [
            {"from": "human", "value": PAIR_PROMPT},
            {"from": "gpt", "value": ANSWER},
            {"from": "human", "value": 'Which image suits the caption "a dog" better?\nA. Image 1\nB. Image 2'},
            {"from": "gpt", "value": "A"},
        ],
    }


def single_row(row_id: int, image: str) -> dict[str, Any]:
    return {
        "id": row_id,
        "image": image,
        "conversations": [
            {"from": "human", "value": "What is in the picture?\n<image>"},
            {"from": "gpt", "value": "A dove standing on the branch."},
        ],
    }


def text_row(row_id: str) -> dict[str, Any]:
    return {
        "id": row_id,
        "conversations": [
            {"from": "human", "value": "Say which is better."},
            {"from": "gpt", "value": "The answer is B."},
        ],
    }


def write_images(folder: Path, names: Sequence[str]) -> Path:
    """Small non-square RGB images (each its own colour) under ``folder``."""
    from PIL import Image

    for index, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40 + 4 * (index % 5), 28 + 2 * (index % 3)), (37 * index % 256, 90, 200)).save(path)
    return folder


def mixed_rows(count: int = 12) -> list[dict[str, Any]]:
    """Two-image, one-image and text-only rows in turn (the LLaVA-1.5 mix has all three)."""
    rows: list[dict[str, Any]] = []
    for index in range(count):
        kind = index % 3
        if kind == 0:
            rows.append(pair_row(f"pair{index}", f"a/{index % 4}.jpg", f"b/{(index + 1) % 4}.jpg"))
        elif kind == 1:
            rows.append(single_row(index, f"a/{index % 4}.jpg"))
        else:
            rows.append(text_row(f"text{index}"))
    return rows


IMAGE_NAMES = [f"{folder}/{index}.jpg" for folder in "ab" for index in range(4)]


@pytest.fixture(scope="session")
def tiny_start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random llava-hf folder (any llava-hf checkpoint can be a start point)."""
    from builders.llm.tiny import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("recipe-start") / "tiny-llava")


@pytest.fixture(scope="session")
def recipe_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mix.json`` (12 rows: 2-image, 1-image, text-only) and ``images/`` for it."""
    root = tmp_path_factory.mktemp("recipe-data")
    write_images(root / "images", IMAGE_NAMES)
    (root / "mix.json").write_text(json.dumps(mixed_rows(), indent=1))
    return root


def recipe(
    start: Path, data: Path, output: Path, *, sources: Sequence[Mapping[str, Any]] | None = None, **training: Any
) -> dict[str, Any]:
    """A tiny CPU recipe as a mapping (the shape of the YAML files)."""
    return {
        "model": {"start": str(start), "dtype": "float32", "max_length": 512},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "data": {
            "sources": list(sources or [{"path": str(data / "mix.json"), "repeat": 2}]),
            "image_roots": [str(data / "images")],
        },
        "training": {
            "output_dir": str(output),
            "max_steps": 6,
            "per_device_train_batch_size": 2,
            "learning_rate": 5.0e-3,
            "projector_lr": 1.0e-3,
            "lr_scheduler_type": "cosine",
            "warmup_steps": 2,
            "weight_decay": 0.0,
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": "none",
            "use_cpu": True,
            "group_by_modality_length": True,
            "seed": 7,
            **training,
        },
    }


def write_recipe(path: Path, mapping: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(mapping), sort_keys=False))
    return path


def cadvi_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        **extra,
    }


def run_cadvi(*args: str, cwd: Path, timeout: float = 300, **popen: Any) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cadvi", *args],
        cwd=cwd,
        env=cadvi_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


def killed_and_rerun(command: list[str], run: Path, *, records: int = 2, poll: float = 0.02) -> tuple[set, Any]:
    """Run a ``cadvi generate`` ``command``, SIGKILL its process group once its run folder holds ``records``
    records, rerun it to the end; the pair ids recorded (each checked to be recorded at most once) and the
    rejects per pair. The rerun must succeed and say it resumed."""
    import signal
    import time
    from collections import Counter

    from builders.runs import all_records

    process = subprocess.Popen(
        command, env=cadvi_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    shard = run / "records" / "shard-00000-of-00001.jsonl"
    deadline = time.monotonic() + 240
    while (
        time.monotonic() < deadline
        and process.poll() is None
        and (not shard.exists() or shard.read_bytes().count(b"\n") < records)
    ):
        time.sleep(poll)
    assert process.poll() is None, f"finished before the kill: {process.stderr.read().decode()[-2000:]}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    again = subprocess.run(command, env=cadvi_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already done" in again.stdout
    done = Counter(record["pair_id"] for record in all_records(run))
    assert set(done.values()) <= {1}, "a pair recorded twice"
    return set(done), Counter(record["pair_id"] for record in all_records(run, "rejects"))
