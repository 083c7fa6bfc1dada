"""The checks a downloaded file must pass before it may take its final name.

An image source publishes what it knows about each file (a size, an MD5, a SHA-256) and the bytes must match it;
every image must also *decode*: a server that answers an HTML error page with a 200, or a body cut short with no
length published, passes every other check. The digests are fed chunk by chunk while the body is written (and
with the existing ``.part`` first when a download resumes), so a file is read from disk again only to decode it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageFile

# What ``cadvi images fetch`` decodes before accepting a file: everything the CaD-VI sources serve, and the
# formats PIL decodes fully. Other names (JSON, archives) get the size and digest checks only.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"})
READ_CHUNK = 1 << 20


class Digests:
    """The length, SHA-256 and (only when a source publishes one, it costs time) MD5 of a byte stream."""

    def __init__(self, *, md5: bool) -> None:
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._sha256.update(chunk)
        if self._md5 is not None:
            self._md5.update(chunk)

    def update_from(self, path: Path) -> None:
        """Feed what is already on disk: the ``.part`` a resumed download appends to."""
        with path.open("rb") as handle:
            while chunk := handle.read(READ_CHUNK):
                self.update(chunk)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def md5(self) -> str | None:
        return None if self._md5 is None else self._md5.hexdigest()


_STRICT = threading.Lock()  # one strict decode at a time flips the process-wide flag


def decode_error(source: Path | BinaryIO) -> str | None:
    """Why the file (a path, or a readable binary handle: read from its start) does not decode as an image, or
    None when it does.

    ``Image.load()`` decodes every pixel, which is what catches a truncated JPEG (``Image.verify()`` only walks
    the chunk structure and accepts one). PIL's warnings (a large image under the decompression-bomb limit, a
    broken EXIF block) are not failures: the pixels decode. ``Image.MAX_IMAGE_PIXELS`` keeps its default, so an
    image over twice the limit fails here, as it would fail whoever reads it later.
    """
    # lmms-eval (and others) set PIL's process-wide LOAD_TRUNCATED_IMAGES on import, which makes load() pad a
    # truncated JPEG silently: then the flag is turned off around this decode (one at a time), else no lock.
    strict = _STRICT if ImageFile.LOAD_TRUNCATED_IMAGES else contextlib.nullcontext()
    try:
        with strict, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lenient, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
            try:
                with Image.open(source) as image:
                    image.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        return f"{type(error).__name__}: {error}"
    return None


def is_image(name: str) -> bool:
    """Whether a file of this name must decode as an image (by its suffix, case aside)."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def failed_check(
    source: Path | BinaryIO, digests: Digests, *, size: int | None, md5: str | None, sha256: str | None, image: bool
) -> tuple[str, str | None] | None:
    """The first check the complete file ``source`` (a path or a readable handle; ``digests`` has seen its bytes)
    fails, as ``(what, detail)``, or None when it passes them all: size, MD5, SHA-256 (each when published), then
    the decode when ``image``. Cheapest first: the decode reads the file again."""
    if size is not None and digests.size != size:
        return "size mismatch", f"{digests.size:,} bytes, {size:,} published"
    if md5 is not None and digests.md5 != md5.lower():
        return "md5 mismatch", None
    if sha256 is not None and digests.sha256 != sha256.lower():
        return "sha256 mismatch", None
    if image and (error := decode_error(source)) is not None:
        return "does not decode as an image", error
    return None


def check_file(
    path: Path, *, size: int | None, md5: str | None, sha256: str | None, image: bool
) -> tuple[tuple[str, str | None] | None, str]:
    """Read a file already on disk (the source of a link) and check it as :func:`failed_check` does; returns
    the failed check (or None) and the file's SHA-256."""
    digests = Digests(md5=md5 is not None)
    digests.update_from(path)
    return failed_check(path, digests, size=size, md5=md5, sha256=sha256, image=image), digests.sha256
