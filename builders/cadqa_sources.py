"""CaD-QA caption sources: SVIT detailed descriptions of Visual Genome images.

CaD-QA (paper §4) pairs Visual Genome images described by SVIT's detailed captions. Two files
are joined:

- SVIT ``detail_description.json`` (``detail_description.zip`` of BAAI/SVIT): a JSON list of
  ``{"image_id": <VG int>, "conversations": [{"content": [{"from": "user", "value": q},
  {"from": "gpt", "value": description}]}]}``; the description is the first ``gpt`` turn.
- Visual Genome ``image_data.json``: a JSON list of ``{"image_id", "url", "width", "height",
  "coco_id", "flickr_id"}``; the image name is the last two parts of the URL
  (``.../rak248/VG_100K_2/1.jpg`` -> ``VG_100K_2/1.jpg``), the layout of ``CaD_QA_eval.jsonl``.

The result is a list of :class:`builders.captions.ImageCaption` (source ``"visual_genome"``), so it
goes wherever the phase-1 caption readers' output goes (nouns, then pairs). Which SVIT rows the
original kept, and how they were cleaned, is not published: here every described image is kept,
with whitespace collapsed and the same length policy as the phase-1 readers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from builders.captions import (
    DEFAULT_MAX_CAPTION_CHARS,
    Choose,
    ImageCaption,
    LengthPolicy,
    LongCaptions,
    _checked,
    keep_caption,
    warn_long_captions,
)
from builders.release.validate import ProblemCollector, UnsafeImageNameError, checked_relative_name

SOURCE = "visual_genome"
VG_FOLDERS = ("VG_100K", "VG_100K_2")


def read_svit_captions(
    detail_description: str | os.PathLike,
    image_data: str | os.PathLike,
    *,
    choose: Choose = "first",
    max_chars: int = DEFAULT_MAX_CAPTION_CHARS,
    long_captions: LongCaptions = "error",
) -> list[ImageCaption]:
    """One :class:`ImageCaption` per described Visual Genome image, in SVIT file order.

    ``image`` is ``VG_100K/<id>.jpg`` or ``VG_100K_2/<id>.jpg`` (from the image's URL in
    ``image_data``). Every problem of both files is raised at once
    (:class:`~builders.release.validate.ReleaseValidationError`, ``file:row: reason``, rows from 1):
    a missing or non-list file, rows of the wrong shape or types, image ids without an
    ``image_data`` entry, empty captions, and captions over ``max_chars`` (unless
    ``long_captions`` is ``"skip"`` or ``"truncate"``, as in :func:`builders.captions.read_captions`).
    An image described twice keeps its first description, or its longest (``choose``).
    """
    policy = LengthPolicy(max_chars, long_captions)
    problems = ProblemCollector()
    svit_path, vg_path = Path(detail_description), Path(image_data)
    svit_rows = _json_list(svit_path, problems, "SVIT detail_description.json")
    vg_rows = _json_list(vg_path, problems, "Visual Genome image_data.json")
    names = _image_names(vg_path, vg_rows, problems) if vg_rows else None
    if vg_rows is not None and not vg_rows:
        problems.add(str(vg_path), None, "no images in this file")
    long: list[str] = []
    chosen: dict[str, ImageCaption] = {}
    for row, record in enumerate(svit_rows or [], start=1):
        parsed = _svit_row(record)
        if isinstance(parsed, str):
            problems.add(str(svit_path), row, parsed)
            continue
        image_id, caption = parsed
        if names is None:
            continue  # image_data.json is unreadable: reported once, not per SVIT row
        name = names.get(image_id)
        if name is None:
            problems.add(str(svit_path), row, f"image_id {image_id} has no entry in {vg_path.name}")
            continue
        for item in _checked(
            svit_path, row, problems, policy, long, lambda n=name, c=caption: [ImageCaption(n, c, SOURCE)]
        ):
            keep_caption(chosen, item, choose)
    if svit_rows is not None and not svit_rows:
        problems.add(str(svit_path), None, "no descriptions in this file")
    problems.raise_if_any()
    warn_long_captions(long, policy, "SVIT captions")
    return list(chosen.values())


def write_caption_jsonl(captions: Iterable[ImageCaption], path: str | os.PathLike) -> Path:
    """``captions`` as the plain caption JSONL (``{"image", "caption", "source"}`` per line) that
    :func:`builders.captions.read_captions` reads, so the existing CLI stages take SVIT captions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for item in captions:
            record = {"image": item.image, "caption": item.caption, "source": item.source}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def vg_image_name(url: str) -> str:
    """``VG_100K_2/1.jpg`` from ``https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg``
    (the last two URL parts), or :class:`ValueError`."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"'url' must be a non-empty string, got {_describe(url)}")
    parts = [part for part in url.strip().split("?")[0].split("/") if part]
    if len(parts) < 2:
        raise ValueError(f"'url' {url!r} has no folder/file part")
    folder, file = parts[-2], parts[-1]
    if folder not in VG_FOLDERS:
        raise ValueError(f"'url' {url!r} is not in a Visual Genome image folder ({' or '.join(VG_FOLDERS)})")
    name = f"{folder}/{file}"
    try:
        checked_relative_name(name)
    except UnsafeImageNameError as error:
        raise ValueError(str(error)) from None
    return name


def _json_list(path: Path, problems: ProblemCollector, what: str) -> list[Any] | None:
    """The file's JSON list, or None with the reason recorded."""
    if path.is_dir():
        problems.add(str(path), None, f"is a folder, not the {what} file")
        return None
    if not path.is_file():
        problems.add(str(path), None, f"no such file (expected the {what} file)")
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        problems.add(str(path), None, f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})")
        return None
    except UnicodeDecodeError as error:
        problems.add(str(path), None, f"not UTF-8 text ({error.reason})")
        return None
    if not isinstance(data, list):
        problems.add(str(path), None, f"the {what} file must be a JSON list of objects, got {_describe(data)}")
        return None
    return data


