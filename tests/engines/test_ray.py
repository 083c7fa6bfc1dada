"""Ray Data generation on a local Ray cluster: vLLM replicas and HTTP endpoints, a killed driver resumed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

import cadinst
from builders.export import export_phase1
from builders.generate.ray_engines import RayHttpEngine, RayVLLMEngine
from builders.generate.ray_runner import run_task_ray
from builders.llm.base import Sampling
from builders.pair_file import PairRecord, read_pairs
from builders.phase1 import Phase1Settings, Phase1Task
from builders.runs import all_records
from tests.engines.conftest import MAX_MODEL_LEN, engine_pairs

SETTINGS = Phase1Settings(sampling=Sampling(max_tokens=160, temperature=0.0, seed=0), max_attempts=2)
OVER_LONG = PairRecord("long_long", ("l1.jpg", "l2.jpg"), (" ".join(f"q{i}z" for i in range(1500)), "A cat."))


@pytest.fixture(scope="module")
def parrot_mistral(tmp_path_factory) -> Path:
    """The demo's stand-in (a tiny Mistral fitted on sample summaries): its greedy summaries pass validation."""
    from builders.captions import read_captions
    from cadvi.demo import stand_in_model
    from tests.conftest import COCO_CAPTIONS

    captions = [c.caption for c in read_captions(COCO_CAPTIONS)]
    return stand_in_model(
        tmp_path_factory.mktemp("parrot") / "model", list(zip(captions[::2], captions[1::2], strict=False))
    )


def assert_every_pair_once(run: Path, pairs: list[PairRecord], max_attempts: int) -> Counter:
    done = Counter(r["pair_id"] for r in all_records(run))
    rejected = Counter(r["pair_id"] for r in all_records(run, "rejects"))
    final = {r["pair_id"] for r in all_records(run, "rejects") if r.get("final")}
    assert set(done.values()) <= {1}, "no pair twice"
    settled = set(done) | {p for p, n in rejected.items() if n >= max_attempts} | final
    assert settled == {p.pair_id for p in pairs}
    assert all(n <= max_attempts for n in rejected.values())
    return done


def test_vllm_replicas_write_the_local_run_layout_and_reject_a_bad_row(local_ray, parrot_mistral, tmp_path, cache):
    pairs = [*read_pairs(engine_pairs(tmp_path, count=16)), OVER_LONG]
    engine = RayVLLMEngine(str(parrot_mistral), max_model_len=MAX_MODEL_LEN, batch_size=8)
    summary = run_task_ray(Phase1Task(SETTINGS), pairs, engine, tmp_path / "run", progress=False)
    assert summary.complete and summary.valid + summary.rejected == summary.attempted
    assert summary.valid >= 4, "the stand-in's greedy summaries pass validation"
    done = assert_every_pair_once(tmp_path / "run", pairs, SETTINGS.max_attempts)
    (long_reject,) = [r for r in all_records(tmp_path / "run", "rejects") if r["pair_id"] == "long_long"]
    assert long_reject["final"] and f"context of {MAX_MODEL_LEN:,} tokens" in long_reject["reason"]
    assert sorted(p.name for p in (tmp_path / "run" / "records").iterdir()) == ["shard-00000-of-00001.jsonl"]
    assert not list((tmp_path / "run" / "ray" / "outputs").glob("*.json")), "every output taken in"
    # cadvi export and the CaD-Inst builder read it as they read a local run
    assert export_phase1(tmp_path / "run", tmp_path / "release") == len(done)
    assert len(cadinst.load(tmp_path / "release", "phase1", cache_dir=cache)) == len(done)


def test_http_endpoints_through_ray(local_ray, vllm_server, tiny_mixtral, tmp_path):
    pairs = read_pairs(engine_pairs(tmp_path, count=12))
    engine = RayHttpEngine(vllm_server.base_url, str(tiny_mixtral), batch_size=6)
    settings = Phase1Settings(sampling=Sampling(max_tokens=24, temperature=0.7, seed=0), max_attempts=2)
    summary = run_task_ray(Phase1Task(settings), pairs, engine, tmp_path / "run", progress=False)
    assert (
        summary.complete and summary.attempted >= len(pairs) and summary.valid + summary.rejected == summary.attempted
    )
    rejects = list(all_records(tmp_path / "run", "rejects"))
    assert all(r["prompt_tokens"] > 0 and not r.get("error") for r in rejects), "answered: rejected by validation"
    assert sum(1 for r in rejects if r["text"]) > len(rejects) // 2, "the random model's text came back"
    assert {r["seed"] for r in rejects if r["attempt"] == 1} != {r["seed"] for r in rejects if r["attempt"] == 2}
    assert_every_pair_once(tmp_path / "run", pairs, settings.max_attempts)


def test_a_ray_driver_killed_and_rerun_loses_and_duplicates_nothing(parrot_mistral, tmp_path):
    pairs_file = engine_pairs(tmp_path, count=32)
    run = tmp_path / "run"
    command = [str(Path(sys.executable).with_name("cadvi")), "generate", "phase1", "--pairs", str(pairs_file)]
    command += ["--out", str(run), "--engine", "ray", "--ray-address", "local", "--ray-num-cpus", "6"]
    command += ["--backend", "vllm", "--model", str(parrot_mistral), "--max-model-len", str(MAX_MODEL_LEN)]
    command += ["--ray-batch-size", "4", "--max-tokens", "160", "--temperature", "0", "--max-attempts", "2", "-q"]
    ray_tmp = Path(tempfile.mkdtemp(prefix="cadvi-ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}  # its own Ray processes, found by this path below
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    outputs = run / "ray" / "outputs"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None and not list(outputs.glob("*.json")):
        time.sleep(0.2)
    assert process.poll() is None, f"finished before the kill: {process.stderr.read().decode()[-3000:]}"
    _kill_ray_driver(process, ray_tmp)
    checkpointed = list((run / "ray" / "checkpoint").rglob("*"))
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_every_pair_once(run, read_pairs(pairs_file), 2)
    assert checkpointed, "Ray Data checkpointed the rows written before the kill"
    attempts = Counter((r["key"], r["attempt"]) for r in [*all_records(run), *all_records(run, "rejects")])
    assert set(attempts.values()) == {1}, "no attempt recorded twice across the kill"
    _kill_ray_driver(None, ray_tmp)  # the rerun's cluster, if anything of it is left
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _kill_ray_driver(process: subprocess.Popen | None, ray_tmp: Path) -> None:
    """SIGKILL the driver's process group, then every Ray process of its own cluster (by its temp dir)."""
    if process is not None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(ray_tmp) in part for part in proc.info["cmdline"] or ()):
            proc.kill()
    time.sleep(2)
