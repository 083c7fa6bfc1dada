"""Content parts of chat messages: text and images, their identity, and the form each engine takes them in.

A message's ``content`` is a string (as always) or a list of OpenAI-style parts:

* ``{"type": "text", "text": str}``
* ``{"type": "image_url", "image_url": {"url": URL}}`` where URL is a ``data:image/...;base64,...`` URI, a
  local file path or a ``file://`` URL. Remote URLs (``http://``...) are refused: an image must be hashable
  when the request key is made, and an in-process engine has no network.
* ``{"type": "image", "image": PIL.Image.Image}``

Images are never part of a request key as bytes: :func:`image_sha256` stands in for them (the rule is in
its docstring), and :func:`redact_data_uris` keeps base64 payloads out of logs and error messages.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import re
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from PIL import Image

    ImageSource = Image.Image | str  # a PIL image, or a data URI / local path / file:// URL

TEXT = "text"
IMAGE_TYPES = ("image_url", "image")
# Formats whose decoding is exact: their pixels are their identity, so a PIL image and a PNG of it match.
LOSSLESS_FORMATS = frozenset({"PNG", "BMP", "PPM", "TGA", "QOI"})
_REMOTE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DATA_URI = re.compile(r"data:([\w.+/-]*)((?:;[\w.+-]+=[\w.+-]+)*);base64,[A-Za-z0-9+/=]+")


def is_pil(value: Any) -> bool:
    from PIL import Image

    return isinstance(value, Image.Image)


def is_image_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") in IMAGE_TYPES


def image_source(part: dict) -> ImageSource:
    """The image an image part holds: a PIL image, or a data URI / local path string (checked, not read)."""
    if part.get("type") == "image":
        image = part.get("image")
        if not is_pil(image):
            raise ValueError(f"an 'image' part holds a PIL image under 'image', got {type(image).__name__}")
        return image
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else None
    if not isinstance(url, str) or not url:
        raise ValueError("an 'image_url' part holds {'image_url': {'url': <data URI or local path>}}")
    if _REMOTE_URL.match(url) and not url.startswith("file://"):
        raise ValueError(
            f"image URL {url[:80]!r}: only data: URIs and local files are supported (download remote images first)"
        )
    return url


def check_content(content: Any, where: str) -> None:
    """Raise ``ValueError`` unless ``content`` is a string or a list of text and image parts (files are not read)."""
    if isinstance(content, str):
        return
    if not isinstance(content, list | tuple):
        raise ValueError(f"{where}: content is a string or a list of parts, not {type(content).__name__}")
    for index, part in enumerate(content):
        if is_image_part(part):
            image_source(part)
        elif not (isinstance(part, dict) and part.get("type") == TEXT and isinstance(part.get("text"), str)):
            shown = redact_data_uris(repr(part))[:200]
            raise ValueError(f"{where}: part {index} is not a text, image_url or image part: {shown}")


def image_parts(messages: Sequence[dict]) -> Iterator[dict]:
    """The image parts of ``messages``, in order."""
    for message in messages:
        content = message.get("content")
        if not isinstance(content, str) and content:
            yield from (part for part in content if is_image_part(part))


def has_images(messages: Sequence[dict]) -> bool:
    return next(image_parts(messages), None) is not None


def text_of(content: Any) -> str:
    """The text of a content (the text parts joined, images left out)."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == TEXT)


# ----- reading images -----


def local_path(url: str) -> Path:
    if url.startswith("file://"):
        return Path(urllib.request.url2pathname(urlsplit(url).path))
    return Path(url).expanduser()


def encoded_bytes(source: str) -> bytes:
    """The file bytes behind a data URI or a local path."""
    if source.startswith("data:"):
        header, comma, payload = source.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ValueError(f"data URI {header[:60]!r}: only base64 data URIs are supported")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError(f"data URI {header[:60]!r} holds invalid base64: {error}") from None
    return local_path(source).read_bytes()


