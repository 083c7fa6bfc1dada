"""Perceptual hashes of image files, cached and resumable, and near-duplicate search by Hamming distance.

Identity matching (:mod:`builders.images.identity`) misses copies under unrelated names: a benchmark
image re-encoded, resized or renamed into a training set. A perceptual hash (``imagehash.phash``: the
signs of the 8x8 lowest DCT frequencies of a 32x32 grey thumbnail, 64 bits) survives resizing and JPEG
re-encoding, so two files whose hashes differ in at most a few bits are almost surely the same picture.

Speed: the hash only looks at a 32x32 thumbnail, so JPEGs are decoded with PIL's ``draft`` mode (libjpeg's
DCT-domain downscaling to the smallest size >= 64 px): several times faster than a full decode, and the
thumbnail is the same up to resampling noise (a bit or two of 64). Files are hashed in worker processes.

The cache (one JSON line per file: path, size, mtime, hash) is appended as hashes arrive, so an audit that
crashes or is killed resumes without hashing again what it already did; a file that changed (size or
mtime) is hashed again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_THRESHOLD", "HashCache", "hash_files", "image_hash", "near_duplicates"]

# Hamming distance (of 64 bits) up to which two images count as the same picture. Resized and re-encoded
# copies land at 0-4; unrelated photos at ~32 +- 4 (tests/test_contamination.py measures both).
DEFAULT_THRESHOLD = 8
THUMBNAIL = 64  # draft-decode JPEGs to at least this size; phash resizes to 32x32
BATCH = 64


def image_hash(path: str | os.PathLike) -> int:
    """The 64-bit perceptual hash of one image file (``imagehash.phash`` after a draft decode)."""
    import imagehash
    from PIL import Image

    with Image.open(path) as image:
        image.draft("L", (THUMBNAIL, THUMBNAIL))  # JPEG only; a no-op for other formats
        bits = imagehash.phash(image.convert("L")).hash.flatten()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def _hash_or_error(path: str) -> tuple[str, int | None, str | None]:
    try:
        return path, image_hash(path), None
    except Exception as error:  # an unreadable image is reported, not fatal to the audit
        return path, None, f"{type(error).__name__}: {error}"


class HashCache:
    """Hashes known from earlier runs (JSON Lines at ``path``), keyed by file path, size and mtime."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path is not None else None
        self._known: dict[tuple[str, int, int], int] = {}
        if self.path is not None and self.path.exists():
            with open(self.path, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                        self._known[(entry["path"], entry["size"], entry["mtime_ns"])] = int(entry["hash"], 16)
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        continue  # a line cut by a crash: that file is hashed again

    @staticmethod
    def _key(path: str) -> tuple[str, int, int]:
        stat = os.stat(path)
        return path, stat.st_size, stat.st_mtime_ns

    def get(self, path: str) -> int | None:
        return self._known.get(self._key(path))

    def add(self, entries: Sequence[tuple[str, int]]) -> None:
        lines = []
        for path, value in entries:
            key = self._key(path)
            self._known[key] = value
            lines.append(json.dumps({"path": key[0], "size": key[1], "mtime_ns": key[2], "hash": f"{value:016x}"}))
        if self.path is not None and lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
                handle.flush()


def hash_files(
    paths: Iterable[str | os.PathLike],
    *,
    cache: HashCache | None = None,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, int], dict[str, str]]:
    """``({path: hash}, {path: error})`` of ``paths``; cached hashes are reused, new ones cached in batches."""
    cache = cache or HashCache(None)
    hashes: dict[str, int] = {}
    todo = []
    for path in dict.fromkeys(str(Path(p).resolve()) for p in paths):
        known = cache.get(path)
        if known is None:
            todo.append(path)
        else:
            hashes[path] = known
    if on_progress and hashes:
        on_progress(len(hashes))
    errors: dict[str, str] = {}
    workers = workers or min(len(todo), os.cpu_count() or 1) or 1
    if workers == 1:
        results: Iterable[tuple[str, int | None, str | None]] = map(_hash_or_error, todo)
        _collect(results, hashes, errors, cache, on_progress)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            _collect(pool.map(_hash_or_error, todo, chunksize=BATCH), hashes, errors, cache, on_progress)
    return hashes, errors


def _collect(results, hashes, errors, cache: HashCache, on_progress) -> None:
    batch: list[tuple[str, int]] = []
    for path, value, error in results:
        if value is None:
            errors[path] = error or "unreadable"
        else:
            hashes[path] = value
            batch.append((path, value))
        if len(batch) >= BATCH:
            cache.add(batch)
            batch = []
        if on_progress:
            on_progress(1)
    cache.add(batch)


def near_duplicates(
    queries: dict[str, int], index: dict[str, int], *, threshold: int = DEFAULT_THRESHOLD
) -> list[tuple[str, str, int]]:
    """Every ``(query key, index key, distance)`` with a Hamming distance <= ``threshold``, nearest first.

    Brute force over numpy ``uint64`` arrays (XOR, then ``np.bitwise_count``), in chunks that keep memory
    near 64 MB: 10K benchmark images against 400K training images is 4e9 comparisons, seconds, not minutes.
    """
    if not queries or not index:
        return []
    index_keys = list(index)
    table = np.fromiter((index[key] for key in index_keys), dtype=np.uint64, count=len(index_keys))
    query_keys = list(queries)
    values = np.fromiter((queries[key] for key in query_keys), dtype=np.uint64, count=len(query_keys))
    chunk = max(1, (8 << 20) // len(table))
    found: list[tuple[str, str, int]] = []
    for start in range(0, len(values), chunk):
        distances = np.bitwise_count(values[start : start + chunk, None] ^ table[None, :])
        rows, columns = np.nonzero(distances <= threshold)
        for row, column in zip(rows.tolist(), columns.tolist(), strict=True):
            found.append((query_keys[start + row], index_keys[column], int(distances[row, column])))
    found.sort(key=lambda match: (match[2], match[0], match[1]))
    return found
