"""The LLM interface and its backends, on a tiny random model: in-process, and through a real server."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from builders.llm import Request, Result, Sampling, fold_system_prompt, make_backend
from builders.llm.base import Backend, chat_template_accepts_system, cut_at_stop
from builders.llm.tiny import build_tiny_chat_model
from tests.llm_fixtures import by_key

if TYPE_CHECKING:
    from tests.llm_fixtures import TransformersServe


SYSTEM = "You compare two images."
PROMPTS = (
    "hi",
    "Summarize the commonalities and differences of the two images.",
    "a dog",
    "Which image suits the caption better? A. Image 1 B. Image 2. Answer with the option's letter.",
    "Image 1 shows two cats; Image 2 shows one horse on a beach at sunset, next to a red car.",
)
SECRET = "sk-cadvi-test-0123456789-do-not-log"


def chat(text: str, system: str | None = SYSTEM) -> tuple[dict, ...]:
    return (
        ({"role": "system", "content": system}, {"role": "user", "content": text})
        if system
        else ({"role": "user", "content": text},)
    )


def requests_for(prompts=PROMPTS, sampling: Sampling | None = None, prefix: str = "k") -> list[Request]:
    sampling = sampling or Sampling(max_tokens=6)
    return [Request(f"{prefix}{i}", chat(p), sampling) for i, p in enumerate(prompts)]


# ----- the interface -----


def test_sampling_is_validated_and_normalised():
    assert Sampling(max_tokens=4, stop=["a", "b"]).stop == ("a", "b")
    assert Sampling(max_tokens=4, stop="x").stop == ("x",)
    for bad in ({"max_tokens": 0}, {"max_tokens": 4, "temperature": -1}, {"max_tokens": 4, "top_p": 0}):
        with pytest.raises(ValueError):
            Sampling(**bad)
    with pytest.raises(ValueError, match="no messages"):
        Request("k", (), Sampling(max_tokens=1))


def test_fold_system_prompt():
    messages = (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Compare."},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Again."},
    )
    folded = fold_system_prompt(messages)
    assert folded == (
        {"role": "user", "content": "Be brief.\n\nCompare."},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Again."},
    )
    assert messages[1]["content"] == "Compare."  # inputs untouched
    assert fold_system_prompt(messages[1:]) == messages[1:]
    assert fold_system_prompt(({"role": "system", "content": "S"},)) == ({"role": "user", "content": "S"},)
    parts = fold_system_prompt(({"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "image"}]}))
    assert parts[0]["content"] == [{"type": "text", "text": "S\n\n"}, {"type": "image"}]


def test_cut_at_stop_and_unknown_backend():
    assert cut_at_stop("abc END def STOP", ("STOP", "END")) == ("abc ", True)
    assert cut_at_stop("abc", ("x",)) == ("abc", False)
    with pytest.raises(ValueError, match="choose one of openai, transformers, vllm"):
        make_backend("llama.cpp", "m")


def test_tiny_model_is_cached_and_rejects_system_role(tiny_chat_model: Path):
    from transformers import AutoTokenizer

    assert build_tiny_chat_model(tiny_chat_model) == tiny_chat_model  # complete: reused, not rebuilt
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    assert not chat_template_accepts_system(tokenizer)
    prompt = tokenizer.apply_chat_template(list(chat("hi", None)), add_generation_prompt=True, tokenize=False)
    assert prompt == "<s>[INST] hi [/INST]"
    assert tokenizer(prompt, add_special_tokens=False)["input_ids"].count(tokenizer.bos_token_id) == 1


# ----- transformers in-process -----


@pytest.fixture(scope="module")
def local(tiny_chat_model: Path):
    with make_backend("transformers", str(tiny_chat_model), batch_size=3) as backend:
        yield backend


def test_transformers_batch(local):
    assert isinstance(local, Backend)
    assert local.fold_system  # detected from the template
    requests = requests_for(sampling=Sampling(max_tokens=6))
    first = by_key(local.generate(iter(requests)), requests)  # a lazy iterable is fine
    assert set(first) == {r.key for r in requests}
    assert by_key(local.generate(requests)) == first  # greedy: deterministic
    for result in first.values():
        assert result.ok and result.text
        assert result.prompt_tokens > 0 and 0 < result.completion_tokens <= 6
        # The random model never picks EOS in 6 steps: every row ran to max_tokens.
        assert result.finish_reason == "length" and result.completion_tokens == 6
    assert first["k0"].prompt_tokens < first["k3"].prompt_tokens  # counted without padding
    described = local.describe()
    assert described["backend"] == "transformers" and described["fold_system"] is True
    json.dumps(described)


def test_transformers_batched_equals_one_at_a_time(local):
    requests = requests_for(sampling=Sampling(max_tokens=8))
    batched = by_key(local.generate(requests), requests)
    for request in requests:
        (single,) = local.generate([request])
        assert single == batched[request.key]


def test_transformers_folds_the_system_prompt(local):
    sampling = Sampling(max_tokens=8)
    (with_system,) = local.generate([Request("a", chat("a dog"), sampling)])
    (folded_by_hand,) = local.generate([Request("b", chat(f"{SYSTEM}\n\na dog", None), sampling)])
    (without_system,) = local.generate([Request("c", chat("a dog", None), sampling)])
    assert with_system.text == folded_by_hand.text
    assert with_system.prompt_tokens == folded_by_hand.prompt_tokens > without_system.prompt_tokens


def test_transformers_stop_strings_and_sampling(local):
    (full,) = local.generate([Request("full", chat(PROMPTS[1]), Sampling(max_tokens=12))])
    stop = full.text[4:7]
    (stopped,) = local.generate([Request("stop", chat(PROMPTS[1]), Sampling(max_tokens=12, stop=(stop,)))])
    assert stopped.finish_reason == "stop"
    assert stopped.text == full.text[: full.text.index(stop)]  # stop string excluded
    assert stopped.completion_tokens < 12

    sampled = Sampling(max_tokens=8, temperature=1.0, seed=7)
    once = by_key(local.generate(requests_for(sampling=sampled)), requests_for(sampling=sampled))
    assert once == by_key(local.generate(requests_for(sampling=sampled)))  # same batches, same seed
    greedy = by_key(local.generate(requests_for(sampling=Sampling(max_tokens=8))), requests_for())
    assert any(once[key].text != greedy[key].text for key in once)


def test_transformers_bad_request_fails_alone(local, caplog):
    bad = Request("bad", ({"role": "user", "content": "a"}, {"role": "user", "content": "b"}), Sampling(max_tokens=4))
    schema = Request("schema", chat("a dog"), Sampling(max_tokens=4, json_schema={"type": "object"}))
    requests = [bad, *requests_for(), schema]
    with caplog.at_level(logging.WARNING):
        results = by_key(local.generate(requests), requests)
    assert len(results) == len(PROMPTS) + 2
    assert results["bad"].error and "alternate" in results["bad"].error and results["bad"].text == ""
    assert all(r.ok for key, r in results.items() if key != "bad")
    assert "ignores json_schema" in caplog.text


def test_transformers_stops_at_eos_and_counts_it(local, monkeypatch):
    """The random model never says EOS, so declare one of the tokens it does say to be EOS."""
    import torch

    request = Request("eos", chat(PROMPTS[1]), Sampling(max_tokens=10))
    with torch.inference_mode():
        ids = torch.tensor([local._prompt_ids(request)], device=local.lm.device)
        output = local.lm.generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=local.pad_id)
    generated = output[0, ids.shape[1] :].tolist()
    eos = generated[3]
    stop_at = generated.index(eos)
    monkeypatch.setattr(local, "eos_ids", frozenset({eos}))
    requests = [request, *requests_for(sampling=Sampling(max_tokens=10))]
    results = by_key(local.generate(requests), requests)
    assert results["eos"].finish_reason == "stop"
    assert results["eos"].completion_tokens == stop_at + 1  # EOS counted, padding after it not
    assert results["eos"].text == local.tokenizer.decode(generated[:stop_at], skip_special_tokens=True)


# ----- OpenAI-compatible server (a real `transformers serve`) -----


def openai_backend(server: TransformersServe, **options):
    settings = {"base_url": server.base_url, "timeout": 30.0, **options}
    return make_backend("openai", server.model_id, **settings)


def test_openai_backend_against_transformers_serve(shared_server, local, monkeypatch, caplog):
    import openai

    monkeypatch.setenv("CADVI_TEST_LLM_KEY", SECRET)
    in_flight, peak, lock = 0, 0, threading.Lock()
    http_client = openai.DefaultAsyncHttpxClient()
    send = http_client._transport.handle_async_request

    async def counting_send(request):  # at the transport: every HTTP request, answered or dropped
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            return await send(request)
        finally:
            with lock:
                in_flight -= 1

    http_client._transport.handle_async_request = counting_send
    requests = [*requests_for(prompts=PROMPTS * 2), Request("schema", chat("a dog"), Sampling(4, json_schema={}))]
    caplog.set_level(logging.DEBUG)
    with openai_backend(
        shared_server, api_key_env="CADVI_TEST_LLM_KEY", max_concurrency=2, http_client=http_client
    ) as llm:
        results = by_key(llm.generate(requests), requests)
        described = llm.describe()
        text = repr(llm)
    assert set(results) == {r.key for r in requests}
    for result in results.values():
        assert result.ok, result.error
        assert result.prompt_tokens > 0 and 0 < result.completion_tokens <= result_max(requests, result.key)
    assert peak == 2  # the bound was reached and respected (the server itself runs one at a time)
    assert SECRET not in json.dumps(described) + text + caplog.text
    assert described["api_key_env"] == "CADVI_TEST_LLM_KEY"
    # The tiny template rejects the system role (the server answers 500): probed once, then folded.
    assert described["fold_system"] is True
    assert caplog.text.count("takes it folded: folding system prompts") == 1
    # transformers serve rejects vLLM's structured_outputs field with a 422: dropped once, request resent.
    assert caplog.text.count("json_schema ignored") == 1 and "rejects structured_outputs" in caplog.text

    # Same model, same template, greedy: the server and the in-process backend agree token for token.
    assert_same_output(results["k1"], next(local.generate([requests[1]])))

    # transformers serve keeps the stop string in the text; the backend cuts it like vLLM and OpenAI.
    full = results["k1"].text
    stop = full[2:4]
    with openai_backend(shared_server) as llm:
        (stopped,) = llm.generate([Request("s", chat(PROMPTS[1]), Sampling(max_tokens=6, stop=(stop,)))])
    assert stopped.text == full[: full.index(stop)] and stopped.finish_reason == "stop"


def test_openai_backend_does_not_retry_client_errors(shared_server, caplog):
    # The server is pinned to its model: another model name is a 400, which no retry can fix.
    requests = requests_for(prompts=PROMPTS[:2])
    with make_backend("openai", "other/model", base_url=shared_server.base_url, backoff_base=5.0) as llm:
        results = by_key(llm.generate(requests), requests)
    assert all(r.error and "BadRequestError 400" in r.error and "after 1 attempt" in r.error for r in results.values())


def result_max(requests: list[Request], key: str) -> int:
    return next(r.sampling.max_tokens for r in requests if r.key == key)


def assert_same_output(served: Result, local: Result) -> None:
    assert (served.text, served.prompt_tokens, served.completion_tokens) == (
        local.text,
        local.prompt_tokens,
        local.completion_tokens,
    )


def test_openai_backend_survives_a_server_restart(own_server, caplog):
    caplog.set_level(logging.INFO, logger="builders.llm.openai_backend")
    requests = requests_for(prompts=PROMPTS * 2, sampling=Sampling(max_tokens=4))
    with openai_backend(own_server, max_concurrency=2, max_attempts=60, backoff_base=0.05, backoff_max=0.5) as llm:
        stream = llm.generate(requests)
        results = [next(stream)]
        own_server.kill()  # SIGKILL with requests in flight and queued
        own_server.start()  # same port
        results += list(stream)
    results = by_key(results, requests)
    assert set(results) == {r.key for r in requests}
    assert all(r.ok and r.completion_tokens == 4 for r in results.values()), [r.error for r in results.values()]
    assert "retrying in" in caplog.text


def test_openai_backend_reports_errors_when_the_server_stays_down(own_server, caplog):
    requests = requests_for(prompts=PROMPTS * 2, sampling=Sampling(max_tokens=4))
    with openai_backend(own_server, max_concurrency=2, max_attempts=3, backoff_base=0.01, backoff_max=0.05) as llm:
        stream = llm.generate(requests)
        first = next(stream)
        own_server.kill()
        results = by_key([first, *stream], requests)
    assert set(results) == {r.key for r in requests}
    assert first.ok
    failed = [r for r in results.values() if not r.ok]
    assert failed and all(r.text == "" and r.finish_reason == "error" for r in failed)
    assert all("APIConnectionError" in r.error for r in failed)
    assert any("after 3 attempts" in r.error for r in failed)


# ----- vLLM in-process -----


def test_vllm_module_imports_without_vllm_and_explains(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm now raises ImportError
    from builders.llm import vllm_backend

    with pytest.raises(ImportError, match=r"pip install 'cad-vi\[vllm\]' on a GPU machine"):
        vllm_backend.VLLMBackend("some/model")


def test_openai_retry_policy_and_request_body(fake_chat_server, monkeypatch):
    import time

    monkeypatch.setenv("CADVI_TEST_LLM_KEY", SECRET)
    options = {"base_url": fake_chat_server.base_url, "max_concurrency": 1, "backoff_base": 0.01, "backoff_max": 1.0}
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    sampling = Sampling(max_tokens=7, temperature=0.5, top_p=0.9, seed=11, stop=("###",), json_schema=schema)
    request = Request("r", chat("hi", None), sampling)
    fake_chat_server.script = [(429, {"Retry-After": "0.3"}), (503, {}), (502, {})]
    with make_backend("openai", "m", api_key_env="CADVI_TEST_LLM_KEY", **options) as llm:
        started = time.monotonic()
        (result,) = llm.generate([request])
        elapsed = time.monotonic() - started
    assert result == Result("r", "fake answer", 5, 2, "stop")
    assert len(fake_chat_server.received) == 4 and elapsed >= 0.3  # Retry-After honoured over the 0.01 s backoff
    headers, body = fake_chat_server.received[-1]
    assert headers["authorization"] == f"Bearer {SECRET}"
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 7,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 11,
        "stop": ["###"],
        "structured_outputs": {"json": schema},  # vLLM >= 0.12; never the removed guided_json
    }

    fake_chat_server.received.clear()
    fake_chat_server.script = [(503, {})] * 3 + [(401, {})]
    monkeypatch.delenv("CADVI_TEST_LLM_KEY")
    requests = [Request("a", chat("x", None), Sampling(4)), Request("b", chat("y", None), Sampling(4))]
    with make_backend("openai", "m", api_key_env="CADVI_TEST_LLM_KEY", max_attempts=3, **options) as llm:
        results = by_key(llm.generate(requests), requests)
    assert results["a"].error.startswith("InternalServerError 503") and "after 3 attempts" in results["a"].error
    assert results["b"].error.startswith("AuthenticationError 401") and "after 1 attempt" in results["b"].error
    assert fake_chat_server.received[0][0]["authorization"] == "Bearer EMPTY"  # placeholder for local servers
