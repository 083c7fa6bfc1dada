"""Where each benchmark's images are, checked before any model runs.

Images are never shipped (licences). Each benchmark reads its own image root: ``CADVI_<NAME>_IMAGE_ROOT``
(e.g. ``CADVI_BISON_IMAGE_ROOT``), else ``$CADVI_EVAL_IMAGE_ROOT/<name>``. Names are resolved with
:class:`builders.release.images.ImageResolver`, so a name that would leave the root is rejected, and every
image is checked when the docs are built: a missing file fails before any model runs, naming the
benchmark, the image root and the file. The layouts are in :mod:`eval_tasks.benchmarks`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from builders.release.images import ImageResolver
from eval_tasks.benchmarks import benchmark

IMAGE_ROOT_ENV = "CADVI_EVAL_IMAGE_ROOT"


class MissingBenchmarkImageError(FileNotFoundError):
    """An image of a benchmark question that is not under the benchmark's image root."""


def image_root(name: str) -> Path:
    """The image root of benchmark ``name`` from the environment."""
    spec = benchmark(name)
    if os.environ.get(spec.image_env):
        return Path(os.environ[spec.image_env]).expanduser()
    if os.environ.get(IMAGE_ROOT_ENV):
        return Path(os.environ[IMAGE_ROOT_ENV]).expanduser() / spec.name
    raise MissingBenchmarkImageError(
        f"{spec.name}: no image root; set {spec.image_env} to the folder with the {spec.images}, "
        f"or {IMAGE_ROOT_ENV} to a folder holding a '{spec.name}/' sub-folder"
    )


def resolve_images(name: str, rows: Sequence[dict[str, Any]], root: str | Path | None = None) -> list[list[str]]:
    """Absolute image paths per row; the first missing image is an error naming benchmark, root and file."""
    spec = benchmark(name)
    root = Path(root) if root is not None else image_root(name)
    if not root.is_dir():
        raise MissingBenchmarkImageError(
            f"{spec.name}: image root {str(root)!r} is not a folder (set {spec.image_env}; expected: {spec.images})"
        )
    resolver = ImageResolver(root)
    paths: list[list[str]] = []
    for row in rows:
        row_paths = []
        for image in row["image"]:
            found = next(filter(None, (resolver.resolve(c) for c in spec.candidate_names(image))), None)
            if found is None:
                raise MissingBenchmarkImageError(
                    f"{spec.name}: image {image!r} (question {row['question_id']!r}) is not in the image root "
                    f"{str(root)!r}; expected: {spec.images}"
                )
            row_paths.append(str(found))
        paths.append(row_paths)
    return paths


def open_images(paths: Sequence[str]) -> list:
    """The images at ``paths`` as RGB PIL images, in order."""
    from PIL import Image

    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images
