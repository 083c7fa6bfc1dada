"""The shared ``datasets`` builder of the release datasets and the ``load`` around it.

``datasets`` 5 no longer runs dataset scripts, so the builders are ordinary classes in this
package, instantiated directly. Each reads its release files in whatever shape they come,
validates every row (collecting all problems) and only then hands Arrow tables to
``datasets``; a failed build leaves no cache behind. The cache is keyed by a hash of the
source files' *content*.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import datasets
import pyarrow as pa

from builders.release.images import OnMissing, attach_images
from builders.release.sources import content_hash, resolve_source
from builders.release.validate import ProblemCollector, ReleaseValidationError

TABLE_ROWS = 10_000


@dataclass(frozen=True)
class SourceFile:
    """One release file, the shape it is in, and (CaD-Inst) the phase it holds."""

    path: Path
    shape: str
    phase: int | None = None


class ReleaseBuilder(datasets.ArrowBasedBuilder):
    """Base of the CaD-Inst and CaD-QA builders.

    Subclasses set ``FEATURES`` and ``SPLIT`` and implement :meth:`rows`, which turns one
    source file into canonical rows and reports problems to the collector.
    """

    FEATURES: ClassVar[datasets.Features]
    SPLIT: ClassVar[str]
    DESCRIPTION: ClassVar[str] = ""
    CITATION: ClassVar[str] = ""

    def __init__(self, *, files: Sequence[SourceFile], **kwargs: Any):
        self.files = list(files)
        super().__init__(**kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=self.DESCRIPTION,
            features=self.FEATURES,
            citation=self.CITATION,
            homepage="https://arxiv.org/abs/2406.09240",
            # No licence here: the rows may be the authors' release, a regenerated set or anyone's files;
            # the dataset card states the licence from the rows' origin (builders.release.card).
        )

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        return [datasets.SplitGenerator(name=self.SPLIT, gen_kwargs={"files": self.files})]

    def rows(self, file: SourceFile, problems: ProblemCollector) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def _generate_tables(self, files: Sequence[SourceFile]) -> Iterator[tuple[Any, pa.Table]]:
        """Arrow tables of ``TABLE_ROWS`` rows while every row so far is valid.

        After the first problem nothing more is yielded but reading goes on, so the user gets
        every problem of every file at once; ``datasets`` then discards the partial split.
        """
        problems = ProblemCollector()
        schema = self.FEATURES.arrow_schema
        for file_index, file in enumerate(files):
            batch: list[dict[str, Any]] = []
            rows = 0
            for row in self.rows(file, problems):
                rows += 1
                if problems:
                    batch.clear()
                    continue
                batch.append(row)
                if len(batch) == TABLE_ROWS:
                    yield (file_index, row_key(file_index, batch)), pa.Table.from_pylist(batch, schema=schema)
                    batch = []
            if batch and not problems:
                yield (file_index, row_key(file_index, batch)), pa.Table.from_pylist(batch, schema=schema)
            if rows == 0 and not problems:  # else datasets reports an empty split in its own words
                problems.add(str(file.path), None, "no rows in this file")
        problems.raise_if_any()


def row_key(file_index: int, batch: list[dict[str, Any]]) -> str:
    first = batch[0]
    return f"{file_index}:{first.get('id', first.get('question_id'))}"


def find_files(root: Path, patterns: Sequence[str]) -> list[Path]:
    """Files under ``root`` matching any of ``patterns``, in pattern order, without repeats."""
    found: list[Path] = []
    for pattern in patterns:
        found += sorted(Path(p) for p in glob.glob(str(root / pattern), recursive=True) if Path(p).is_file())
    return list(dict.fromkeys(found))


def discover_files(
    source: str | os.PathLike,
    patterns: dict[str, dict[Any, tuple[str, ...]]],
    parts: Sequence[Any],
    *,
    revision: str | None,
    shape: str,
    what: str,
) -> list[SourceFile]:
    """The files of every part (phase) in the first shape, in ``patterns`` order, that has them all.

    ``source`` is a folder or a Hub repo id; for a repo only the shape's files are downloaded.
    """
    if shape != "auto" and shape not in patterns:
        raise ValueError(f"unknown shape {shape!r}; choose auto or one of {', '.join(patterns)}")
    shapes = list(patterns) if shape == "auto" else [shape]
    local = Path(source).expanduser()
    for candidate in shapes:
        wanted = [p for part in parts for p in patterns[candidate][part]]
        root = local if local.is_dir() else resolve_source(source, revision=revision, allow_patterns=wanted)
        files = [
            SourceFile(path, candidate, part) for part in parts for path in find_files(root, patterns[candidate][part])
        ]
        if {file.phase for file in files} == set(parts):
            return files
    expected = "; ".join(f"{s}: {', '.join(p for part in parts for p in patterns[s][part])}" for s in shapes)
    raise FileNotFoundError(f"no {what} files in {str(source)!r}; expected one of: {expected}")


def load_release(
    builder_class: type[ReleaseBuilder],
    files: Sequence[SourceFile],
    *,
    config: str | None,
    image_roots: str | os.PathLike | Sequence[str | os.PathLike] | None,
    on_missing: OnMissing,
    streaming: bool,
    cache_dir: str | os.PathLike | None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Build (or reuse the content-keyed cache of) ``files`` and return the split's dataset."""
    builder = make_builder(builder_class, files, config=config, cache_dir=cache_dir)
    try:
        if streaming:
            dataset = builder.as_streaming_dataset(split=builder_class.SPLIT)
        else:
            builder.download_and_prepare()
            dataset = builder.as_dataset(split=builder_class.SPLIT)
    except datasets.exceptions.DatasetGenerationError as error:
        if isinstance(error.__cause__, ReleaseValidationError):
            raise error.__cause__ from None
        raise
    if image_roots is not None:
        dataset = attach_images(dataset, image_roots, on_missing=on_missing)
    return dataset


def make_builder(
    builder_class: type[ReleaseBuilder],
    files: Sequence[SourceFile],
    *,
    config: str | None,
    cache_dir: str | os.PathLike | None,
) -> ReleaseBuilder:
    if not files:
        raise FileNotFoundError("no source files to build from")
    key = content_hash(
        [file.path for file in files], *(f"{file.shape}:{file.phase}" for file in files), str(builder_class.VERSION)
    )
    return builder_class(
        files=files, config_name=config, hash=key, cache_dir=str(cache_dir) if cache_dir is not None else None
    )
