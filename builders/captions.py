"""Caption files in: Localized Narratives, COCO caption files, and plain JSONL.

Pairing is per *image*: COCO images have several narratives (and five COCO captions), so the
readers group captions by image file name and keep one caption per image (``choose``). File
names follow each source's release convention, so they resolve against the same image folders
the dataset builders use.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from builders.release.sources import iter_json_records
from builders.release.validate import ProblemCollector, UnsafeImageNameError, checked_relative_name

Choose = Literal["first", "longest"]
CaptionFormat = Literal["auto", "localized-narratives", "coco", "jsonl"]
LongCaptions = Literal["error", "skip", "truncate"]
# Localized Narratives average ~36 words (~200 characters), SVIT detailed descriptions a few hundred words:
# far longer text is a broken row (a whole file in one field), and two of them must still fit a prompt.
DEFAULT_MAX_CAPTION_CHARS = 8_000
LONG_SHOWN = 5

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageCaption:
    """One image and the caption that represents it in prompts."""

    image: str  # file name relative to an image root
    caption: str
    source: str  # dataset of origin ("open_images", "coco", "flickr30k", "ade20k", or the file's own)


def localized_narratives_file_name(dataset_id: str, image_id: str) -> str:
    """The image file name of a Localized Narratives record, per source dataset.

    Open Images ``<hex id>.jpg``, COCO ``<id:012d>.jpg``, Flickr30k ``<id>.jpg``, ADE20K
    ``ADE_train_XXXXXXXX.jpg`` (the flat folder layout of the CaD-Inst phase-1 images).
    """
    source = dataset_id.lower()
    if source.startswith("open_images") or source.startswith("openimages"):
        return f"{image_id}.jpg"
    if "coco" in source:
        return f"{int(image_id):012d}.jpg"
    if source.startswith("flickr"):
        return f"{image_id}.jpg"
    if source.startswith("ade20k"):
        return f"{image_id}.jpg" if image_id.startswith("ADE_") else f"ADE_train_{int(image_id):08d}.jpg"
    raise ValueError(f"unknown Localized Narratives dataset_id {dataset_id!r}")


def source_name(dataset_id: str) -> str:
    source = dataset_id.lower()
    for name in ("open_images", "coco", "flickr30k", "ade20k"):
        if name.replace("_", "") in source.replace("_", ""):
            return name
    return source


@dataclass(frozen=True)
class LengthPolicy:
    """What to do with a caption longer than ``max_chars``: report it as a problem, skip it, or cut it."""

    max_chars: int = DEFAULT_MAX_CAPTION_CHARS
    long_captions: LongCaptions = "error"

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {self.max_chars}")
        if self.long_captions not in ("error", "skip", "truncate"):
            raise ValueError(f"long_captions must be error, skip or truncate, got {self.long_captions!r}")


def read_captions(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    fmt: CaptionFormat = "auto",
    choose: Choose = "first",
    max_chars: int = DEFAULT_MAX_CAPTION_CHARS,
    long_captions: LongCaptions = "error",
) -> list[ImageCaption]:
    """One :class:`ImageCaption` per image, in the order images first appear.

    ``choose`` picks the caption of an image with several: the first seen, or the longest.
    Every bad row of every file is reported at once (``file:row: reason``). A caption longer than
    ``max_chars`` is such a problem (``long_captions="error"``), or is dropped (``"skip"``) or cut at a
    word boundary (``"truncate"``), each reported as a warning with its ``file:row``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    policy = LengthPolicy(max_chars, long_captions)
    problems = ProblemCollector()
    long: list[str] = []
    chosen: dict[str, ImageCaption] = {}
    for path in map(Path, paths):
        if path.is_dir():
            problems.add(str(path), None, "is a folder, not a caption file")
            continue
        if not path.is_file():
            problems.add(str(path), None, "no such caption file")
            continue
        found = False
        for item in _read_file(path, fmt, problems, policy, long):
            found = True
            keep_caption(chosen, item, choose)
        if not found and not problems:
            problems.add(str(path), None, "no captions in this file")
    problems.raise_if_any()
    warn_long_captions(long, policy, "captions")
    return list(chosen.values())


def keep_caption(chosen: dict[str, ImageCaption], item: ImageCaption, choose: Choose) -> None:
    """One caption per image: the first one read, or the longest (``choose``)."""
    current = chosen.get(item.image)
    if current is None or (choose == "longest" and len(item.caption) > len(current.caption)):
        chosen[item.image] = item


