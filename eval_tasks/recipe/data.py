"""The training mix: LLaVA-format sources and CaD-Inst, images resolved, in one memory-mapped Arrow file.

The fork reads its 1.29M training rows with ``json.load`` in every rank (several GB of Python
objects per process). Here :func:`prepare_mix` streams every source once, row by row, checks it
(``file:row`` problems, collected), resolves its image names against the image roots (tried in order,
names kept inside them), and writes ``mix/rows.arrow``; each rank then memory-maps that file, so the
rows live in the page cache once per machine. Repeat factors (the paper: phase 1 x2, phase 2 x1,
665K x1) are contiguous slices of the one file, concatenated: no copy.

Sources are ``kind: llava`` (any LLaVA JSON array or JSON Lines file: one image, several, or none per
row) or ``kind: cadinst`` (every CaD-Inst release shape, through a loader registered by the caller:
``cadvi train`` registers ``cadinst.load``; this package may not import ``cadinst``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets

from builders.release.images import ImageResolver
from builders.release.sources import iter_json_records
from builders.release.validate import ProblemCollector, UnsafeImageNameError, checked_relative_name

IMAGE = "<image>"
MIX_FILE = "rows.arrow"
MANIFEST = "mix.json"
FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "source": datasets.Value("string"),
        "images": datasets.List(datasets.Value("string")),
        "conversations": datasets.List({"from": datasets.Value("string"), "value": datasets.Value("string")}),
        # The fork's ``modality_lengths``: words of all turns, negative for text-only rows.
        "modality_length": datasets.Value("int32"),
    }
)
OnMissing = Literal["error", "drop"]
# A CaD-Inst loader: (source path, config) -> rows with id, image, conversations.
SourceLoader = Callable[[str, str], Iterable[Mapping[str, Any]]]
SOURCE_LOADERS: dict[str, SourceLoader] = {}


@dataclass(frozen=True)
class Source:
    """One training source. ``repeat``: how many times its rows appear in the mix (an integer >= 1)."""

    path: str
    kind: Literal["llava", "cadinst"] = "llava"
    config: str | None = None  # CaD-Inst config (phase1, phase2, all); unused for llava files
    repeat: int = 1
    name: str | None = None  # shown in the mix statistics; defaults to the file name (+ config)

    def __post_init__(self) -> None:
        if self.kind not in ("llava", "cadinst"):
            raise ValueError(f"data source {self.path}: kind must be 'llava' or 'cadinst', got {self.kind!r}")
        if not isinstance(self.repeat, int) or self.repeat < 1:
            raise ValueError(f"data source {self.path}: repeat must be an integer >= 1, got {self.repeat!r}")
        if self.kind == "cadinst" and not self.config:
            raise ValueError(f"data source {self.path}: a cadinst source needs config (phase1, phase2 or all)")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        base = Path(self.path).name
        return f"{base}:{self.config}" if self.kind == "cadinst" else base


@dataclass(frozen=True)
class DataConfig:
    """The ``data:`` block of a recipe: sources, the image folders tried in order, missing-image policy."""

    sources: tuple[Source, ...]
    image_roots: tuple[str, ...] = ()
    on_missing: OnMissing = "error"

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("data.sources is empty: list at least one training file")
        if self.on_missing not in ("error", "drop"):
            raise ValueError(f"data.on_missing must be 'error' or 'drop', got {self.on_missing!r}")


@dataclass
class MixStats:
    """What :func:`prepare_mix` kept and dropped, per source (written to ``mix.json``)."""

    rows: dict[str, int] = field(default_factory=dict)
    dropped_missing_images: dict[str, int] = field(default_factory=dict)
    text_only: dict[str, int] = field(default_factory=dict)


def register_source_loader(kind: str, loader: SourceLoader) -> None:
    """Let ``kind`` sources be read by ``loader`` (``cadvi`` registers ``cadinst``)."""
    SOURCE_LOADERS[kind] = loader


def prepare_mix(config: DataConfig, folder: str | os.PathLike) -> datasets.Dataset:
    """The training mix of ``config``, built once into ``folder`` and memory-mapped from there.

    A folder whose manifest matches the sources (path, size, modification time, repeats) and the image
    roots is reopened as it is (about 0.1 s for 1.3M rows); otherwise it is rebuilt, atomically.
    Raises :class:`ReleaseValidationError` (every problem as ``file:row``) before writing anything.
    """
    folder = Path(folder)
    identity = _identity(config)
    manifest = folder / MANIFEST
    if manifest.is_file() and (folder / MIX_FILE).is_file():
        recorded = json.loads(manifest.read_text())
        if recorded.get("identity") == identity:
            return _open(folder, recorded)
    resolver = ImageResolver(config.image_roots) if config.image_roots else None
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (MIX_FILE + ".partial")
    problems = ProblemCollector()
    stats = MixStats()
    spans: list[tuple[int, int, int]] = []  # (start, stop, repeat) per source
    written = 0
    with datasets.arrow_writer.ArrowWriter(features=FEATURES, path=str(partial), writer_batch_size=1000) as writer:
        for source in config.sources:
            start = written
            for row in _source_rows(source, resolver, config.on_missing, problems, stats):
                if not problems:
                    writer.write(row)
                written += 1
            spans.append((start, written, source.repeat))
            stats.rows[source.label] = written - start
        writer.finalize()
    if problems:
        partial.unlink(missing_ok=True)
        problems.raise_if_any()
    os.replace(partial, folder / MIX_FILE)
    recorded = {"identity": identity, "spans": spans, "stats": asdict(stats)}
    manifest.write_text(json.dumps(recorded, indent=2) + "\n")
    return _open(folder, recorded)


def mix_stats(folder: str | os.PathLike) -> dict[str, Any]:
    """The statistics recorded beside a prepared mix."""
    return json.loads((Path(folder) / MANIFEST).read_text())["stats"]


def _open(folder: Path, recorded: Mapping[str, Any]) -> datasets.Dataset:
    rows = datasets.Dataset.from_file(str(folder / MIX_FILE))  # memory-mapped, no copy
    parts = [rows.select(range(start, stop)) for start, stop, repeat in recorded["spans"] for _ in range(repeat)]
    parts = [part for part in parts if len(part)]
    if not parts:
        raise ValueError(f"{folder}: the training mix is empty (every source had 0 usable rows)")
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def _identity(config: DataConfig) -> str:
    described = []
    for source in config.sources:
        path = Path(source.path).expanduser()
        stat = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in _files_under(path)]
        described.append({**asdict(source), "files": stat})
    payload = {"sources": described, "image_roots": list(config.image_roots), "on_missing": config.on_missing}
    payload["version"] = 1
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".parquet"))
    raise FileNotFoundError(f"data source {path}: no such file or folder")


def _source_rows(
    source: Source,
    resolver: ImageResolver | None,
    on_missing: OnMissing,
    problems: ProblemCollector,
    stats: MixStats,
) -> Iterator[dict[str, Any]]:
    """Checked mix rows of one source; problems are collected, rows with missing images dropped or reported."""
    records: Iterable[tuple[str, int, Any]]
    if source.kind == "llava":
        path = Path(source.path).expanduser()
        records = ((str(path), number, record) for number, record in iter_json_array(path, problems))
    else:
        loader = SOURCE_LOADERS.get(source.kind)
        if loader is None:
            raise ValueError(
                f"data source {source.path}: kind {source.kind!r} needs its loader; run the recipe through "
                "`cadvi train` (which registers cadinst.load) or call register_source_loader first"
            )
        label = f"{source.path} [{source.config}]"
        records = ((label, number, record) for number, record in enumerate(loader(source.path, source.config), 1))
    dropped = text_only = 0
    for file, number, record in records:
        row = _checked_row(file, number, record, problems)
        if row is None:
            continue
        names = row["images"]
        try:
            row["images"] = _resolved(names, resolver)
        except UnsafeImageNameError as error:
            problems.add(file, number, f"row {row['id']!r}: {error}")
            continue
        except _MissingImage as missing:
            if on_missing == "drop":
                dropped += 1
                continue
            where = "no image_roots were given" if resolver is None else f"in none of [{resolver.describe()}]"
            problems.add(file, number, f"row {row['id']!r}: image {missing.name!r} is missing ({where})")
            continue
        text_only += not names
        row["source"] = source.label
        yield row
    if dropped:
        stats.dropped_missing_images[source.label] = dropped
    stats.text_only[source.label] = text_only


class _MissingImage(Exception):
    def __init__(self, name: str):
        self.name = name


def _resolved(names: Sequence[str], resolver: ImageResolver | None) -> list[str]:
    """Absolute paths of ``names`` (each checked to stay inside its root), or :class:`_MissingImage`."""
    paths = []
    for name in names:
        checked_relative_name(name)
        found = resolver.resolve(name) if resolver is not None else None
        if found is None:
            raise _MissingImage(name)
        paths.append(str(found))
    return paths


def _checked_row(file: str, number: int, record: Any, problems: ProblemCollector) -> dict[str, Any] | None:
    """A LLaVA record as a mix row (images still names), or None with its problems recorded."""
    if not isinstance(record, Mapping):
        problems.add(file, number, f"a row must be a JSON object, got {type(record).__name__}")
        return None
    row_id = record.get("id")
    if not isinstance(row_id, (str, int)) or isinstance(row_id, bool) or str(row_id) == "":
        problems.add(file, number, f"'id' must be a non-empty string or integer, got {row_id!r}")
        return None
    image = record.get("image")
    names = [] if image is None else [image] if isinstance(image, str) else image
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        problems.add(file, number, f"row {row_id!r}: 'image' must be a file name or a list of them, got {image!r}")
        return None
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        problems.add(file, number, f"row {row_id!r}: 'conversations' must be a non-empty list of turns")
        return None
    for index, turn in enumerate(turns):
        expected = "human" if index % 2 == 0 else "gpt"
        if not isinstance(turn, Mapping) or turn.get("from") != expected or not isinstance(turn.get("value"), str):
            problems.add(file, number, f"row {row_id!r}: turn {index} must be {{'from': {expected!r}, 'value': str}}")
            return None
    placeholders = sum(turn["value"].count(IMAGE) for turn in turns)
    if placeholders != len(names):
        problems.add(file, number, f"row {row_id!r}: {len(names)} image(s) but {placeholders} '<image>' placeholder(s)")
        return None
    words = sum(len(turn["value"].split()) for turn in turns)
    return {
        "id": str(row_id),
        "images": names,
        "conversations": [{"from": turn["from"], "value": turn["value"]} for turn in turns],
        "modality_length": words if names else -words,
    }


def iter_json_array(path: Path, problems: ProblemCollector, chunk_chars: int = 1 << 20) -> Iterator[tuple[int, Any]]:
    """Rows of a JSON array (or JSON Lines) file, parsed one at a time from 1 MB chunks.

    ``json.load`` of the 1.29M-row training mix holds every row as Python objects at once; this
    holds one chunk and one row. Rows count from 1 (for JSON Lines, the line number).
    """
    if not path.is_file():
        raise FileNotFoundError(f"data source {path}: no such file")
    with open(path, encoding="utf-8") as handle:
        first = handle.read(chunk_chars)
        if first.lstrip().startswith("["):
            yield from _ArrayReader(handle, first, chunk_chars).rows(path, problems)
            return
    yield from iter_json_records(path, problems)  # JSON Lines: the release readers' own line-by-line reader


class _ArrayReader:
    """Incremental ``raw_decode`` over a sliding text window of a JSON array file."""

    def __init__(self, handle: Any, first: str, chunk_chars: int):
        self.handle, self.chunk_chars = handle, chunk_chars
        self.buffer, self.position = first, first.index("[") + 1

    def refill(self) -> bool:
        more = self.handle.read(self.chunk_chars)
        if not more:
            return False
        self.buffer, self.position = self.buffer[self.position :] + more, 0
        return True

    def skip_space(self) -> None:
        while True:
            self.position = _SPACE.match(self.buffer, self.position).end()
            if self.position < len(self.buffer) or not self.refill():
                return

    def rows(self, path: Path, problems: ProblemCollector) -> Iterator[tuple[int, Any]]:
        decoder, number, expect_row = json.JSONDecoder(), 0, True
        while True:
            self.skip_space()
            if self.position >= len(self.buffer):
                problems.add(str(path), None, "not valid JSON: the array is not closed with ']'")
                return
            char = self.buffer[self.position]
            if char == "]" and (number == 0 or not expect_row):
                return
            if not expect_row:
                if char != ",":
                    problems.add(str(path), number, f"not valid JSON: expected ',' or ']' after row {number}")
                    return
                self.position, expect_row = self.position + 1, True
                continue
            try:
                record, end = decoder.raw_decode(self.buffer, self.position)
            except json.JSONDecodeError as error:
                if self.refill():  # the row may continue in the next chunk
                    continue
                problems.add(str(path), number + 1, f"not valid JSON ({error.msg})")
                return
            if end == len(self.buffer) and self.refill():  # a bare number could continue: decode again
                continue
            number, expect_row, self.position = number + 1, False, end
            yield number, record


_SPACE = re.compile(r"\s*")


def load_sources(raw: Any) -> DataConfig:
    """The ``data:`` block of a recipe YAML as a :class:`DataConfig` (unknown keys are errors)."""
    if not isinstance(raw, Mapping):
        raise ValueError("data: must be a mapping with sources, image_roots and on_missing")
    unknown = sorted(set(raw) - {"sources", "image_roots", "on_missing"})
    if unknown:
        raise ValueError(f"data: unknown key(s) {', '.join(unknown)}")
    sources = []
    for index, item in enumerate(raw.get("sources") or []):
        if not isinstance(item, Mapping):
            raise ValueError(f"data.sources[{index}]: must be a mapping with path, kind, config, repeat")
        extra = sorted(set(item) - {"path", "kind", "config", "repeat", "name"})
        if extra:
            raise ValueError(f"data.sources[{index}]: unknown key(s) {', '.join(extra)}")
        sources.append(Source(**item))
    roots = raw.get("image_roots") or ()
    roots = (roots,) if isinstance(roots, str) else tuple(str(root) for root in roots)
    return DataConfig(sources=tuple(sources), image_roots=roots, on_missing=raw.get("on_missing", "error"))
