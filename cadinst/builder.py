"""The CaD-Inst builder: configs ``phase1``, ``phase2`` and ``all`` from any release shape.

Shapes, in the order ``shape="auto"`` prefers them:

* ``parquet``: this project's Hub layout (``data/phase1/*.parquet``), typed columns;
* ``hub-parquet``: the original Hub parquet (``Phase1/*.parquet``), whose ``image`` and
  ``conversations`` are stringified Python lists, with a stray ``__null_dask_index__`` column;
  phase 1 also has ``clip_sim_score``, kept here;
* ``json``: the original LLaVA JSON arrays (``json_files/phase1_instruct_data_278k.json``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets

from builders.release.builder import ReleaseBuilder, SourceFile, discover_files, load_release
from builders.release.images import OnMissing
from builders.release.origin import CITATION, HUB_REPO, HUB_REVISION
from builders.release.sources import iter_json_records, iter_parquet_records, parquet_column_is_string
from builders.release.validate import ProblemCollector, cadinst_row_problems

CONFIGS: dict[str, tuple[int, ...]] = {"phase1": (1,), "phase2": (2,), "all": (1, 2)}
SHAPES: dict[str, dict[int, tuple[str, ...]]] = {
    "parquet": {1: ("data/phase1/*.parquet",), 2: ("data/phase2/*.parquet",)},
    "hub-parquet": {1: ("Phase1/*.parquet",), 2: ("Phase2/*.parquet",)},
    "json": {1: ("json_files/phase1_*.json", "phase1_*.json"), 2: ("json_files/phase2_*.json", "phase2_*.json")},
}

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "image": datasets.List(datasets.Value("string")),
        "conversations": datasets.List({"from": datasets.Value("string"), "value": datasets.Value("string")}),
        "phase": datasets.Value("int8"),
        "clip_sim_score": datasets.Value("float64"),
    }
)


class CadInstConfig(datasets.BuilderConfig):
    def __init__(self, *, phases: tuple[int, ...], **kwargs: Any):
        super().__init__(**kwargs)
        self.phases = phases


class CadInst(ReleaseBuilder):
    """CaD-Inst as a ``datasets`` builder (instantiate through :func:`load`)."""

    # 1.1.0: image names that leave their root and empty files are refused (a cache of 1.0.0 may hold them).
    VERSION = datasets.Version("1.1.0")
    BUILDER_CONFIG_CLASS = CadInstConfig
    BUILDER_CONFIGS = [  # noqa: RUF012 (datasets reads it as a class attribute)
        CadInstConfig(name=name, phases=phases, version=datasets.Version("1.1.0")) for name, phases in CONFIGS.items()
    ]
    DEFAULT_CONFIG_NAME = "phase1"
    FEATURES = FEATURES
    SPLIT = datasets.Split.TRAIN
    DESCRIPTION = "CaD-Inst: two-image instruction conversations on commonalities and differences."
    CITATION = CITATION

    def rows(self, file: SourceFile, problems: ProblemCollector) -> Iterator[dict[str, Any]]:
        name = str(file.path)
        if file.shape == "json":
            records, optional = iter_json_records(file.path, problems), ()
        elif file.shape == "hub-parquet":
            records = iter_parquet_records(
                file.path, problems, literal_columns=("image", "conversations"), drop_columns=("__null_dask_index__",)
            )
            optional = ("clip_sim_score",)
        else:
            records, optional = iter_parquet_records(file.path, problems), ("clip_sim_score", "phase")
        for number, record in records:
            if not problems.add_all(name, number, cadinst_row_problems(record, optional=optional)):
                continue
            if record.get("phase", file.phase) != file.phase:
                problems.add(name, number, f"'phase' is {record['phase']}, but the file holds phase {file.phase}")
                continue
            problems.check_unique(name, number, "id", f"{file.phase}/{record['id']}")
            yield {
                "id": record["id"],
                "image": record["image"],
                "conversations": [{"from": t["from"], "value": t["value"]} for t in record["conversations"]],
                "phase": file.phase,
                "clip_sim_score": record.get("clip_sim_score"),
            }


def source_files(
    source: str | os.PathLike = HUB_REPO, config: str = "phase1", *, revision: str | None = None, shape: str = "auto"
) -> list[SourceFile]:
    """The release files of ``config`` in ``source`` (a folder, a single file, or a Hub repo id)."""
    if config not in CONFIGS:
        raise ValueError(f"unknown config {config!r}; choose one of {', '.join(CONFIGS)}")
    if revision is None and str(source) == HUB_REPO:
        revision = HUB_REVISION
    local = Path(source).expanduser()
    if local.is_file():
        return [_single_file(local, config, CONFIGS[config], shape)]
    return discover_files(source, SHAPES, CONFIGS[config], revision=revision, shape=shape, what=f"CaD-Inst {config}")


def _single_file(path: Path, config: str, phases: tuple[int, ...], shape: str) -> SourceFile:
    if len(phases) != 1:
        raise ValueError(f"{path} is a single file: load it as config 'phase1' or 'phase2', not {config!r}")
    if shape == "auto":
        if path.suffix == ".parquet":
            shape = "hub-parquet" if parquet_column_is_string(path, "conversations") else "parquet"
        else:
            shape = "json"
    return SourceFile(path, shape, phases[0])


def load(
    source: str | os.PathLike = HUB_REPO,
    config: str = "phase1",
    *,
    image_roots: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    on_missing: OnMissing = "error",
    streaming: bool = False,
    revision: str | None = None,
    shape: str = "auto",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load CaD-Inst ``config`` (``phase1``, ``phase2``, ``all``) from a release in any shape.

    ``image_roots``: image folders tried in order; adds an ``images`` column of decoded
    images. Missing images raise (count and first names) unless ``on_missing="drop"``.
    """
    files = source_files(source, config, revision=revision, shape=shape)
    return load_release(
        CadInst,
        files,
        config=config,
        image_roots=image_roots,
        on_missing=on_missing,
        streaming=streaming,
        cache_dir=cache_dir,
    )
