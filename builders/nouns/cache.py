"""The content-hash noun cache: ``{key: nouns}`` in one append-only JSON Lines file.

Re-running the nouns stage (or running it over more captions) should only compute the captions it
has not seen. The file and its crash safety are :class:`builders.runs.JsonlLog`'s, and the keys are
:func:`builders.runs.request_key` hashes, the same store and the same hashing as every generation
stage, so there is one place where torn lines and canonical JSON are dealt with.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from builders.nouns.model import normalize_stop_nouns
from builders.runs import JsonlLog, request_key

# Part of every key, and of the file name: bump it when the definition of the nouns changes, and
# the cache starts afresh in a new file (old entries could never be hit again anyway).
CACHE_VERSION = 2


def noun_key(caption: str, model: str, version: str, stop_nouns: Iterable[str] = ()) -> str:
    """The key of one caption's nouns: a hash of everything they depend on.

    The caption, the model and its version, the stop nouns (normalised and sorted, so their order
    and case do not matter) and :data:`CACHE_VERSION`.
    """
    return request_key("nouns", CACHE_VERSION, caption, model, version, sorted(normalize_stop_nouns(stop_nouns)))


class NounCache:
    """``{key: nouns}`` in the append-only JSON Lines file :attr:`FILE_NAME` of ``folder``.

    Records are ``{"k": key, "n": nouns}``. Opening the cache cuts the torn last line of a run that
    crashed mid-write (``torn_lines`` says whether there was one), so appends start on a clean line
    and nothing flushed before is lost. One writer at a time; :meth:`close` (or ``with``) syncs the
    file to disk.
    """

    FILE_NAME = f"nouns-v{CACHE_VERSION}.jsonl"

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / self.FILE_NAME
        before = _size(self.path)
        self._log = JsonlLog(self.path)
        self.torn_lines = int(_size(self.path) < before)  # JsonlLog cuts at most the last line
        self.entries: dict[str, list[str]] = {record["k"]: record["n"] for record in self._log.read()}

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __getitem__(self, key: str) -> list[str]:
        return self.entries[key]

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, items: Iterable[tuple[str, list[str]]]) -> None:
        """Append and flush: what a crash loses is what :meth:`add` was not yet called with."""
        records = []
        for key, nouns in items:
            self.entries[key] = nouns
            records.append({"k": key, "n": nouns})
        self._log.extend(records)

    def close(self) -> None:
        self._log.close()

    def __enter__(self) -> NounCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
