"""One record store for every generation stage: a manifest plus append-only JSONL shards.

Every record is keyed by a hash of its request (template hash, inputs, model, sampling), so a
rerun skips finished keys and a changed prompt or model never mixes with old outputs. Lines are
flushed one by one; after a crash the torn last line of a shard is cut off on reopen, so every
record ends up in the store exactly once. ``num_shards``/``shard_index`` split the keys between
processes or machines, each writing its own shard files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def request_key(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts: the identity of one generation request."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def shard_of(key: str, num_shards: int) -> int:
    return int(key[:12], 16) % num_shards


class ManifestMismatchError(ValueError):
    """The run folder was made with other settings; resuming would mix incompatible outputs."""


@dataclass
class RunStore:
    """Append-only records (``records/``) and rejects (``rejects/``) of one run folder.

    ``identity`` is what must match to resume (backend, model, sampling, template hashes, seed,
    input hashes); ``details`` is recorded but may differ (package version, shard layout).
    """

    folder: Path
    identity: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    num_shards: int = 1
    shard_index: int = 0
    done: set[str] = field(default_factory=set, init=False)
    rejected_attempts: Counter[str] = field(default_factory=Counter, init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"shard index {self.shard_index} is outside 0..{self.num_shards - 1}")
        self.folder = Path(self.folder)
        self._check_manifest()
        name = f"shard-{self.shard_index:05d}-of-{self.num_shards:05d}.jsonl"
        self._records_path = self.folder / "records" / name
        self._rejects_path = self.folder / "rejects" / name
        for path in (self._records_path, self._rejects_path):
            path.parent.mkdir(parents=True, exist_ok=True)
            cut_torn_tail(path)
        self.done = {record["key"] for record in read_jsonl(self._records_path)}
        self.rejected_attempts = Counter(record["key"] for record in read_jsonl(self._rejects_path))
        self._records = open(self._records_path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._rejects = open(self._rejects_path, "a", encoding="utf-8")  # noqa: SIM115

    def _check_manifest(self) -> None:
        path = self.folder / MANIFEST
        if path.exists():
            existing = json.loads(path.read_text(encoding="utf-8"))
            if existing.get("identity") != json.loads(json.dumps(self.identity, default=str)):
                changed = sorted(
                    k
                    for k in {*existing.get("identity", {}), *self.identity}
                    if existing.get("identity", {}).get(k) != self.identity.get(k)
                )
                raise ManifestMismatchError(
                    f"{path} was written with other settings ({', '.join(changed)}); "
                    "use a new output folder to generate with these"
                )
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(
            json.dumps({"identity": self.identity, "details": self.details}, indent=2, default=str) + "\n",
            encoding="utf-8",
        )
        partial.replace(path)

    def mine(self, key: str) -> bool:
        """Whether ``key`` belongs to this process's shard."""
        return shard_of(key, self.num_shards) == self.shard_index

    def add(self, record: dict[str, Any]) -> None:
        self._write(self._records, record)
        self.done.add(record["key"])

    def reject(self, record: dict[str, Any]) -> None:
        self._write(self._rejects, record)
        self.rejected_attempts[record["key"]] += 1

    @staticmethod
    def _write(handle: Any, record: dict[str, Any]) -> None:
        handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        handle.flush()

    def close(self) -> None:
        for handle in (self._records, self._rejects):
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cut_torn_tail(path: Path, window: int = 1 << 20) -> None:
    """Drop an unfinished last line (a crash mid-write) so appends start on a clean line.

    Only the file's tail is read: records are far smaller than ``window``.
    """
    if not path.exists():
        return
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - window)
        handle.seek(start)
        tail = handle.read()
        complete = tail.endswith(b"\n")
        body = tail[:-1] if complete else tail
        cut = body.rfind(b"\n") + 1  # start of the last line within the tail
        if complete:
            try:
                json.loads(body[cut:])
                return
            except ValueError:
                pass
        if start and cut == 0:
            raise ValueError(f"{path}: last line longer than {window} bytes; not a record file")
        handle.truncate(start + cut)


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def all_records(folder: str | os.PathLike, kind: str = "records") -> Iterator[dict[str, Any]]:
    """Every record of a run folder, all shards, in shard order (``kind``: records or rejects)."""
    for path in sorted((Path(folder) / kind).glob("shard-*.jsonl")):
        yield from read_jsonl(path)
