"""Phase-1 generation end to end on real captions, with real models and a real server.

captions (80 real COCO images) -> spaCy nouns -> pairs -> generation (transformers in-process, or
the OpenAI backend against a real ``transformers serve``) -> run folder -> export -> cadinst.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import cadinst
from builders.export import export_phase1
from builders.llm.base import Sampling, make_backend
from builders.pair_file import read_pairs
from builders.phase1 import Phase1Settings, attempt_seed, run_phase1
from builders.runs import ManifestMismatchError, all_records
from builders.stages import read_noun_records
from tests.llm_fixtures import TransformersServe

GREEDY = Phase1Settings(sampling=Sampling(max_tokens=160, temperature=0.0, seed=0), max_attempts=2)


def test_stages_on_real_captions(real_pairs):
    records = {r.image: set(r.nouns) for r in read_noun_records(real_pairs.parent / "nouns.jsonl")}
    assert len(records) == 80
    assert records["000000296284.jpg"] == {"donut", "flavor", "shop"}
    pairs = read_pairs(real_pairs)
    assert len(pairs) >= 40
    uses = Counter(name for pair in pairs for name in pair.images)
    assert max(uses.values()) <= 2
    assert len({frozenset(pair.images) for pair in pairs}) == len(pairs)
    for pair in pairs:
        assert set(pair.shared_nouns) == records[pair.images[0]] & records[pair.images[1]]
        assert (pair.bin, len(pair.shared_nouns) > 1) in {("one", False), ("more", True)}


def test_untrained_model_outputs_are_rejected_retried_and_kept(real_pairs, tiny_chat_model, tmp_path):
    pairs = read_pairs(real_pairs)[:4]
    backend = make_backend("transformers", str(tiny_chat_model), batch_size=4)
    summary = run_phase1(pairs, backend, tmp_path / "run", GREEDY, progress=False)
    assert (summary.valid, summary.rejected, summary.attempted, summary.exhausted) == (0, 8, 8, 4)
    rejects = list(all_records(tmp_path / "run", "rejects"))
    assert len(rejects) == 8 and all(r["reason"] for r in rejects)
    by_key: dict[str, list[dict]] = {}
    for record in rejects:
        by_key.setdefault(record["key"], []).append(record)
    for key, attempts in by_key.items():
        assert [r["attempt"] for r in attempts] == [1, 2]
        assert [r["seed"] for r in attempts] == [attempt_seed(0, key, 1), attempt_seed(0, key, 2)]
        assert attempts[0]["seed"] != attempts[1]["seed"], "a retry uses a new seed"
    again = run_phase1(pairs, backend, tmp_path / "run", GREEDY, progress=False)
    assert (again.attempted, again.already_done) == (0, 4), "exhausted pairs are not retried on resume"


def test_generation_resume_and_export(real_pairs, parrot, tmp_path):
    pairs = read_pairs(real_pairs)
    backend = make_backend("transformers", str(parrot), batch_size=8)
    first = run_phase1(pairs[:10], backend, tmp_path / "run", GREEDY, progress=False)
    assert first.valid + first.rejected == first.attempted
    assert first.valid >= 5
    second = run_phase1(pairs[:16], backend, tmp_path / "run", GREEDY, progress=False)
    assert second.already_done == 10 and second.items == 16
    assert second.attempted >= 6 and second.valid + second.rejected == second.attempted
    records = list(all_records(tmp_path / "run"))
    assert len({r["pair_id"] for r in records}) == len(records) == first.valid + second.valid
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["identity"]["model"] == str(parrot)
    assert manifest["identity"]["template_sha256"] == records[0]["template_sha256"]
    assert manifest["inputs"] == []
    rows = export_phase1(tmp_path / "run", tmp_path / "release")
    ds = cadinst.load(tmp_path / "release", "phase1", cache_dir=tmp_path / "hf")
    assert len(ds) == rows == len(records)
    assert sorted(ds["id"]) == sorted(r["pair_id"] for r in records)
    with pytest.raises(ManifestMismatchError, match="sampling"):
        other = Phase1Settings(sampling=Sampling(max_tokens=160, temperature=0.5, seed=0))
        run_phase1(pairs, backend, tmp_path / "run", other, progress=False)


def test_server_killed_mid_run_loses_nothing(real_pairs, parrot, tmp_path):
    """The OpenAI backend against the real ``transformers serve``; the server dies and comes back."""
    pairs = read_pairs(real_pairs)[:12]
    server = TransformersServe(parrot, tmp_path / "home").start()
    try:
        backend = make_backend(
            "openai",
            server.model_id,
            base_url=server.base_url,
            max_concurrency=2,
            max_attempts=30,
            backoff_base=0.2,
            backoff_max=1.0,
            timeout=30,
        )
        outcome: dict = {}
        runner = threading.Thread(
            target=lambda: outcome.update(summary=run_phase1(pairs, backend, tmp_path / "run", GREEDY, progress=False))
        )
        runner.start()
        shard = tmp_path / "run" / "records" / "shard-00000-of-00001.jsonl"
        rejects = tmp_path / "run" / "rejects" / "shard-00000-of-00001.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _lines(shard) + _lines(rejects) < 3:
            time.sleep(0.05)
        server.kill()
        time.sleep(1.0)
        server.start()
        runner.join(timeout=180)
        assert not runner.is_alive()
        summary = outcome["summary"]
        assert summary.valid + summary.rejected == summary.attempted
        failed = [r for r in all_records(tmp_path / "run", "rejects") if r["reason"].startswith("request failed")]
        assert failed == [], "retries carried every request over the outage"
        done = Counter(r["pair_id"] for r in all_records(tmp_path / "run"))
        exhausted = {r["pair_id"] for r in all_records(tmp_path / "run", "rejects")} - set(done)
        assert set(done) | exhausted == {p.pair_id for p in pairs}
        assert set(done.values()) == {1}
        backend.close()
    finally:
        server.stop()


def test_sigkilled_generation_reruns_to_every_record_exactly_once(real_pairs, parrot, tmp_path):
    run = tmp_path / "run"
    command = [
        str(Path(sys.executable).with_name("cadvi")),
        "generate",
        "phase1",
        "--pairs",
        str(real_pairs),
        "--out",
        str(run),
        "--backend",
        "transformers",
        "--model",
        str(parrot),
        "--batch-size",
        "1",
        "--max-tokens",
        "160",
        "--temperature",
        "0",
        "--max-attempts",
        "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    total = len(read_pairs(real_pairs))
    kill_after = random.Random(os.getpid()).randrange(3, total - 3)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    shard = run / "records" / "shard-00000-of-00001.jsonl"
    rejects = run / "rejects" / "shard-00000-of-00001.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and _lines(shard) + _lines(rejects) < kill_after:
        time.sleep(0.01)
    assert process.poll() is None, f"finished before the kill: {process.stderr.read().decode()[-2000:]}"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    interrupted = _lines(shard)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    done = Counter(r["pair_id"] for r in all_records(run))
    rejected = Counter(r["pair_id"] for r in all_records(run, "rejects"))
    assert set(done.values()) == {1}, "no record twice"
    assert set(done) | {p for p, n in rejected.items() if n >= 2} == {p.pair_id for p in read_pairs(real_pairs)}
    assert all(n <= 2 for n in rejected.values())
    assert len(done) >= interrupted


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_a_run_folder_made_before_the_runner_resumes_with_no_duplicates(tmp_path, monkeypatch):
    """``tests/data/phase1-run-952c9aa``: 8 of 12 pairs generated by the code of commit 952c9aa (the first
    phase-1 loop, whose manifest kept its inputs as ``details.inputs``), with the tiny stand-in named ``parrot``."""
    import shutil

    from builders.phase1 import Phase1Task
    from builders.runs import InputFile
    from cadvi.demo import stand_in_model

    fixture = Path(__file__).parent / "data" / "phase1-run-952c9aa"
    run, pairs_file = tmp_path / "run", tmp_path / "pairs.jsonl"
    shutil.copytree(fixture / "run", run)
    shutil.copy(fixture / "pairs.jsonl", pairs_file)
    monkeypatch.chdir(tmp_path)  # the old run recorded the model by the relative name it was given
    pairs = read_pairs(pairs_file)
    stand_in_model("parrot", [pair.captions for pair in pairs])
    settings = Phase1Settings(sampling=Sampling(max_tokens=160, temperature=0.0, seed=0), max_attempts=2)
    before = list(all_records(run))
    assert len(before) == 8
    assert {r["key"] for r in before} == {Phase1Task(settings).key(pair, "parrot") for pair in pairs[:8]}, "same keys"

    backend = make_backend("transformers", "parrot", batch_size=4)
    summary = run_phase1(pairs, backend, run, settings, inputs=[InputFile.of(pairs_file)], progress=False)
    backend.close()
    assert (summary.items, summary.already_done) == (12, 8) and summary.attempted >= 4
    records = list(all_records(run))
    assert records[:8] == before, "old records untouched"
    assert len({r["pair_id"] for r in records}) == len(records), "0 duplicates"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["inputs"] == [{"path": "pairs.jsonl", "sha256": InputFile.of(pairs_file).sha256}]
