"""One record store for every generation stage: a manifest plus append-only JSONL shards.

Every record is keyed by a hash of its request (template hash, inputs, model, sampling), so a
rerun skips finished keys and a changed prompt or model never mixes with old outputs. The manifest
lists every input file with its sha256: a rerun with another input is refused unless the caller
extends the run, and then the manifest lists that input too, so it never misstates what the
records came from. Lines are
flushed one by one; after a crash the torn last line of a shard is cut off on reopen, so every
record ends up in the store exactly once. ``num_shards``/``shard_index`` split the keys between
processes or machines, each writing its own shard files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
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


class NewInputsError(ManifestMismatchError):
    """Inputs the run folder was not made from: adding them must be asked for (``extend=True``)."""


@dataclass(frozen=True)
class InputFile:
    """One input of a run (a pairs file, ...): where it was read and the sha256 of its bytes."""

    path: str
    sha256: str

    @classmethod
    def of(cls, path: str | os.PathLike) -> InputFile:
        from builders.release.sources import file_sha256

        return cls(str(path), file_sha256(path))

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "sha256": self.sha256}


def input_files(inputs: Iterable[InputFile] | Mapping[str, str] | None) -> list[InputFile]:
    """Inputs as :class:`InputFile` objects, from a list of them or a ``{path: sha256}`` mapping."""
    if inputs is None:
        return []
    if isinstance(inputs, Mapping):
        return [InputFile(str(path), str(sha)) for path, sha in inputs.items()]
    return [item if isinstance(item, InputFile) else InputFile(item["path"], item["sha256"]) for item in inputs]


@dataclass
class RunStore:
    """Append-only records (``records/``) and rejects (``rejects/``) of one run folder.

    ``identity`` is what must match to resume (backend, model, sampling, template hashes, seed);
    ``details`` is recorded but may differ (package version, shard layout). ``inputs`` are the files
    the items come from: one the manifest does not list yet is refused (:class:`NewInputsError`)
    unless ``extend``, which adds it to the manifest's ``inputs``.
    """

    folder: Path
    identity: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    num_shards: int = 1
    shard_index: int = 0
    inputs: Iterable[InputFile] | Mapping[str, str] | None = None
    extend: bool = False
    done: set[str] = field(default_factory=set, init=False)
    rejected_attempts: Counter[str] = field(default_factory=Counter, init=False)
    final: set[str] = field(default_factory=set, init=False)  # keys with a reject that no retry can fix

    def __post_init__(self) -> None:
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"shard index {self.shard_index} is outside 0..{self.num_shards - 1}")
        self.folder = Path(self.folder)
        self._check_manifest()
        name = f"shard-{self.shard_index:05d}-of-{self.num_shards:05d}.jsonl"
        self._records = JsonlLog(self.folder / "records" / name)
        self._rejects = JsonlLog(self.folder / "rejects" / name)
        self.done = {record["key"] for record in self._records.read()}
        for record in self._rejects.read():
            self.rejected_attempts[record["key"]] += 1
            if record.get("final"):
                self.final.add(record["key"])

    def _check_manifest(self) -> None:
        existing = check_run_folder(self.folder, self.identity, self.inputs, extend=self.extend)
        inputs = input_files(self.inputs)
        if existing is None:
            self._write_manifest({"identity": self.identity, "details": self.details}, inputs)
            return
        recorded = recorded_inputs(existing)
        known = {item.sha256 for item in recorded}
        new = list({item.sha256: item for item in inputs if item.sha256 not in known}.values())
        if new or "inputs" not in existing:  # extending, or a manifest written before inputs were listed
            self._write_manifest(existing, [*recorded, *new])

    def _write_manifest(self, manifest: dict[str, Any], inputs: list[InputFile]) -> None:
        """Write ``manifest.json`` through a temporary file renamed over it: never half a manifest."""
        self.folder.mkdir(parents=True, exist_ok=True)
        details = {k: v for k, v in manifest.get("details", {}).items() if k != "inputs"}
        body = {"identity": manifest["identity"], "details": details, "inputs": [item.as_dict() for item in inputs]}
        path = self.folder / MANIFEST
        partial = path.with_name(f"{MANIFEST}.{os.getpid()}.partial")
        partial.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")
        partial.replace(path)

    def mine(self, key: str) -> bool:
        """Whether ``key`` belongs to this process's shard."""
        return shard_of(key, self.num_shards) == self.shard_index

    def add(self, record: dict[str, Any]) -> None:
        self._records.append(record)
        self.done.add(record["key"])

    def reject(self, record: dict[str, Any]) -> None:
        """Keep a rejected attempt; ``record["final"]`` marks one no retry can fix (a prompt too long)."""
        self._rejects.append(record)
        self.rejected_attempts[record["key"]] += 1
        if record.get("final"):
            self.final.add(record["key"])

    def close(self) -> None:
        self._records.close()
        self._rejects.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_run_folder(
    folder: str | os.PathLike,
    identity: dict[str, Any],
    inputs: Iterable[InputFile] | Mapping[str, str] | None = None,
    *,
    extend: bool = False,
) -> dict[str, Any] | None:
    """The manifest of an existing run folder that may take this run (None: a new folder), else raise.

    Cheap, so a command calls it before it loads a model: a folder that is not a run folder
    (``FileExistsError``), other settings (:class:`ManifestMismatchError`), or inputs the manifest does
    not list without ``extend`` (:class:`NewInputsError`).
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file, not a run folder")
    if not path.exists():
        if folder.is_dir() and any(not _ours(entry) for entry in folder.iterdir()):
            raise FileExistsError(f"{folder} is not empty and is not a run folder (no {MANIFEST}); choose a new one")
        return None
    existing = json.loads(path.read_text(encoding="utf-8"))
    wanted = json.loads(json.dumps(identity, default=str))
    if existing.get("identity") != wanted:
        recorded = existing.get("identity", {})
        changed = sorted(k for k in {*recorded, *wanted} if recorded.get(k) != wanted.get(k))
        raise ManifestMismatchError(
            f"{path} was written with other settings ({', '.join(changed)}); use a new output folder to generate "
            "with these"
        )
    recorded_files = recorded_inputs(existing)
    known = {item.sha256 for item in recorded_files}
    new = [item for item in input_files(inputs) if item.sha256 not in known]
    if new and not extend:
        listed = ", ".join(f"{item.path} (sha256 {item.sha256[:12]})" for item in recorded_files) or "no input files"
        raise NewInputsError(
            f"{folder} was generated from {listed}; {new[0].path} (sha256 {new[0].sha256[:12]}) is a new input: "
            "pass --extend to add it to this run (the manifest then lists both), or use a new output folder"
        )
    return existing


def _ours(entry: Path) -> bool:
    """A run folder's own entries (another shard process may be creating the folder at the same moment)."""
    return entry.name in ("records", "rejects") or (
        entry.name.startswith(f"{MANIFEST}.") and entry.suffix == ".partial"
    )