def _image_names(path: Path, rows: Sequence[Any], problems: ProblemCollector) -> dict[int, str]:
    """``image_id -> VG_100K*/<file>`` from ``image_data.json`` rows; bad rows recorded."""
    names: dict[int, str] = {}
    first_row: dict[int, int] = {}
    for row, record in enumerate(rows, start=1):
        if not isinstance(record, dict):
            problems.add(str(path), row, f"an image_data row must be an object, got {_describe(record)}")
            continue
        image_id = record.get("image_id")
        if not _is_int(image_id):
            problems.add(str(path), row, f"'image_id' must be an integer, got {_describe(image_id)}")
            continue
        try:
            name = vg_image_name(record.get("url"))  # type: ignore[arg-type]
        except ValueError as error:
            problems.add(str(path), row, str(error))
            continue
        if image_id in names:
            if names[image_id] != name:
                problems.add(
                    str(path),
                    row,
                    f"image_id {image_id} is {name!r} here but {names[image_id]!r} at {path}:{first_row[image_id]}",
                )
            continue
        names[image_id], first_row[image_id] = name, row
    return names


def _svit_row(record: Any) -> tuple[int, str] | str:
    """``(image_id, description)`` of one SVIT row, or the reason it is not one."""
    if not isinstance(record, dict):
        return f"an SVIT row must be an object, got {_describe(record)}"
    image_id = record.get("image_id")
    if not _is_int(image_id):
        return f"'image_id' must be an integer (a Visual Genome id), got {_describe(image_id)}"
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        return f"'conversations' must be a non-empty list, got {_describe(conversations)}"
    for index, conversation in enumerate(conversations, start=1):
        content = conversation.get("content") if isinstance(conversation, dict) else None
        if not isinstance(content, list):
            return f"conversation {index} must be an object with a list 'content', got {_describe(conversation)}"
        for turn in content:
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                return f"conversation {index}: a turn must be an object with 'from' and 'value', got {_describe(turn)}"
            if turn["from"] == "gpt":
                if not isinstance(turn["value"], str):
                    return f"conversation {index}: the 'gpt' value must be a string, got {_describe(turn['value'])}"
                return image_id, turn["value"]  # an empty one is reported by the caption checks
    return "no 'gpt' turn (the description) in 'conversations'"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"