def warn_long_captions(long: list[str], policy: LengthPolicy, what: str) -> None:
    """One warning for the captions over the length bound that were skipped or truncated (``long``: where)."""
    if not long:
        return
    verb = "skipped" if policy.long_captions == "skip" else f"truncated to {policy.max_chars:,} characters"
    more = f" and {len(long) - LONG_SHOWN} more" if len(long) > LONG_SHOWN else ""
    logger.warning(
        "%d %s over %s characters %s: %s%s",
        len(long),
        what,
        f"{policy.max_chars:,}",
        verb,
        ", ".join(long[:LONG_SHOWN]),
        more,
    )


def _read_file(
    path: Path, fmt: CaptionFormat, problems: ProblemCollector, policy: LengthPolicy, long: list[str]
) -> Iterator[ImageCaption]:
    if fmt == "auto":
        fmt = "coco" if path.suffix == ".json" else "jsonl"
    if fmt == "coco":
        yield from _coco(path, problems, policy, long)
        return
    for row, record in iter_json_records(path, problems):
        if not isinstance(record, dict):
            problems.add(str(path), row, f"a caption row must be an object, got {type(record).__name__}")
            continue
        if fmt == "localized-narratives" or "dataset_id" in record:
            yield from _checked(path, row, problems, policy, long, lambda r=record: _narrative(r))
        else:
            yield from _checked(path, row, problems, policy, long, lambda r=record: _plain(r, path.stem))


def _narrative(record: dict[str, Any]) -> Iterable[ImageCaption]:
    missing = [k for k in ("dataset_id", "image_id", "caption") if not isinstance(record.get(k), (str, int))]
    if missing:
        raise ValueError(f"Localized Narratives row lacks {', '.join(missing)}")
    name = localized_narratives_file_name(str(record["dataset_id"]), str(record["image_id"]))
    return [ImageCaption(name, str(record["caption"]), source_name(str(record["dataset_id"])))]


def _plain(record: dict[str, Any], source: str) -> Iterable[ImageCaption]:
    image = record.get("image")
    captions = record.get("captions", [record.get("caption")] if "caption" in record else None)
    if not isinstance(image, str) or not isinstance(captions, list) or not captions:
        raise ValueError("a JSONL caption row needs 'image' (a file name) and 'caption' (or a list 'captions')")
    return [ImageCaption(image, caption, source) for caption in captions]


def _coco(path: Path, problems: ProblemCollector, policy: LengthPolicy, long: list[str]) -> Iterator[ImageCaption]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = {image["id"]: image["file_name"] for image in data["images"]}
        annotations = data["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        problems.add(str(path), None, f"not a COCO caption file (images/annotations): {error}")
        return
    for row, annotation in enumerate(annotations, start=1):
        yield from _checked(path, row, problems, policy, long, lambda a=annotation: _coco_annotation(a, names))


def _coco_annotation(annotation: Any, names: dict[Any, str]) -> Iterable[ImageCaption]:
    try:
        return [ImageCaption(names[annotation["image_id"]], annotation["caption"], "coco")]
    except (KeyError, TypeError) as error:
        raise ValueError(f"annotation without a known image_id or caption ({error})") from None


def _checked(
    path: Path,
    row: int,
    problems: ProblemCollector,
    policy: LengthPolicy,
    long: list[str],
    make: Callable[[], Iterable[ImageCaption]],
) -> Iterator[ImageCaption]:
    """The row's captions, cleaned and length-checked, or its problem recorded (``file:row: reason``)."""
    try:
        items = list(make())
    except ValueError as error:
        problems.add(str(path), row, str(error))
        return
    for item in items:
        try:
            checked_relative_name(item.image)
        except UnsafeImageNameError as error:
            problems.add(str(path), row, str(error))
            continue
        if not isinstance(item.caption, str) or not item.caption.strip():
            problems.add(str(path), row, "empty caption")
            continue
        caption = " ".join(item.caption.split())
        if len(caption) > policy.max_chars:
            if policy.long_captions == "error":
                problems.add(
                    str(path),
                    row,
                    f"caption of {len(caption):,} characters is longer than {policy.max_chars:,} "
                    "(--max-caption-chars); skip or cut such captions with --long-captions skip|truncate",
                )
                continue
            long.append(f"{path}:{row}")
            if policy.long_captions == "skip":
                continue
            caption = _truncate(caption, policy.max_chars)
        yield ImageCaption(item.image, caption, item.source)


def _truncate(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at the last space when there is one."""
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > 0 and len(text) > max_chars and text[max_chars] != " " else cut