def open_encoded(data: bytes, where: str) -> Image.Image:
    """The image in ``data``, opened lazily (format and size known, pixels not decoded yet)."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ValueError(f"{where} is not an image PIL can read") from None


def load_image(source: ImageSource) -> Image.Image:
    """The decoded image (a PIL image is returned as it is)."""
    if is_pil(source):
        return source
    image = open_encoded(encoded_bytes(source), _where(source))
    image.load()
    return image


# ----- identity -----


def image_sha256(source: ImageSource) -> str:
    """The identity of an image in a request key (hex sha256). The rule:

    * a PIL image, or an encoded image in a lossless format (PNG, BMP, PPM, TGA, QOI), is hashed by its decoded
      pixels: ``sha256("cadvi-image-v1 <mode> <width>x<height>\\n" + Image.tobytes())``, palette images taken as
      RGBA first. So a PIL image, a PNG file of it and a PNG data URI of it share one hash.
    * any other encoded image (JPEG, WebP, ...) is hashed by its bytes: the plain sha256 of the file (what
      ``sha256sum`` prints), the same for the file and a data URI of it. Lossy decoders may differ between
      library versions, so decoded pixels would not be a stable key; and this needs no decoding.

    So a PIL image decoded from a JPEG is not the JPEG file: pass images in one form within a run. File hashes
    are cached per (path, size, mtime).
    """
    if is_pil(source):
        return pixels_sha256(source)
    if source.startswith("data:"):
        return _encoded_sha256(encoded_bytes(source), "a data URI")
    path = local_path(source).resolve()
    stat = path.stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


def pixels_sha256(image: Image.Image) -> str:
    if image.mode in ("P", "PA"):  # palette indices mean nothing without the palette: hash the colours
        image = image.convert("RGBA")
    digest = hashlib.sha256(f"cadvi-image-v1 {image.mode} {image.width}x{image.height}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=16384)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return _encoded_sha256(Path(path).read_bytes(), f"image file {path!r}")


def _encoded_sha256(data: bytes, where: str) -> str:
    image = open_encoded(data, where)
    if image.format in LOSSLESS_FORMATS:
        image.load()
        return pixels_sha256(image)
    return hashlib.sha256(data).hexdigest()


def content_identity(content: Any) -> Any:
    """``content`` with every image part replaced by ``{"type": "image", "sha256": ...}``; strings unchanged."""
    if not isinstance(content, list | tuple):
        return content
    identity = []
    for part in content:
        if is_image_part(part):
            item = {"type": "image", "sha256": image_sha256(image_source(part))}
            detail = _detail(part)
            identity.append({**item, "detail": detail} if detail else item)
        else:
            identity.append(dict(part))
    return identity


# ----- what each engine takes -----


def data_uri(source: ImageSource, max_side: int | None = None) -> str:
    """An image as a base64 data URI, its longest side cut to ``max_side`` (aspect kept) when it is longer.

    Encoded images that need no resizing keep their bytes (a JPEG stays that JPEG); a PIL image becomes a
    PNG; a resized image is saved as JPEG (quality 95) when it was one, else as PNG.
    """
    from PIL import Image

    data = None if is_pil(source) else encoded_bytes(source)
    image = source if data is None else open_encoded(data, _where(source))
    if max_side is None or max(image.size) <= max_side:
        if data is None:
            return _encode(image, "PNG")
        if source.startswith("data:"):
            return source
        return f"data:{Image.MIME.get(image.format or '', 'application/octet-stream')};base64,{_b64(data)}"
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return _encode(image.resize(size, Image.Resampling.LANCZOS), "JPEG" if image.format == "JPEG" else "PNG")


def map_images(messages: Sequence[dict], convert: Any) -> list[dict]:
    """Copies of ``messages`` with each image part replaced by ``convert(part)`` (text and strings kept)."""
    mapped = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) or not content:
            mapped.append(dict(message))
        else:
            parts = [convert(part) if is_image_part(part) else dict(part) for part in content]
            mapped.append({**message, "content": parts})
    return mapped


def openai_messages(messages: Sequence[dict], max_side: int | None = None) -> list[dict]:
    """Messages for an OpenAI-compatible server: every image as an ``image_url`` part with a data URI."""

    def convert(part: dict) -> dict:
        image_url = {"url": data_uri(image_source(part), max_side)}
        detail = _detail(part)
        return {"type": "image_url", "image_url": {**image_url, "detail": detail} if detail else image_url}

    return map_images(messages, convert)


def vllm_messages(messages: Sequence[dict]) -> list[dict]:
    """Messages for ``vllm.LLM.chat``: data URIs stay ``image_url`` parts (vLLM decodes them); PIL images and
    local files become ``image_pil`` parts (vLLM reads ``file://`` URLs only under ``allowed_local_media_path``)."""

    def convert(part: dict) -> dict:
        source = image_source(part)
        if isinstance(source, str) and source.startswith("data:"):
            return {"type": "image_url", "image_url": {"url": source}}
        return {"type": "image_pil", "image_pil": load_image(source)}

    return map_images(messages, convert)


def template_messages(messages: Sequence[dict]) -> tuple[list[dict], list[Image.Image]]:
    """Messages for a processor's chat template, and their images (RGB) in order.

    String content becomes one text part (multimodal templates iterate over parts); each image becomes a
    ``{"type": "image"}`` placeholder, which the template renders as the model's image token.
    """
    images: list[Image.Image] = []

    def convert(part: dict) -> dict:
        image = load_image(image_source(part))
        images.append(image if image.mode == "RGB" else image.convert("RGB"))
        return {"type": "image"}

    as_parts = [
        {**m, "content": [{"type": TEXT, "text": m["content"]}]} if isinstance(m.get("content"), str) else m
        for m in messages
    ]
    return map_images(as_parts, convert), images


def text_messages(messages: Sequence[dict]) -> list[dict]:
    """Messages for a text-only chat template: content made of text parts becomes one string."""
    return [
        {**m, "content": text_of(m["content"])} if isinstance(m.get("content"), list | tuple) else dict(m)
        for m in messages
    ]


def redact_data_uris(text: str) -> str:
    """``text`` with each base64 data URI replaced by ``data:<type>;base64,<N chars>``: logs never hold image bytes."""
    return _DATA_URI.sub(lambda m: f"data:{m.group(1)}{m.group(2)};base64,<{len(m.group(0))} chars>", text)


def _encode(image: Image.Image, image_format: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": 95} if image_format == "JPEG" else {}))
    return f"data:image/{image_format.lower()};base64,{_b64(buffer.getvalue())}"


def _detail(part: dict) -> str | None:
    """OpenAI's ``detail`` ("low" | "high" | "auto") of an ``image_url`` part: it changes what the model sees."""
    return part["image_url"].get("detail") if part.get("type") == "image_url" else None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _where(source: str) -> str:
    return "a data URI" if source.startswith("data:") else f"image file {source!r}"
