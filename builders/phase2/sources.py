"""Phase-2 annotation sources in: plain JSONL pairs read here, and the dispatch over every source kind.

Phase 2 (paper §3.3) shows the phase-1 model two similar COCO train2017 images and their difference-only
annotation, and asks for a CaD summary. The original code joins *all* answers about a pair into one context
string (``" ".join(...)``); every reader yields one :class:`Phase2Item` per image pair with that context.

Sources (``cadvi-facts.md`` §3, §7), one module each:

* **MIMIC-IT CGD** (:func:`read_cgd`, :mod:`.cgd`): ``CGD_instructions.json``, images from COCO train2017 or
  ``CGD.json``.
* **the_cauldron** ``mimic_cgd`` (:func:`read_cauldron`, :mod:`.cauldron`): parquet, one item per row.
* **plain JSONL** (:func:`read_pairs_jsonl`, here): ``{"images": [a, b], "annotation": str, "id"?: str}`` with
  the names relative to an image root. Pair ids: ``id`` or ``<stem1>_<stem2>``.

What they share (:class:`Phase2Item`, the byte-image checks) is in :mod:`.items`. This module keeps exporting
the readers (``__all__``), so ``from builders.phase2.sources import Phase2Item, read_cgd`` still works.

Choices the sources do not fix:

* Rows count from 1 as everywhere in the project.
* Answers and annotations are stripped of outer whitespace before joining.

Every problem of a read is collected and raised together as :class:`ReleaseValidationError` (``file:row:
reason``) before anything is returned.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from builders.phase2.cauldron import read_cauldron
from builders.phase2.cgd import read_cgd
from builders.phase2.items import PathLike, Phase2Item, _folder, _unique
from builders.release.sources import iter_json_records, readable_file
from builders.release.validate import (
    ProblemCollector,
    checked_relative_name,
    image_pair_problems,
    key_problems,
    text_problems,
)

__all__ = [
    "KINDS",
    "Kind",
    "Phase2Item",
    "detect_kind",
    "pairs_record_problems",
    "read_cauldron",
    "read_cgd",
    "read_pairs_jsonl",
    "read_phase2_source",
]

Kind = Literal["auto", "cgd", "cauldron", "jsonl"]
KINDS = ("auto", "cgd", "cauldron", "jsonl")
SNIFF_BYTES = 1 << 16


# ----- plain JSONL -----


def read_pairs_jsonl(path: PathLike, *, image_root: PathLike) -> list[Phase2Item]:
    """One item per line of ``{"images": [a, b], "annotation": str, "id"?: str}``, names under ``image_root``."""
    path = readable_file(path, "pairs JSONL")
    root = _folder(image_root, "image_root")
    problems = ProblemCollector()
    items = []
    for row, record in iter_json_records(path, problems):
        item = _pairs_item(path, row, record, root, problems)
        if item is not None:
            items.append(item)
    if not items and not problems:
        problems.add(str(path), None, "no pairs in this file")
    problems.raise_if_any()
    return items


def pairs_record_problems(record: Any) -> list[str]:
    if not isinstance(record, Mapping):
        return [f"a row must be an object, got {type(record).__name__}"]
    reasons = key_problems(record, ("images", "annotation"), ("id",))
    reasons += text_problems(record, "annotation") + text_problems(record, "id")
    return reasons + image_pair_problems(record, "images")


def _pairs_item(path: Path, row: int, record: Any, root: Path, problems: ProblemCollector) -> Phase2Item | None:
    if not problems.add_all(str(path), row, pairs_record_problems(record)):
        return None
    names = (record["images"][0], record["images"][1])
    files = [root.joinpath(*checked_relative_name(name).parts) for name in names]
    missing = [
        f"image {name!r} is not under image_root ({file})"
        for name, file in zip(names, files, strict=True)
        if not file.is_file()
    ]
    if not problems.add_all(str(path), row, missing):
        return None
    pair_id = record.get("id") or "_".join(checked_relative_name(name).stem for name in names)
    if not _unique(problems, path, row, pair_id):
        return None
    return Phase2Item(pair_id, (str(files[0]), str(files[1])), names, record["annotation"].strip(), f"{path}:{row}")


# ----- dispatch -----


def read_phase2_source(
    path: PathLike,
    *,
    kind: Kind = "auto",
    images: PathLike | None = None,
    coco_root: PathLike | None = None,
    image_root: PathLike | None = None,
) -> list[Phase2Item]:
    """Read any phase-2 source; ``kind="auto"`` decides by the path (see :func:`detect_kind`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "auto":
        kind = detect_kind(path)
    if kind == "cgd":
        _refuse(kind, image_root=image_root)
        return read_cgd(path, images=images, coco_root=coco_root)
    if kind == "cauldron":
        _refuse(kind, images=images, coco_root=coco_root, image_root=image_root)
        return read_cauldron(path)
    _refuse(kind, images=images, coco_root=coco_root)
    if image_root is None:
        raise ValueError(f"{path}: a JSONL pairs source needs image_root (the folder its image names are under)")
    return read_pairs_jsonl(path, image_root=image_root)


def detect_kind(path: PathLike) -> Literal["cgd", "cauldron", "jsonl"]:
    """``cauldron`` for a ``.parquet`` file or a folder of them, ``jsonl`` for ``.jsonl``, ``cgd`` for a JSON
    object with ``data``; a ``ValueError`` naming the file otherwise."""
    path = Path(path)
    if path.is_dir():
        if not (any(path.glob("*.parquet")) or any(path.glob("*/*.parquet"))):
            raise ValueError(f"{path}: a folder without .parquet files, so not the_cauldron's mimic_cgd")
        return "cauldron"
    readable_file(path, "phase-2 source")
    if path.suffix == ".parquet":
        return "cauldron"
    if path.suffix == ".jsonl":
        return "jsonl"
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if head.startswith("{") and re.search(r'"data"\s*:\s*\{', head):
        return "cgd"
    if re.match(r'\{\s*"CGD_IMG_', head):
        raise ValueError(f"{path}: this is a CGD image file (CGD.json); read the instructions file with images={path}")
    raise ValueError(
        f"{path}: not a known phase-2 source (a .parquet file or folder, a .jsonl file, or a MIMIC-IT "
        "instructions JSON object with 'data'); pass kind='cgd', 'cauldron' or 'jsonl'"
    )


def _refuse(kind: str, **options: PathLike | None) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise ValueError(f"option(s) {', '.join(given)} do not apply to a {kind!r} phase-2 source")
