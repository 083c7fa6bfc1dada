"""Where each image can be fetched from, read from the sources' own annotation files.

No source ships a CaD-VI image, but most publish where each of theirs lives:

* **COCO** (``instances_*.json``, ``captions_*.json``, ``image_info_*.json``): ``images[].coco_url`` (the
  cocodataset.org server) and ``flickr_url``; no per-image checksum (the split zips have none either).
* **Visual Genome** (``image_data.json``): ``url`` per image, plus the ``coco_id`` / ``flickr_id`` links
  the contamination audit joins identities with.
* **Open Images** (the image-id CSVs, ``*-images-with-rotation.csv`` / ``image_ids_and_rotation.csv``):
  ``OriginalURL`` with ``OriginalSize`` and ``OriginalMD5`` (base64; checked after the download), and the
  CVDF copy ``https://open-images-dataset.s3.amazonaws.com/<Subset>/<ImageID>.jpg`` as the fallback
  (a re-hosted file: the original's checksum does not apply to it, so only its decoding is checked).
* **NLVR2** (``test1.json`` etc., JSON Lines): ``left_url`` / ``right_url`` of each ``identifier``.

Each reader checks that its file is what the option said: a Visual Genome file given as COCO annotations
is an error that names both, never an empty source.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.images.download import Candidate

__all__ = ["KINDS", "AnnotationError", "ImageSources", "read_sources"]

OPEN_IMAGES_MIRROR = "https://open-images-dataset.s3.amazonaws.com/{subset}/{image_id}.jpg"
OPEN_IMAGES_COLUMNS = ("ImageID", "Subset", "OriginalURL", "OriginalSize", "OriginalMD5")


class AnnotationError(ValueError):
    """An annotation file that is not of the kind it was given as, or has a bad row."""


@dataclass
class ImageSources:
    """Identity (``coco:143961``) -> the places to fetch it from, in order; and identity links (VG's)."""

    locations: dict[str, tuple[Candidate, ...]] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # what was read, for the manifest

    def add(self, identity: str, *candidates: Candidate) -> None:
        """Add ``candidates`` after those already known (two COCO years name the same image)."""
        known = self.locations.get(identity, ())
        new = tuple(c for c in candidates if c.url and c not in known)
        if new:
            self.locations[identity] = known + new

    def update(self, other: ImageSources) -> None:
        for identity, candidates in other.locations.items():
            self.add(identity, *candidates)
        self.links += other.links
        self.files += other.files


def _load_json(path: Path, kind: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{path}: not a {kind} file: not valid JSON ({error.msg}, line {error.lineno})") from None
    except UnicodeDecodeError:
        raise AnnotationError(f"{path}: not a {kind} file: not UTF-8 text") from None


def guess_kind(path: Path) -> str | None:
    """Which annotation kind ``path`` looks like (for the error that names the right option), or None."""
    try:
        with open(path, encoding="utf-8") as handle:
            head = handle.read(65536)
    except (OSError, UnicodeDecodeError):
        return None
    first = head.splitlines()[0] if head else ""
    if all(column in first for column in ("ImageID", "OriginalURL")):
        return "open-images"
    if '"identifier"' in head and '"left_url"' in head:
        return "nlvr2"
    if '"coco_url"' in head:
        return "coco"
    if '"image_id"' in head and '"url"' in head:
        return "visual-genome"
    return None


def _wrong_kind(path: Path, kind: str, expected: str) -> AnnotationError:
    guessed = guess_kind(path)
    hint = ""
    if guessed and guessed != kind:
        hint = f"; it looks like a {KINDS[guessed][0]} file (give it with --{guessed})"
    return AnnotationError(f"{path}: not a {KINDS[kind][0]} file ({expected}){hint}")


def read_coco(path: Path) -> ImageSources:
    data = _load_json(path, "COCO annotation")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not images or not isinstance(images[0], dict) or "coco_url" not in images[0]:
        raise _wrong_kind(path, "coco", "expected an object with an 'images' list of {id, file_name, coco_url}")
    sources = ImageSources(files=[str(path)])
    for row, image in enumerate(images, start=1):
        try:
            identity = f"coco:{int(image['id'])}"
        except (KeyError, TypeError, ValueError):
            raise AnnotationError(f"{path}: images[{row - 1}]: no integer 'id'") from None
        urls = (str(image.get(key) or "") for key in ("coco_url", "flickr_url"))
        sources.add(identity, *(Candidate(url) for url in urls))
    return sources


def read_visual_genome(path: Path) -> ImageSources:
    data = _load_json(path, "Visual Genome image_data.json")
    if not isinstance(data, list) or not data or not isinstance(data[0], dict) or "url" not in data[0]:
        raise _wrong_kind(path, "visual-genome", "expected a list of {image_id, url, coco_id, flickr_id}")
    sources = ImageSources(files=[str(path)])
    for row, image in enumerate(data, start=1):
        raw = image.get("image_id", image.get("id"))
        if not isinstance(raw, int):
            raise AnnotationError(f"{path}: row {row}: no integer 'image_id'")
        identity = f"vg:{raw}"
        sources.add(identity, Candidate(str(image.get("url") or "")))
        for source, key in (("coco", "coco_id"), ("flickr", "flickr_id")):
            if isinstance(image.get(key), int):
                sources.links.append((identity, f"{source}:{image[key]}"))
    return sources


def _hex_md5(value: str, path: Path, row: int) -> str | None:
    if not value:
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AnnotationError(f"{path}: row {row}: OriginalMD5 {value!r} is not base64") from None
    if len(digest) != 16:
        raise AnnotationError(f"{path}: row {row}: OriginalMD5 {value!r} is not an MD5 digest")
    return digest.hex()


def read_open_images(path: Path) -> ImageSources:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"ImageID", "OriginalURL"} <= set(reader.fieldnames):
            raise _wrong_kind(path, "open-images", f"expected a CSV with the columns {', '.join(OPEN_IMAGES_COLUMNS)}")
        sources = ImageSources(files=[str(path)])
        for row, record in enumerate(reader, start=2):  # row 1 is the header
            image_id = (record.get("ImageID") or "").strip()
            if not image_id:
                raise AnnotationError(f"{path}: row {row}: empty ImageID")
            size = record.get("OriginalSize") or ""
            original = Candidate(
                (record.get("OriginalURL") or "").strip(),
                size=int(size) if size.isdigit() else None,
                md5=_hex_md5((record.get("OriginalMD5") or "").strip(), path, row),
            )
            subset = (record.get("Subset") or "").strip()
            mirror = Candidate(OPEN_IMAGES_MIRROR.format(subset=subset, image_id=image_id)) if subset else Candidate("")
            sources.add(f"openimages:{image_id}", original, mirror)
    return sources


def _json_lines(path: Path, kind: str) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError:
                    raise _wrong_kind(path, kind, f"line {number} is not a JSON object") from None


def read_nlvr2(path: Path) -> ImageSources:
    sources = ImageSources(files=[str(path)])
    for number, row in _json_lines(path, "nlvr2"):
        if not isinstance(row, dict) or not {"identifier", "left_url", "right_url"} <= set(row):
            raise _wrong_kind(path, "nlvr2", f"line {number} lacks identifier/left_url/right_url")
        pair = "-".join(str(row["identifier"]).split("-")[:3])  # test1-463-0-0 -> test1-463-0
        sources.add(f"nlvr2:{pair}-img0", Candidate(str(row["left_url"])))
        sources.add(f"nlvr2:{pair}-img1", Candidate(str(row["right_url"])))
    return sources


# kind -> (what it is, which identity source it serves, its reader)
KINDS: dict[str, tuple[str, str, Callable[[Path], ImageSources]]] = {
    "coco": ("COCO annotation (instances/captions/image_info *.json)", "coco", read_coco),
    "visual-genome": ("Visual Genome image_data.json", "vg", read_visual_genome),
    "open-images": ("Open Images image-id CSV", "openimages", read_open_images),
    "nlvr2": ("NLVR2 split JSON Lines (test1.json, ...)", "nlvr2", read_nlvr2),
}


def read_sources(files: dict[str, list[Path]]) -> ImageSources:
    """Every given annotation file read by the reader of its kind (``{"coco": [paths], ...}``)."""
    sources = ImageSources()
    for kind, paths in files.items():
        reader = KINDS[kind][2]
        for path in paths:
            sources.update(reader(Path(path)))
    return sources
