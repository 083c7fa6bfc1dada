"""Two-image requests on a real (tiny, random) LLaVA: in-process through transformers, and over HTTP through
``transformers serve``, compared token for token."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders.llm import Request, Result, Sampling, make_backend
from builders.llm.base import REQUEST, TOO_LONG
from builders.llm.tiny import LLAVA_SYSTEM
from tests.llm_fixtures import as_data_uri, by_key, encoded, noise_image

IMAGE_TOKENS = 16  # 32 px images, patch 8, CLS dropped
QUESTION = "\nWhich image suits the caption better?"


def pil(seed: int) -> dict:
    return {"type": "image", "image": noise_image(seed)}


def url(value: str) -> dict:
    return {"type": "image_url", "image_url": {"url": value}}


def pair_request(key: str, first: dict, second: dict, question: str = QUESTION, **sampling) -> Request:
    content = [{"type": "text", "text": "Image 1: "}, first, {"type": "text", "text": "\nImage 2: "}, second]
    content.append({"type": "text", "text": question})
    return Request(key, ({"role": "user", "content": content},), Sampling(**{"max_tokens": 6, **sampling}))


def text_request(key: str, text: str, max_tokens: int = 6) -> Request:
    return Request(key, ({"role": "user", "content": text},), Sampling(max_tokens=max_tokens))


@pytest.fixture(scope="module")
def llava(tiny_llava_model: Path):
    with make_backend("transformers", str(tiny_llava_model), batch_size=3) as backend:
        yield backend


@pytest.fixture(scope="module")
def pair_requests(tmp_path_factory: pytest.TempPathFactory) -> list[Request]:
    """Two-image requests in every image form, of different lengths, and one text-only request."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "3.png").write_bytes(encoded(noise_image(3)))
    (folder / "4.jpg").write_bytes(encoded(noise_image(4), "JPEG"))
    return [
        pair_request("pil", pil(1), pil(2)),
        pair_request("swapped", pil(2), pil(1)),
        pair_request("same-text-other-images", pil(5), pil(5)),
        pair_request("files", url(str(folder / "3.png")), url((folder / "4.jpg").as_uri()), " Answer."),
        pair_request("data-uri", url(as_data_uri(encoded(noise_image(6)))), pil(7), f"{QUESTION} A. Image 1 B. 2"),
        text_request("text", "Which image suits the caption better?"),
    ]


def expected_prompt_tokens(llava, request: Request) -> int:
    """The vicuna_v1 prompt counted by the tokenizer, each ``<image>`` standing for its 16 image tokens."""
    (message,) = request.messages
    content = message["content"]
    text = content if isinstance(content, str) else "".join(p.get("text", "<image>") for p in content)
    ids = llava.tokenizer(f"{LLAVA_SYSTEM}USER: {text} ASSISTANT:", add_special_tokens=False)["input_ids"]
    return len(ids) + text.count("<image>") * (IMAGE_TOKENS - 1)


def test_the_tiny_llava_loads_as_an_image_text_model(llava):
    assert type(llava.lm).__name__ == "LlavaForConditionalGeneration"
    assert llava.multimodal and llava.processor is not None
    described = llava.describe()
    assert described["multimodal"] is True and described["context_length"] == 1024
    assert described["fold_system"] is False  # the vicuna_v1 template renders a system message


def test_two_image_requests_batched_equal_one_at_a_time(llava, pair_requests):
    batched = by_key(llava.generate(pair_requests), pair_requests)  # batches of 3: images and text mixed
    for request in pair_requests:
        (single,) = llava.generate([request])
        assert single == batched[request.key]
    for request in pair_requests:
        result = batched[request.key]
        assert result.ok, result.error
        assert result.prompt_tokens == expected_prompt_tokens(llava, request)  # image tokens counted
        assert result.finish_reason == "length" and result.completion_tokens == 6
    # The same text with other images: the model saw the pixels.
    assert batched["pil"].text != batched["same-text-other-images"].text


