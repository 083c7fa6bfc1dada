"""The ``cadvi`` command as users run it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets

from cadvi.cli import main
from tests.conftest import CADQA_OFFICIAL

ROOT = Path(__file__).resolve().parents[1]


def test_build_and_publish_dry_run(json_release, tmp_path, capsys):
    out = tmp_path / "hub"
    assert (
        main(["build", "cadinst", "--source", str(json_release), "--out", str(out), "--cache-dir", str(tmp_path / "c")])
        == 0
    )
    assert "phase1 6 rows, phase2 3 rows" in " ".join(capsys.readouterr().out.split())
    assert main(["publish", str(out), "--repo-id", "me/CaD-Inst", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "would upload" in printed and "data/phase2/train-00000-of-00001.parquet" in printed


def test_build_errors_are_reported_not_raised(tmp_path, capsys):
    bad = tmp_path / "CaD_QA_eval.jsonl"
    bad.write_text('{"image": ["a.jpg"], "text": "hi", "answer": "x", "question_id": "1"}\n')
    assert main(["build", "cadqa", "--source", str(bad), "--out", str(tmp_path / "o")]) == 1
    printed = capsys.readouterr().err  # errors go to stderr, each problem on one whole line
    assert f"{bad}:1:" in printed.replace("\n", "") and "must hold exactly two file names" in printed
    assert f"  {bad}:1: 'image' must hold exactly two file names, got 1" in printed.splitlines()
    assert not (tmp_path / "o").exists()


def test_build_official_cadqa_with_the_console_script(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = tmp_path / "cadqa"
    result = subprocess.run(
        [
            Path(sys.executable).parent / "cadvi",
            "build",
            "cadqa",
            "--source",
            str(CADQA_OFFICIAL),
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert datasets.load_dataset(str(out), split="test", cache_dir=str(tmp_path / "c2")).num_rows == 7520


def test_demo_runs_offline_end_to_end(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "160"}
    result = subprocess.run(
        [Path(sys.executable).parent / "cadvi", "demo", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "demo finished" in out
    assert "STAND-IN model" in out, "the demo says plainly that its default model is not a real LLM"
    assert "1. nouns: 16 images" in out
    assert "cadinst/phase1" in out and "cadqa/test" in out
    assert "64x64 + 64x64" in out
    valid = int(re.search(r"attempted \d+ = (\d+) valid", out).group(1))
    assert valid > 0
    exported = datasets.load_dataset(
        str(tmp_path / "hub" / "cadinst"), "phase1", split="train", cache_dir=str(tmp_path / "c")
    )
    assert exported.num_rows == valid
    assert all(row[1]["value"].startswith("Commonalities:") for row in exported["conversations"])
    # The loop on tiny stand-ins: V1 -> phase 2 with V1 -> V2 -> lmms-eval, V1 beside V2, traced in loop.json.
    assert "TINY STAND-INS" in out and "V1 (phase 1)" in out and "V2 (phase 1 + phase 2)" in out
    steps = json.loads((tmp_path / "loop" / "loop.json").read_text())["steps"]
    assert list(steps) == ["v1", "phase2", "v2", "eval-V1", "eval-V2"]
    assert steps["phase2"]["produced_by"]["model"] == steps["v1"]["outputs"]["model"]
    assert all(len(digest) == 64 for digest in steps["v2"]["inputs"].values())
    assert {"bison"} == set(steps["eval-V1"]["outputs"]["scores"]) == set(steps["eval-V2"]["outputs"]["scores"])
    phase2 = datasets.load_dataset(
        str(tmp_path / "loop" / "phase2" / "release"), data_files="json_files/*.json", split="train"
    )
    assert phase2.num_rows == steps["phase2"]["outputs"]["rows"] > 0
