"""Where release files come from (a local path or a Hub repo) and how their rows are read.

Readers yield ``(row_number, record)`` with rows counted from 1 and report unreadable rows to
a :class:`ProblemCollector` instead of stopping, so one pass finds every problem.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from builders.release.validate import ProblemCollector

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PARQUET_BATCH_ROWS = 10_000


def resolve_source(
    source: str | Path, *, revision: str | None = None, allow_patterns: Sequence[str] | None = None
) -> Path:
    """A local file or folder as is; a Hub dataset repo id downloaded (cached) with huggingface_hub.

    Only ``allow_patterns`` are fetched, so choosing the parquet shape of a release does not
    also download its 460 MB JSON twin.
    """
    path = Path(source).expanduser()
    if path.exists():
        return path
    if isinstance(source, str) and REPO_ID.match(source):
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                repo_id=source,
                repo_type="dataset",
                revision=revision,
                allow_patterns=list(allow_patterns) if allow_patterns else None,
            )
        )
    raise FileNotFoundError(f"source {str(source)!r} is neither an existing file or folder nor a Hub repo id")


def content_hash(paths: Iterable[Path], *extra: str) -> str:
    """A hash of the files' bytes (and of ``extra`` strings): the cache key of a build.

    ``datasets`` keys its cache by path; keying by content means an edited file is rebuilt and
    the same file moved elsewhere is not.
    """
    digest = hashlib.sha256()
    for text in extra:
        digest.update(text.encode("utf-8") + b"\0")
    for path in paths:
        digest.update(path.name.encode("utf-8") + b"\0")
        _update(digest, path)
    return digest.hexdigest()[:24]


def file_sha256(path: str | Path) -> str:
    """The sha256 of one file (recorded for the inputs of generation runs)."""
    return _update(hashlib.sha256(), Path(path)).hexdigest()


def _update(digest: Any, path: Path) -> Any:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest


def write_jsonl(rows: Iterable[Any], path: str | Path) -> Path:
    """Write JSON Lines through a ``.partial`` file renamed at the end: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    partial.replace(path)
    return path


def readable_file(path: str | Path, what: str = "input") -> Path:
    """``path`` if it is a file this process can read, else a one-line error naming it."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a {what} file")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what} file")
    return path


def iter_json_records(path: Path, problems: ProblemCollector) -> Iterator[tuple[int, Any]]:
    """Rows of a JSON array file or of a JSON Lines file (decided by the first character)."""
    with open(path, encoding="utf-8") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith("["):
        try:
            with open(path, encoding="utf-8") as handle:
                rows = json.load(handle)
        except json.JSONDecodeError as error:
            problems.add(str(path), None, f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})")
            return
        yield from enumerate(rows, start=1)
        return
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                problems.add(str(path), number, f"not valid JSON ({error.msg}, column {error.colno})")


def iter_parquet_records(
    path: Path, problems: ProblemCollector, *, literal_columns: Sequence[str] = (), drop_columns: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a parquet file; ``literal_columns`` hold stringified Python lists (the original Hub
    parquet) and are parsed with :func:`ast.literal_eval`, never ``eval``."""
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for record in batch.to_pylist():
            number += 1
            for column in drop_columns:
                record.pop(column, None)
            ok = True
            for column in literal_columns:
                value = record.get(column)
                if isinstance(value, str):
                    try:
                        record[column] = ast.literal_eval(value)
                    except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
                        problems.add(str(path), number, f"column {column!r} is not a Python literal ({error})")
                        ok = False
            if ok:
                yield number, record


def parquet_column_is_string(path: Path, column: str) -> bool:
    """True for the original Hub parquet, whose list columns were written as strings."""
    schema = pq.read_schema(path)
    index = schema.get_field_index(column)
    if index < 0:
        return False
    field_type = str(schema.field(index).type)
    return field_type in ("string", "large_string")
