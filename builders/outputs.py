"""Where outputs may go: never over an input, and only over a folder this tool wrote.

Every command that writes reads something first, and a wrong ``--out`` must never cost the user
data: an output that equals or contains one of its sources is refused before anything is read,
and ``--overwrite`` replaces only a folder that carries this tool's marker file (written into
every folder built here), never a folder of unrelated files. Folders are written to a temporary
sibling and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

MARKER = ".cadvi-output.json"

PathLike = str | os.PathLike


class UnsafeOutputError(FileExistsError):
    """An output location that would overwrite or delete a source, or a folder this tool did not write."""


def _existing(paths: Iterable[PathLike | None]) -> list[Path]:
    """The sources that are local files or folders (a Hub repo id is not on this disk)."""
    found = []
    for path in paths:
        if path is None:
            continue
        candidate = Path(path).expanduser()
        if candidate.exists():
            found.append(candidate.resolve())
    return found


def refuse_output_over_sources(out: PathLike, sources: Iterable[PathLike | None], *, what: str = "output") -> None:
    """Raise :class:`UnsafeOutputError` when ``out`` is a source or a folder holding one.

    Replacing such a folder would delete the source (``--out`` set to the folder of ``--source``).
    """
    target = Path(out).expanduser().resolve()
    for source in _existing(sources):
        if source == target or target in source.parents:
            relation = "is" if source == target else "contains"
            raise UnsafeOutputError(
                f"refusing to write the {what} to {str(out)!r}: it {relation} the source {str(source)!r}; "
                "choose another output location"
            )


def check_output_file(out: PathLike, inputs: Iterable[PathLike | None] = ()) -> Path:
    """``out`` as a path a command may write a file to: not a folder, not one of ``inputs``."""
    path = Path(out)
    if path.is_dir():
        raise IsADirectoryError(f"{str(out)!r} is a folder; give a file name to write")
    refuse_output_over_sources(path, inputs, what="output file")
    return path


def check_writable_folder(folder: PathLike, what: str) -> Path:
    """Create ``folder`` and prove a file can be written in it, before any long work starts: a command that
    would fail at its last step (an unwritable ``--out``) fails at its first, having written nothing."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cadvi-write-check-"):
            pass
    except OSError as error:
        raise PermissionError(f"{folder}: cannot write the {what} there ({error.strerror or error})") from None
    return folder


def write_text_atomically(path: PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place: never half a file."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def written_by_us(folder: Path) -> bool:
    return (folder / MARKER).is_file()


@contextlib.contextmanager
def atomic_output_dir(
    out: PathLike, *, overwrite: bool = False, sources: Iterable[PathLike | None] = (), kind: str = "output"
) -> Iterator[Path]:
    """Yield a temporary sibling of ``out``; it becomes ``out`` only if the block succeeds.

    A failed build therefore never leaves a half-written folder, and an existing one is only replaced
    (with ``overwrite``) once the new one is complete, and only when it carries the :data:`MARKER` of an
    earlier build. ``sources`` are the inputs: an ``out`` that is or contains one is refused.
    """
    out = Path(out)
    refuse_output_over_sources(out, sources, what=kind)
    if out.exists() and not out.is_dir():
        raise UnsafeOutputError(f"output folder {str(out)!r} exists and is a file")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"output folder {str(out)!r} exists and is not empty (use --overwrite)")
        if not written_by_us(out):
            raise UnsafeOutputError(
                f"refusing to replace {str(out)!r}: it was not written by cadvi (no {MARKER} in it); "
                "remove it yourself or choose another output folder"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        marker = {"tool": "cad-vi", "kind": kind, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (staging / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    if out.exists():
        out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)
