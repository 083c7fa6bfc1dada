"""What every phase-2 reader shares: :class:`Phase2Item`, the checks of images given as bytes, small helpers.

A module of its own so that the readers (:mod:`.cgd`, :mod:`.cauldron`) and :mod:`.sources` (the JSONL reader
and the dispatch, which imports both readers) all import these without an import cycle.

* Every image given as bytes (CGD.json, cauldron) is checked: PNG with ``PIL.Image.verify`` (chunk CRCs,
  truncation), anything else fully decoded (``verify`` is a no-op for JPEG). COCO and JSONL files are
  checked to exist, not decoded (tens of thousands of full-size JPEGs; an engine fails loudly on a broken one).
* A byte-image is held in its item as a base64 data URI.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builders.release.validate import ProblemCollector

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Phase2Item:
    """One image pair and its difference-only annotation, ready for the phase-2 prompt."""

    pair_id: str  # "cgd_<stem1>_<stem2>", e.g. "cgd_000000000009_000000000025" (the release's phase-2 ids)
    images: tuple[str, str]  # each a local file path or a data:image/...;base64 URI
    image_names: tuple[str, str]  # the file names the export writes, e.g. ("000000000009.jpg", "000000000025.jpg")
    context: str  # every answer about the pair joined with one space, in source order
    origin: str  # "file:row" of the pair's first record


# ----- images given as bytes -----


def image_mime(data: bytes) -> str:
    """The MIME type of an encoded image, once it is known to decode; ``ValueError`` saying why otherwise."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    # lmms-eval sets ImageFile.LOAD_TRUNCATED_IMAGES = True for the whole process when it is imported; a
    # truncated JPEG would then "decode". The check must not depend on who imported what first.
    tolerant, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or ""
            if kind == "PNG":
                image.verify()  # every chunk's CRC, and truncation, without decompressing pixels
            else:
                image.load()  # verify() checks nothing for JPEG: decode it
    except UnidentifiedImageError:
        raise ValueError(f"bytes are not an image (PIL knows no format starting {data[:8]!r})") from None
    except Exception as error:  # PIL reports corrupt data as OSError, SyntaxError, struct.error, ...
        raise ValueError(f"image bytes are corrupt ({type(error).__name__}: {error})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
    mime = Image.MIME.get(kind)
    if mime is None:
        raise ValueError(f"image format {kind!r} has no MIME type")
    return mime


def base64_image_uri(text: Any) -> str:
    """A data URI for a base64-encoded image (its text kept as is), checked to decode."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"expected a base64 string, got {type(text).__name__}")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"base64 does not decode ({error})") from None
    return f"data:{image_mime(data)};base64,{text}"


def bytes_image_uri(data: bytes) -> str:
    return f"data:{image_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"


def _unique(problems: ProblemCollector, file: Path, row: int, pair_id: str) -> bool:
    """False (and a problem) when ``pair_id`` was already read: only CGD merges records of one pair."""
    before = len(problems.problems)
    problems.check_unique(str(file), row, "pair id", pair_id)
    return len(problems.problems) == before


def _folder(path: PathLike, what: str) -> Path:
    folder = Path(path).expanduser().absolute()
    if not folder.is_dir():
        raise NotADirectoryError(f"{what} {str(path)!r} is not a folder")
    return folder
