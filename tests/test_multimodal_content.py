"""Image content parts: validation, request identity (no bytes in keys), the OpenAI request body (no bytes in
logs) and what reaches vLLM."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from builders.llm import Request, Sampling, fold_system_prompt, make_backend, messages_identity
from builders.llm.base import REQUEST
from builders.llm.content import redact_data_uris
from builders.runs import request_key
from tests.llm_fixtures import as_data_uri, by_key, encoded, noise_image

SECRET = "sk-cadvi-test-0123456789-do-not-log"
SYSTEM = "You compare two images."


def pil_part(image: Image.Image) -> dict:
    return {"type": "image", "image": image}


def url_part(value: str) -> dict:
    return {"type": "image_url", "image_url": {"url": value}}


def pair(first: dict, second: dict, text: str = "What differs?") -> tuple[dict, ...]:
    return (
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": [first, second, {"type": "text", "text": text}]},
    )


def key_of(messages: tuple[dict, ...]) -> str:
    return request_key("stage", messages_identity(messages), "model")


def decoded(uri: str) -> Image.Image:
    payload = uri.partition(",")[2]
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    image.load()
    return image


# ----- identity -----


def test_the_same_png_image_gives_the_same_key_in_every_form(tmp_path: Path):
    image = noise_image(1)
    png = encoded(image)
    path = tmp_path / "one.png"
    path.write_bytes(png)
    other = pil_part(noise_image(2))
    forms = [pil_part(image), url_part(as_data_uri(png)), url_part(str(path)), url_part(path.as_uri())]
    assert len({key_of(pair(form, other)) for form in forms}) == 1
    # The documented rule: sha256 over mode, size and the decoded pixels.
    pixels = hashlib.sha256(b"cadvi-image-v1 RGB 48x40\n" + image.tobytes()).hexdigest()
    identity = messages_identity(pair(url_part(as_data_uri(png)), other))
    assert identity[1]["content"][0] == {"type": "image", "sha256": pixels}
    assert identity[0] == {"role": "system", "content": SYSTEM} and identity[1]["content"][2]["text"] == "What differs?"
    serialised = json.dumps(identity)
    assert base64.b64encode(png).decode()[:40] not in serialised and "base64" not in serialised

    assert key_of(pair(other, pil_part(image))) != key_of(pair(pil_part(image), other))  # order counts
    assert key_of(pair(pil_part(noise_image(3)), other)) != key_of(pair(pil_part(image), other))
    assert key_of(pair(pil_part(image), other, "What is alike?")) != key_of(pair(pil_part(image), other))
    low = {"type": "image_url", "image_url": {"url": as_data_uri(png), "detail": "low"}}  # OpenAI's detail counts
    assert messages_identity(pair(low, other))[1]["content"][0] == {"type": "image", "sha256": pixels, "detail": "low"}
    # A palette image and a PNG of it: the same colours, the same key.
    palette = image.convert("P")
    assert key_of(pair(pil_part(palette), other)) == key_of(pair(url_part(as_data_uri(encoded(palette))), other))


def test_lossy_images_are_identified_by_their_bytes(tmp_path: Path):
    jpeg = encoded(noise_image(1), "JPEG")
    path = tmp_path / "one.jpg"
    path.write_bytes(jpeg)
    (by_file,) = messages_identity(({"role": "user", "content": [url_part(str(path))]},))[0]["content"]
    (by_uri,) = messages_identity(({"role": "user", "content": [url_part(as_data_uri(jpeg, "image/jpeg"))]},))[0][
        "content"
    ]
    assert by_file == by_uri == {"type": "image", "sha256": hashlib.sha256(jpeg).hexdigest()}  # sha256sum
    (by_pixels,) = messages_identity(({"role": "user", "content": [pil_part(Image.open(path))]},))[0]["content"]
    assert by_pixels != by_file  # decoded pixels of a lossy file are not its identity (documented)


def test_text_only_messages_are_their_own_identity():
    messages = ({"role": "system", "content": SYSTEM}, {"role": "user", "content": "Compare.", "name": "u"})
    assert messages_identity(messages) == [dict(m) for m in messages]
    parts = ({"role": "user", "content": [{"type": "text", "text": "Compare."}]},)
    assert messages_identity(parts) == [dict(m) for m in parts]


def test_requests_refuse_malformed_parts_and_identity_unreadable_images(tmp_path: Path):
    sampling = Sampling(max_tokens=4)
    bad_parts = {
        "only data: URIs and local files": url_part("https://example.org/a.jpg"),
        "holds a PIL image under 'image'": {"type": "image", "image": "a.png"},
        "holds {'image_url': {'url'": {"type": "image_url", "image_url": "a.png"},
        "is not a text, image_url or image part": {"type": "video", "video": "a.mp4"},
    }
    for message, part in bad_parts.items():
        with pytest.raises(ValueError, match=message):
            Request("k", ({"role": "user", "content": [part]},), sampling)
    with pytest.raises(ValueError, match="content is a string or a list of parts"):
        Request("k", ({"role": "user", "content": None},), sampling)
    # A malformed part's data URI is not repeated in the error.
    with pytest.raises(ValueError) as raised:
        Request("k", ({"role": "user", "content": [{"type": "txt", "url": as_data_uri(b"x" * 300)}]},), sampling)
    assert "eHh4" not in str(raised.value)

    with pytest.raises(FileNotFoundError):
        messages_identity(({"role": "user", "content": [url_part(str(tmp_path / "missing.png"))]},))
    with pytest.raises(ValueError, match="invalid base64"):
        messages_identity(({"role": "user", "content": [url_part("data:image/png;base64,@@@")]},))
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ValueError, match="not an image PIL can read"):
        messages_identity(({"role": "user", "content": [url_part(str(tmp_path / "notes.png"))]},))


def test_fold_system_prompt_keeps_images_in_place():
    image = pil_part(noise_image(1))
    folded = fold_system_prompt(pair(image, image))
    assert folded == (
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"{SYSTEM}\n\n"},
                image,
                image,
                {"type": "text", "text": "What differs?"},
            ],
        },
    )
    with pytest.raises(ValueError, match="system message holds an image"):
        fold_system_prompt(({"role": "system", "content": [image]}, {"role": "user", "content": "hi"}))


def test_redact_data_uris():
    uri = as_data_uri(encoded(noise_image(1)))
    assert redact_data_uris(f"bad input {{'url': '{uri}'}} here") == (
        f"bad input {{'url': 'data:image/png;base64,<{len(uri)} chars>'}} here"
    )
    assert redact_data_uris("no images") == "no images"


# ----- the OpenAI request body -----


def test_openai_sends_data_uris_and_never_logs_bytes_or_the_key(fake_chat_server, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("CADVI_TEST_LLM_KEY", SECRET)
    pil, jpeg, png = noise_image(1), encoded(noise_image(2), "JPEG"), encoded(noise_image(3))
    path = tmp_path / "two.jpg"
    path.write_bytes(jpeg)
    given_uri = as_data_uri(png)
    content = [pil_part(pil), url_part(str(path)), url_part(given_uri), {"type": "text", "text": "Compare."}]
    request = Request("img", ({"role": "user", "content": content},), Sampling(max_tokens=4))
    options = {"base_url": fake_chat_server.base_url, "api_key_env": "CADVI_TEST_LLM_KEY", "backoff_base": 0.01}
    caplog.set_level(logging.DEBUG)  # every logger, the openai client's and httpx's included
    with make_backend("openai", "m", max_attempts=2, **options) as llm:
        (result,) = llm.generate([request])
        assert result.ok and result.text == "fake answer"
        (sent,) = fake_chat_server.received[-1][1]["messages"]
        fake_chat_server.echo_errors = True  # now the server quotes the request back in its errors
        fake_chat_server.script = [(503, {}), (422, {})]
        (failed,) = llm.generate([request])
    parts = sent["content"]
    assert parts[3] == {"type": "text", "text": "Compare."}
    uris = [part["image_url"]["url"] for part in parts[:3]]
    assert all(part["type"] == "image_url" for part in parts[:3])
    assert uris[0].startswith("data:image/png;base64,") and decoded(uris[0]).tobytes() == pil.tobytes()
    assert uris[1] == as_data_uri(jpeg, "image/jpeg")  # the file's own bytes, not re-encoded
    assert uris[2] == given_uri

    assert failed.failure_kind == REQUEST and "UnprocessableEntityError 422" in failed.error
    assert "base64,<" in caplog.text  # the echoed images were there, and were cut out
    payloads = [uri.partition(",")[2] for uri in uris]
    for text in (caplog.text, failed.error):
        assert SECRET not in text
        assert not any(payload[:24] in text or payload[-24:] in text for payload in payloads)


def test_openai_max_image_side_shrinks_larger_images(fake_chat_server):
    large, small = noise_image(1, (48, 40)), noise_image(2, (12, 10))
    jpeg_uri = as_data_uri(encoded(noise_image(3, (40, 60)), "JPEG"), "image/jpeg")
    content = [pil_part(large), pil_part(small), {"type": "image_url", "image_url": {"url": jpeg_uri, "detail": "low"}}]
    request = Request("r", ({"role": "user", "content": content},), Sampling(max_tokens=4))
    with make_backend("openai", "m", base_url=fake_chat_server.base_url, max_image_side=16) as llm:
        assert llm.describe()["max_image_side"] == 16
        (result,) = llm.generate([request])
    assert result.ok
    (sent,) = fake_chat_server.received[-1][1]["messages"]
    images = [decoded(part["image_url"]["url"]) for part in sent["content"]]
    assert [image.size for image in images] == [(16, 13), (12, 10), (11, 16)]  # aspect kept; small ones left
    assert [image.format for image in images] == ["PNG", "PNG", "JPEG"]
    assert images[1].tobytes() == small.tobytes()
    assert sent["content"][2]["image_url"]["detail"] == "low"
    with pytest.raises(ValueError, match="max_image_side"):
        make_backend("openai", "m", base_url=fake_chat_server.base_url, max_image_side=0)


def test_openai_fails_a_request_whose_image_is_gone(fake_chat_server, tmp_path):
    requests = [
        Request("gone", ({"role": "user", "content": [url_part(str(tmp_path / "gone.png"))]},), Sampling(4)),
        Request("text", ({"role": "user", "content": "hi"},), Sampling(4)),
    ]
    with make_backend("openai", "m", base_url=fake_chat_server.base_url) as llm:
        results = by_key(llm.generate(requests), requests)
    assert results["gone"].failure_kind == REQUEST and results["gone"].error.startswith("image: ")
    assert results["text"].ok and len(fake_chat_server.received) == 1  # the broken one was never sent


# ----- vLLM (a stand-in module: vLLM is not installed here) -----


def test_vllm_gets_image_parts_and_the_image_limit(stand_in_vllm, tmp_path):
    pil, png = noise_image(1), encoded(noise_image(2))
    path = tmp_path / "two.png"
    path.write_bytes(png)
    uri = as_data_uri(encoded(noise_image(3)))
    backend = make_backend("vllm", "org/llava", limit_mm_per_prompt={"image": 2}, chunk_size=4)
    assert stand_in_vllm["init"][0]["limit_mm_per_prompt"] == {"image": 2}
    assert backend.describe()["limit_mm_per_prompt"] == {"image": 2}
    requests = [
        Request("pil+file", pair(pil_part(pil), url_part(str(path))), Sampling(max_tokens=3)),
        Request("uri", pair(url_part(uri), pil_part(pil)), Sampling(max_tokens=3)),
        Request("text", ({"role": "user", "content": "hi"},), Sampling(max_tokens=3)),
    ]
    results = by_key(backend.generate(requests), requests)
    assert all(result.ok for result in results.values())
    conversations = stand_in_vllm["chat"][0][0]
    first = conversations[0][0]["content"]  # the stand-in's template rejects system: folded into the user turn
    assert first[0] == {"type": "text", "text": f"{SYSTEM}\n\n"}
    assert first[1] == {"type": "image_pil", "image_pil": pil}
    assert first[2]["type"] == "image_pil" and first[2]["image_pil"].tobytes() == Image.open(path).tobytes()
    assert conversations[1][0]["content"][1] == {"type": "image_url", "image_url": {"url": uri}}
    assert conversations[2] == [{"role": "user", "content": "hi"}]
    backend.close()
