"""Which image files a dataset needs: the names in its own rows, each with its canonical identity.

Every CaD-VI file lists its images the same way, an ``image`` field holding a list of names relative to
an image root: the CaD-Inst release (JSON arrays, or the Hub parquet with the list as a string), a
regenerated export, CaD-QA and the benchmark question files (JSON Lines), a LLaVA training mix. The
names are kept as they are: they are the layout the builders' and tasks' ``image_roots`` expect.

Which naming schemes each dataset's names are read under is :data:`builders.images.identity.DATASET_SCHEMES`;
where a user gets the images no source lists per image, :data:`MANUAL`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builders.images.identity import UnknownImageError, identify, schemes_of
from builders.release.sources import iter_json_records, iter_parquet_records, parquet_column_is_string, readable_file
from builders.release.validate import ProblemCollector, UnsafeImageNameError, checked_relative_name

__all__ = ["MANUAL", "Need", "read_needs"]

# Identity sources no annotation file maps to per-image URLs: where the user gets them instead.
MANUAL: dict[str, str] = {
    "flickr": "Flickr30k is given out on request only (https://shannon.cs.illinois.edu/DenotationGraph/): "
    "put flickr30k-images/*.jpg into the folder",
    "ade20k": "ADE20K: unzip ADEChallengeData2016.zip (http://data.csail.mit.edu/places/ADEchallenge/) and put "
    "images/training/*.jpg and images/validation/*.jpg into the folder",
    "eqben": "EqBen is one archive from its authors (https://github.com/Wangt-CN/EqBen): unpack it so that "
    "eqbensd/, eqbenag/, ... are in the folder",
    "svo": "SVO-Probes names here are the CaD-VI authors' own 5-digit numbering, with no published mapping to the "
    "SVO-Probes image URLs (https://github.com/google-deepmind/svo_probes)",
    "ocrvqa": "OCR-VQA images come from its own download script (https://ocr-vqa.github.io/)",
}


@dataclass(frozen=True)
class Need:
    """One image file a dataset needs: its name (relative path), identity, and where it was first listed."""

    name: str
    identity: str
    file: str
    row: int


def _image_lists(path: Path, problems: ProblemCollector) -> Iterator[tuple[int, Any]]:
    if path.suffix == ".parquet":
        literal = ("image",) if parquet_column_is_string(path, "image") else ()
        for row, record in iter_parquet_records(path, problems, literal_columns=literal):
            yield row, record.get("image", record.get("images"))
        return
    for row, record in iter_json_records(path, problems):
        yield row, record.get("image", record.get("images")) if isinstance(record, dict) else None


def read_needs(dataset: str, files: Iterable[str | Path]) -> list[Need]:
    """The distinct image names the rows of ``files`` list, in first-seen order, each identified.

    Every bad row is collected (a missing ``image`` field, an unsafe path, a name that no naming scheme of
    ``dataset`` knows) and reported at once: :class:`UnknownImageError` whose first line names the first
    problem's file and row.
    """
    schemes = schemes_of(dataset)
    problems = ProblemCollector()
    needs: dict[str, Need] = {}
    for file in files:
        path = readable_file(file, f"{dataset} data")
        for row, images in _image_lists(path, problems):
            names = [images] if isinstance(images, str) else images
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                problems.add(str(path), row, "no 'image' list of file names")
                continue
            for name in names:
                if name in needs:
                    continue
                try:
                    checked_relative_name(name)
                    needs[name] = Need(name, identify(name, schemes), str(path), row)
                except (UnsafeImageNameError, UnknownImageError) as error:
                    problems.add(str(path), row, str(error))
    if problems:
        first = problems.problems[0]
        more = f" (and {len(problems.problems) - 1} more)" if len(problems.problems) > 1 else ""
        rest = "".join(f"\n  {problem}" for problem in problems.problems[1:20])
        raise UnknownImageError(f"{first}{more}{rest}")
    if not needs:
        raise UnknownImageError(f"{', '.join(map(str, files))}: no image names in the {dataset} rows")
    return list(needs.values())
