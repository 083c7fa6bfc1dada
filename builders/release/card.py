"""Facts for dataset cards, taken from the data and its provenance, never from what a release once was.

A card is read as a statement about the rows it ships. So its size category is computed from the
row count, its origin names the source files (relative names or a Hub repo id: never a path of the
machine that built it), and what it says about how the rows were made depends on where they came
from: the original release on the Hub, files of unknown origin, or a regenerated export whose
``cadvi_provenance.json`` lists the model, templates and caption sources.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builders.release.origin import HUB_REPO

# The Hub's size categories (the `size_categories` values the Hub's dataset card metadata accepts).
_SIZE_BOUNDS = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))
_LARGE = ((10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def size_category(rows: int) -> str:
    """The Hub ``size_categories`` value of a dataset of ``rows`` rows."""
    for bound, label in (*_SIZE_BOUNDS, *_LARGE):
        if rows < bound:
            return label
    return "n>1B"


@dataclass(frozen=True)
class Origin:
    """Where built rows came from, as a card may state it.

    ``kind``: ``"release"`` (the original Hub repo), ``"regenerated"`` (a ``cadvi export`` with its
    provenance) or ``"files"`` (local files whose origin this tool cannot know).
    """

    kind: str
    text: str  # e.g. "wlin21at/CaD-Inst@b77df80 — json_files/phase1_instruct_data_278k.json (json)"
    provenance: dict[str, Any] | None = None

    @property
    def is_release(self) -> bool:
        return self.kind == "release"


def describe_origin(
    source: str | os.PathLike,
    files: Sequence[Any],
    *,
    revision: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> Origin:
    """The :class:`Origin` of a build from ``source`` (a local file or folder, or a Hub repo id)."""
    local = Path(source).expanduser()
    if local.exists():
        root = local if local.is_dir() else local.parent
        where = local.resolve().name if local.is_dir() else ""
    else:
        root = None
        where = f"{source}@{revision[:7]}" if revision else str(source)
    names = ", ".join(f"{_relative_name(file.path, root)} ({file.shape})" for file in files)
    text = " — ".join(part for part in (where, names) if part)
    if provenance is not None:
        return Origin("regenerated", text, provenance)
    if not local.exists() and str(source) == HUB_REPO:
        return Origin("release", text)
    return Origin("files", text)


def _relative_name(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` (a local source), or to its Hub snapshot folder; else its name."""
    path = Path(path)
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return path.name
    parts = path.parts
    if "snapshots" in parts:  # the huggingface_hub cache: .../snapshots/<revision>/<path in the repo>
        return Path(*parts[parts.index("snapshots") + 2 :]).as_posix()
    return path.name
