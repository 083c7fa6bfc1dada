"""Resolving release image names against the user's image folders.

Images are never in the release (licences): rows carry file names such as
``000000292416.jpg`` or ``VG_100K_2/2406825.jpg``, and users keep the images in one or several
folders. Like the original LLaVA trainer, every folder is tried in order. Names are data, so
a name that would leave its folder (absolute, ``..``) is rejected before it touches the disk.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import datasets

from builders.release.validate import UnsafeImageNameError, checked_relative_name  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

OnMissing = Literal["error", "drop"]
FIRST_MISSING_SHOWN = 5


class MissingImagesError(FileNotFoundError):
    """Rows whose images are in none of the image roots."""


class ImageResolver:
    """Maps image names to files, trying each root in order."""

    def __init__(self, roots: str | os.PathLike | Sequence[str | os.PathLike]):
        if isinstance(roots, (str, os.PathLike)):
            roots = [roots]
        self.roots = [Path(root).expanduser().absolute() for root in roots]
        if not self.roots:
            raise ValueError("image_roots is empty: give at least one image folder")
        for root in self.roots:
            if not root.is_dir():
                raise NotADirectoryError(f"image root {str(root)!r} is not a folder")

    def resolve(self, name: str) -> Path | None:
        relative = checked_relative_name(name)
        for root in self.roots:
            candidate = root.joinpath(*relative.parts)
            if candidate.is_file():
                return candidate
        return None

    def describe(self) -> str:
        return ", ".join(str(root) for root in self.roots)


def attach_images(
    dataset: datasets.Dataset | datasets.IterableDataset,
    image_roots: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    on_missing: OnMissing = "error",
    column: str = "image",
    out_column: str = "images",
) -> datasets.Dataset | datasets.IterableDataset:
    """Add ``out_column``: the row's images, decoded lazily by ``datasets.Image``.

    All names are checked up front in one pass over the name column (no image is decoded), so
    a missing image is reported with the total count before any training starts.
    ``on_missing="drop"`` drops the incomplete rows instead and logs how many.
    """
    if on_missing not in ("error", "drop"):
        raise ValueError(f"on_missing must be 'error' or 'drop', got {on_missing!r}")
    resolver = ImageResolver(image_roots)
    names_per_row = _names(dataset, column)
    paths_per_row: list[list[str] | None] = []
    missing_names: list[str] = []
    for names in names_per_row:
        paths = [resolver.resolve(name) for name in names]
        if all(paths):
            paths_per_row.append([str(path) for path in paths])
        else:
            paths_per_row.append(None)
            missing_names.extend(name for name, path in zip(names, paths, strict=True) if path is None)
    bad_rows = [index for index, paths in enumerate(paths_per_row) if paths is None]
    if bad_rows and on_missing == "error":
        shown = ", ".join(repr(name) for name in missing_names[:FIRST_MISSING_SHOWN])
        raise MissingImagesError(
            f"{len(bad_rows)} of {len(paths_per_row)} rows reference images that are in none of the "
            f"image roots [{resolver.describe()}] ({len(missing_names)} missing names, first: {shown}); "
            "download the images (see the dataset card) or pass on_missing='drop'"
        )
    if bad_rows:
        logger.warning(
            "dropped %d of %d rows whose images are missing from [%s]",
            len(bad_rows),
            len(paths_per_row),
            resolver.describe(),
        )
    kept_paths = [paths for paths in paths_per_row if paths is not None]
    image_feature = datasets.List(datasets.Image())
    if isinstance(dataset, datasets.Dataset):
        if bad_rows:
            bad = set(bad_rows)
            dataset = dataset.select([i for i in range(len(paths_per_row)) if i not in bad])
        dataset = dataset.add_column(out_column, kept_paths)
        return dataset.cast_column(out_column, image_feature)
    if bad_rows:
        bad = set(bad_rows)
        dataset = dataset.filter(lambda _row, index: index not in bad, with_indices=True)

    # A streamed map whose declared features already say Image() is not decoded again by
    # datasets 5.2 (and cast_column after a map leaves strings): decode with the feature itself.
    decoder = datasets.Image()

    def add_images(row: dict) -> dict:
        return {
            out_column: [
                decoder.decode_example({"path": str(resolver.resolve(name)), "bytes": None}) for name in row[column]
            ]
        }

    features = dataset.features.copy() if dataset.features else None
    if features is not None:
        features[out_column] = image_feature
    return dataset.map(add_images, features=features)


def _names(dataset: datasets.Dataset | datasets.IterableDataset, column: str) -> list[list[str]]:
    if isinstance(dataset, datasets.Dataset):
        return dataset.select_columns([column]).to_dict()[column]
    return [row[column] for row in dataset.select_columns([column])]