def recorded_inputs(manifest: Mapping[str, Any]) -> list[InputFile]:
    """The inputs a manifest lists (also from manifests that kept them as ``details.inputs``, a mapping)."""
    if "inputs" in manifest:
        return input_files(manifest["inputs"])
    return input_files(manifest.get("details", {}).get("inputs") or {})


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """A run folder's manifest, with ``inputs`` always a list of ``{path, sha256}``."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a run folder (no {MANIFEST})")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return {**manifest, "inputs": [item.as_dict() for item in recorded_inputs(manifest)]}


class JsonlLog:
    """One append-only JSON Lines file: the one store under run shards and the noun cache.

    Opening it cuts a torn last line (a crash mid-write), so every append starts on a clean line and
    every record that was flushed is read back exactly once. Each :meth:`append` is flushed before it
    returns: a crash loses at most the record being written. One writer per file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut_torn_tail(self.path)
        self._handle: Any = None

    def read(self) -> Iterator[dict[str, Any]]:
        return read_jsonl(self.path)

    def append(self, record: dict[str, Any]) -> None:
        self.extend([record])

    def extend(self, records: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in records)
        if not lines:
            return
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._handle.write(lines)
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None

    def __enter__(self) -> JsonlLog:
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
    """The records of a store file; a line that is not JSON is an error naming the file and the line."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not a JSON record ({error.msg}); the file is damaged") from None


def all_records(folder: str | os.PathLike, kind: str = "records") -> Iterator[dict[str, Any]]:
    """Every record of a run folder, all shards, in shard order (``kind``: records or rejects)."""
    for path in sorted((Path(folder) / kind).glob("shard-*.jsonl")):
        yield from read_jsonl(path)
