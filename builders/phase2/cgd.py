"""MIMIC-IT CGD in (:func:`read_cgd`): one :class:`Phase2Item` per ordered image pair of ``CGD_instructions.json``.

A module of its own because it is one source format with its own file layout and checks (``cadvi-facts.md``
§3, §7); :mod:`.sources` dispatches to it.

``CGD_instructions.json`` = ``{"meta": {...}, "data": {"CGD_INS_00001": {"instruction", "answer", "image_ids":
[2 x "CGD_IMG_<coco id>"], "rel_ins_ids"}}}``, ~2 instructions per pair. Instructions are grouped by their
ordered pair of image ids (``rel_ins_ids`` is not needed for that and is not read). Images: prefer the COCO
train2017 originals (``coco_root``: ``CGD_IMG_000000123456`` -> ``000000123456.jpg``); ``CGD.json``
(``images``, one flat ``{"CGD_IMG_<id>": "<base64>"}`` object) holds the convert tool's 224x224 PNG
re-encodings and is only read for images missing from ``coco_root`` (it is large).

Choices the source does not fix:

* A row is the record's position in ``data`` (counting from 1) and each of its reasons starts with the
  instruction id (``CGD_instructions.json:3: CGD_INS_00003: ...``); an image problem is reported once per
  image id, at the first instruction that uses it.
* Pair ids: ``cgd_<stem1>_<stem2>`` (the release's phase-2 ids; :mod:`.cauldron` uses them too for rows whose
  images carry a stored ``path``).
* ``image_names`` of an item are the COCO train2017 names whichever copy was read: the release names COCO
  images, and users train on the originals.

Memory: one data URI string per image id read from ``CGD.json``, however many pairs use it.
:func:`read_cgd` loads ``CGD.json`` whole (one JSON object, as the original does), and only when ``coco_root``
lacks an image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.phase2.items import PathLike, Phase2Item, _folder, base64_image_uri
from builders.release.sources import readable_file
from builders.release.validate import ProblemCollector, key_problems, text_problems

CGD_IMAGE_ID = re.compile(r"CGD_IMG_[0-9A-Za-z_-]+")  # the suffix becomes a file name: no separators
CGD_KEYS = ("instruction", "answer", "image_ids")


def cgd_pair_id(stem1: str, stem2: str) -> str:
    return f"cgd_{stem1}_{stem2}"


def coco_file_name(image_id: str) -> str:
    """``CGD_IMG_000000123456`` -> ``000000123456.jpg`` (COCO train2017)."""
    return f"{image_id.removeprefix('CGD_IMG_')}.jpg"


@dataclass
class _Pair:
    image_ids: tuple[str, str]
    origin: str
    answers: list[str] = field(default_factory=list)


@dataclass
class _FirstUse:
    row: int
    instruction_id: str
    count: int = 1


def read_cgd(
    instructions: PathLike, *, images: PathLike | None = None, coco_root: PathLike | None = None
) -> list[Phase2Item]:
    """One item per ordered image pair of a MIMIC-IT ``CGD_instructions.json``, in first-appearance order.

    Images come from ``coco_root`` (COCO train2017) where the file is there, else from ``images`` (``CGD.json``,
    base64). Every problem is raised at once (:class:`ReleaseValidationError`); nothing is returned then.
    """
    if images is None and coco_root is None:
        raise ValueError("read_cgd needs coco_root (COCO train2017 folder, preferred) or images (CGD.json)")
    path = readable_file(instructions, "CGD instructions")
    images_file = None if images is None else readable_file(images, "CGD images")
    coco = None if coco_root is None else _folder(coco_root, "coco_root")
    problems = ProblemCollector()
    pairs, uses = _cgd_pairs(path, problems)
    sources = _cgd_image_sources(path, uses, coco, images_file, problems)
    problems.raise_if_any()
    return [
        Phase2Item(
            pair_id=cgd_pair_id(*(i.removeprefix("CGD_IMG_") for i in pair.image_ids)),
            images=(sources[pair.image_ids[0]], sources[pair.image_ids[1]]),
            image_names=(coco_file_name(pair.image_ids[0]), coco_file_name(pair.image_ids[1])),
            context=" ".join(pair.answers),
            origin=pair.origin,
        )
        for pair in pairs.values()
    ]


def _cgd_pairs(path: Path, problems: ProblemCollector) -> tuple[dict[tuple[str, str], _Pair], dict[str, _FirstUse]]:
    """The instructions grouped by image pair, and where each image id is first used."""
    pairs: dict[tuple[str, str], _Pair] = {}
    uses: dict[str, _FirstUse] = {}
    records = _cgd_records(path, problems)
    for row, (instruction_id, record) in enumerate(records.items(), start=1):
        reasons = cgd_record_problems(record)
        if reasons:
            problems.add_all(str(path), row, (f"{instruction_id}: {reason}" for reason in reasons))
            continue
        image_ids = (record["image_ids"][0], record["image_ids"][1])
        pair = pairs.setdefault(image_ids, _Pair(image_ids, f"{path}:{row}"))
        pair.answers.append(record["answer"].strip())
        for image_id in image_ids:
            if image_id in uses:
                uses[image_id].count += 1
            else:
                uses[image_id] = _FirstUse(row, instruction_id)
    return pairs, uses


def _cgd_records(path: Path, problems: ProblemCollector) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except json.JSONDecodeError as error:
        problems.add(str(path), None, f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})")
        return {}
    records = document.get("data") if isinstance(document, dict) else None
    if not isinstance(records, dict):
        problems.add(str(path), None, "not a MIMIC-IT instructions file: expected an object with a 'data' object")
        return {}
    if not records:
        problems.add(str(path), None, "no instructions in 'data'")
    return records


def cgd_record_problems(record: Any) -> list[str]:
    """Everything wrong with one CGD instruction record (extra keys such as ``rel_ins_ids`` are fine)."""
    if not isinstance(record, Mapping):
        return [f"an instruction record must be an object, got {type(record).__name__}"]
    reasons = key_problems(record, CGD_KEYS, optional=record.keys())
    if "instruction" in record and not isinstance(record["instruction"], str):
        reasons.append(f"'instruction' must be a string, got {type(record['instruction']).__name__}")
    reasons += text_problems(record, "answer")
    image_ids = record.get("image_ids")
    if "image_ids" not in record:
        return reasons
    if not isinstance(image_ids, list):
        reasons.append(f"'image_ids' must be a list of two image ids, got {type(image_ids).__name__}")
    elif len(image_ids) != 2:
        reasons.append(f"'image_ids' must hold exactly two image ids (one pair), got {len(image_ids)}")
    else:
        bad = [i for i in image_ids if not (isinstance(i, str) and CGD_IMAGE_ID.fullmatch(i))]
        if bad:
            reasons.append(f"'image_ids' must look like 'CGD_IMG_<coco id>', got {bad!r}")
    return reasons


def _cgd_image_sources(
    path: Path, uses: dict[str, _FirstUse], coco: Path | None, images_file: Path | None, problems: ProblemCollector
) -> dict[str, str]:
    """Each used image id's COCO file (preferred) or CGD.json data URI; the others reported once each."""
    found: dict[str, str] = {}
    if coco is not None:
        for image_id in uses:
            candidate = coco / coco_file_name(image_id)
            if candidate.is_file():
                found[image_id] = str(candidate)
    missing = [image_id for image_id in uses if image_id not in found]
    encoded = _cgd_images(images_file, problems) if missing and images_file is not None else None
    for image_id in missing:
        use = uses[image_id]
        where = f"{use.instruction_id}: image {image_id!r} (used by {use.count} instruction(s))"
        if encoded is None and images_file is not None:
            continue  # the images file itself was reported
        if encoded is None or image_id not in encoded:
            problems.add(str(path), use.row, f"{where} has no image: {_searched(coco, images_file, image_id)}")
            continue
        try:
            found[image_id] = base64_image_uri(encoded[image_id])
        except ValueError as error:
            problems.add(str(path), use.row, f"{where} in {images_file}: {error}")
    return found


def _cgd_images(images_file: Path, problems: ProblemCollector) -> dict[str, Any] | None:
    try:
        with open(images_file, encoding="utf-8") as handle:
            encoded = json.load(handle)
    except json.JSONDecodeError as error:
        problems.add(str(images_file), None, f"not valid JSON (line {error.lineno}: {error.msg})")
        return None
    if not isinstance(encoded, dict):
        problems.add(str(images_file), None, "not a CGD image file: expected one {'CGD_IMG_<id>': base64} object")
        return None
    return encoded


def _searched(coco: Path | None, images_file: Path | None, image_id: str) -> str:
    in_coco = None if coco is None else f"coco_root ({coco / coco_file_name(image_id)})"
    in_file = None if images_file is None else f"the images file ({images_file})"
    if in_coco and in_file:
        return f"in neither {in_coco} nor {in_file}"
    if in_coco:
        return f"not in {in_coco}, and no images file (CGD.json) was given"
    return f"not in {in_file}"