def test_seeded_sampling_and_stop_strings_with_images(llava, pair_requests):
    sampling = {"max_tokens": 8, "temperature": 1.0, "seed": 3}
    sampled = [pair_request(f"s{seed}", pil(seed), pil(seed + 1), **sampling) for seed in range(3)]
    once = by_key(llava.generate(sampled), sampled)
    assert once == by_key(llava.generate(sampled), sampled)  # same batch, same seed
    (greedy,) = llava.generate([pair_request("g", pil(1), pil(2), max_tokens=12)])
    stop = greedy.text[3:6]
    (stopped,) = llava.generate([pair_request("s", pil(1), pil(2), max_tokens=12, stop=(stop,))])
    assert stopped.text == greedy.text[: greedy.text.index(stop)] and stopped.finish_reason == "stop"
    assert stopped.completion_tokens < 12


def test_too_long_counts_the_image_tokens(llava, monkeypatch):
    request = pair_request("pair", pil(1), pil(2), max_tokens=4)
    (fits,) = llava.generate([request])
    prompt_tokens = fits.prompt_tokens
    same_text = text_request("text", f"Image 1: \nImage 2: {QUESTION}", max_tokens=4)
    monkeypatch.setattr(llava, "context_length", prompt_tokens + 4)  # exactly full: still runs
    (exact,) = llava.generate([request])
    assert exact.ok and exact.prompt_tokens == prompt_tokens
    monkeypatch.setattr(llava, "context_length", prompt_tokens + 3)  # one token short, only by the images
    results = by_key(llava.generate([request, same_text]), [request, same_text])
    assert results["pair"].failure_kind == TOO_LONG and results["pair"].finish_reason == "error"
    assert f"{prompt_tokens:,} prompt tokens + max_tokens 4 exceed the model's context" in results["pair"].error
    assert results["text"].ok and results["text"].prompt_tokens < prompt_tokens - 2 * IMAGE_TOKENS + 2


def test_an_unreadable_image_fails_its_request_alone(llava, tmp_path):
    missing = pair_request("missing", url(str(tmp_path / "nope.png")), pil(1))
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    broken = pair_request("broken", url(str(not_an_image)), pil(1))
    requests = [missing, broken, pair_request("fine", pil(1), pil(2))]
    results = by_key(llava.generate(requests), requests)
    assert results["missing"].failure_kind == REQUEST and "image: " in results["missing"].error
    assert "No such file" in results["missing"].error
    assert "not an image PIL can read" in results["broken"].error
    assert results["fine"].ok


def test_a_text_only_model_refuses_image_parts(tiny_chat_model: Path):
    image = pair_request("image", pil(1), pil(2))
    parts = [{"type": "text", "text": "a "}, {"type": "text", "text": "dog"}]
    as_parts = Request("parts", ({"role": "user", "content": parts},), Sampling(max_tokens=5))
    as_string = text_request("string", "a dog", max_tokens=5)
    requests = [image, as_parts, as_string]
    with make_backend("transformers", str(tiny_chat_model)) as backend:
        assert backend.multimodal is False and backend.processor is None
        results = by_key(backend.generate(requests), requests)
    assert results["image"].failure_kind == REQUEST and results["image"].text == ""
    assert "is text-only (no vision config): it cannot take image parts" in results["image"].error
    # Text parts reach a text-only template as one string: the same prompt as plain string content.
    joined, string = results["parts"], results["string"]
    assert joined.ok and (joined.text, joined.prompt_tokens) == (string.text, string.prompt_tokens)


# ----- over HTTP: transformers serve on the same model -----


def test_transformers_serve_runs_the_tiny_llava(llava_server, llava, pair_requests):
    """``transformers serve`` takes image_url parts with data URIs; greedy output equals the in-process run."""
    with make_backend("openai", llava_server.model_id, base_url=llava_server.base_url, timeout=60.0) as llm:
        served = by_key(llm.generate(pair_requests), pair_requests)
    local = by_key(llava.generate(pair_requests), pair_requests)
    for key, result in served.items():
        assert result.ok, result.error
        assert same_output(result, local[key]), (key, result, local[key])


def same_output(served: Result, local: Result) -> bool:
    return (served.text, served.prompt_tokens, served.completion_tokens) == (
        local.text,
        local.prompt_tokens,
        local.completion_tokens,
    )
