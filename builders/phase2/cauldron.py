"""the_cauldron ``mimic_cgd`` in (:func:`read_cauldron`, what the CaD-VI code loads): one item per parquet row.

A module of its own because it is one source format with its own file layout and checks (``cadvi-facts.md``
§3, §7); :mod:`.sources` dispatches to it.

Parquet rows: ``images`` = two ``datasets.Image`` structs ``{bytes, path}``, ``texts`` = ``[{user, assistant,
source}]``. One item per row; the context joins the assistants.

Pair ids: ``cgd_<stem1>_<stem2>`` (as :mod:`.cgd`) for rows whose images carry a stored ``path``; a row
without paths is ``cauldron_<n>``, ``n`` counting rows from 1 over all files read (sorted by name), with image
names ``<pair id>_1.<ext>``/``_2.<ext>`` (``png`` for PNG bytes, ``jpg`` for JPEG: the name matches the bytes
the export writes).

Memory: :func:`read_cauldron` reads only the ``images`` and ``texts`` columns, :data:`CAULDRON_BATCH_ROWS` rows
at a time (pyarrow decodes one row group at a time; its size is the writer's), and keeps no more data URIs once
a problem was found. The full subset is ~13 GB of parquet, so its items hold ~17 GB of data URIs: read it a
file at a time where that is too much.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.parquet as pq

from builders.phase2.cgd import cgd_pair_id
from builders.phase2.items import PathLike, Phase2Item, _unique, bytes_image_uri
from builders.release.sources import readable_file
from builders.release.validate import ProblemCollector, UnsafeImageNameError, checked_relative_name

CAULDRON_COLUMNS = ("images", "texts")
CAULDRON_BATCH_ROWS = 64
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg"}


def read_cauldron(path_or_folder: PathLike) -> list[Phase2Item]:
    """One item per row of the_cauldron ``mimic_cgd`` parquet (a file, or a folder of them read in name order)."""
    files = cauldron_files(path_or_folder)
    problems = ProblemCollector()
    items: list[Phase2Item] = []
    ordinal = 0
    for file in files:
        for row, record in _cauldron_rows(file, problems):
            ordinal += 1
            item = _cauldron_item(file, row, ordinal, record, problems)
            if item is not None and not problems:  # once the read has failed, keep no more image bytes
                items.append(item)
    if ordinal == 0 and not problems:
        problems.add(str(path_or_folder), None, "no rows in the parquet file(s)")
    problems.raise_if_any()
    return items


def cauldron_files(path_or_folder: PathLike) -> list[Path]:
    """A parquet file, or the ``*.parquet`` of a folder (or of its subfolders: the Hub's ``train/``), sorted."""
    path = Path(path_or_folder)
    if not path.is_dir():
        return [readable_file(path, "parquet")]
    files = sorted(path.glob("*.parquet")) or sorted(path.glob("*/*.parquet"))
    if not files:
        raise FileNotFoundError(f"{path}: a folder without .parquet files (expected the_cauldron's mimic_cgd)")
    return files


def _cauldron_rows(file: Path, problems: ProblemCollector) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        parquet = pq.ParquetFile(file)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is not parquet
        problems.add(str(file), None, f"not a readable parquet file ({error})")
        return
    missing = [c for c in CAULDRON_COLUMNS if parquet.schema_arrow.get_field_index(c) < 0]
    if missing:
        problems.add(str(file), None, f"missing column(s) {missing!r}: not the_cauldron's mimic_cgd (images, texts)")
        return
    number = 0
    for batch in parquet.iter_batches(batch_size=CAULDRON_BATCH_ROWS, columns=list(CAULDRON_COLUMNS)):
        for record in batch.to_pylist():
            number += 1
            yield number, record


def _cauldron_item(
    file: Path, row: int, ordinal: int, record: dict[str, Any], problems: ProblemCollector
) -> Phase2Item | None:
    reasons: list[str] = []
    uris, names = _cauldron_images(record.get("images"), reasons)
    context = _cauldron_context(record.get("texts"), reasons)
    if not problems.add_all(str(file), row, reasons):
        return None
    pair_id, image_names = _cauldron_names(names, uris, ordinal)
    if not _unique(problems, file, row, pair_id):
        return None
    return Phase2Item(pair_id, (uris[0], uris[1]), image_names, context, f"{file}:{row}")


def _cauldron_images(images: Any, reasons: list[str]) -> tuple[list[str], list[str | None]]:
    """The row's images as data URIs, and the file names stored with them (None where absent)."""
    if not isinstance(images, list) or len(images) != 2:
        count = len(images) if isinstance(images, list) else type(images).__name__
        reasons.append(f"'images' must hold exactly two images (one pair), got {count}")
        return [], []
    uris, names = [], []
    for index, image in enumerate(images, start=1):
        data = image.get("bytes") if isinstance(image, dict) else None
        if not data:
            reasons.append(f"image {index} has no bytes")
            continue
        try:
            uris.append(bytes_image_uri(data))
        except ValueError as error:
            reasons.append(f"image {index}: {error}")
        names.append(_stored_name(image.get("path")))
    return uris, names


def _stored_name(path: Any) -> str | None:
    """The file name of a stored image path, if it is one that is safe to write."""
    if not isinstance(path, str):
        return None
    name = PurePosixPath(path.replace("\\", "/")).name
    try:
        checked_relative_name(name)
    except UnsafeImageNameError:
        return None
    return name


def _cauldron_context(texts: Any, reasons: list[str]) -> str:
    if not isinstance(texts, list) or not texts:
        reasons.append("'texts' is empty: no question/answer pairs to use as context")
        return ""
    answers = []
    for index, turn in enumerate(texts, start=1):
        answer = turn.get("assistant") if isinstance(turn, dict) else None
        if not isinstance(answer, str) or not answer.strip():
            reasons.append(f"texts[{index}]: 'assistant' must be a non-empty string")
        else:
            answers.append(answer.strip())
    return " ".join(answers)


def _cauldron_names(names: list[str | None], uris: list[str], ordinal: int) -> tuple[str, tuple[str, str]]:
    if len(names) == 2 and names[0] and names[1]:
        stems = [PurePosixPath(n).stem.removeprefix("CGD_IMG_") for n in names]
        return cgd_pair_id(stems[0], stems[1]), (names[0], names[1])
    pair_id = f"cauldron_{ordinal}"
    return pair_id, (f"{pair_id}_1.{_extension(uris[0])}", f"{pair_id}_2.{_extension(uris[1])}")


def _extension(uri: str) -> str:
    """``png`` for a ``data:image/png;...`` URI, ``jpg`` for JPEG, else the MIME subtype."""
    mime = uri[len("data:") : uri.index(";")]
    return EXTENSIONS.get(mime, mime.partition("/")[2])
