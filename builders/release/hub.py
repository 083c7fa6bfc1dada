"""The Hub layout: parquet shards per config, a generated dataset card, and publishing.

A folder written here is what ``datasets.load_dataset(folder_or_repo, config)`` reads with
no code at all (dataset scripts are gone from ``datasets``): the card's YAML ``configs:``
maps each config to its parquet files and ``dataset_info:`` is generated from the very
``Features`` the builders use. Image bytes are never written or uploaded (image licences).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from builders.outputs import atomic_output_dir
from prompts import render

MAX_SHARD_BYTES = 256 * 1024 * 1024
# Small row groups: ``datasets`` reads a parquet file one row group per batch, so ~100 MB
# default groups set the peak memory of every later ``load_dataset``.
ROW_GROUP_ROWS = 10_000
UPLOAD_PATTERNS = (
    "README.md",
    "data/**/*.parquet",
    "plots/*.png",
    "audit/contamination.json",
    "audit/contamination.md",
)


@dataclass(frozen=True)
class HubConfig:
    """One config of the Hub layout: its splits' data, or the patterns of other configs' files."""

    name: str
    splits: dict[str, datasets.Dataset]
    data_dir: str
    default: bool = False
    reuse: Sequence[str] = ()  # configs whose files this one lists instead of writing its own


def write_parquet_shards(dataset: datasets.Dataset, folder: Path, split: str) -> list[Path]:
    """``<split>-0000i-of-0000n.parquet`` shards of at most ~256 MB of Arrow data each."""
    folder.mkdir(parents=True, exist_ok=True)
    num_shards = max(1, math.ceil(dataset.data.nbytes / MAX_SHARD_BYTES))
    paths = []
    for index in range(num_shards):
        path = folder / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
        dataset.shard(num_shards, index, contiguous=True).to_parquet(str(path), batch_size=ROW_GROUP_ROWS)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class CardSection:
    """A statistics section of a dataset card: a table and the plots under ``plots/``."""

    title: str
    table: list[tuple[str, str]]
    plots: list[str]


def build_hub_folder(
    out: Path,
    configs: Sequence[HubConfig],
    *,
    card_template: str,
    card_data: dict[str, Any],
    card_variables: dict[str, Any],
    sections: Callable[[Path], list[CardSection]],
    overwrite: bool = False,
    sources: Sequence[str | Path] = (),
    extra_files: Mapping[str, Path] | None = None,
) -> Path:
    """Write a complete Hub layout at ``out``, atomically (see :func:`builders.outputs.atomic_output_dir`).

    ``sections`` draws its plots into the folder it is given and returns the card's sections; ``sources``
    are the files or folders read, which ``out`` must not be or contain; ``extra_files`` (name in ``out`` ->
    file) are copied in (a contamination report).
    """
    with atomic_output_dir(out, overwrite=overwrite, sources=sources, kind="dataset build") as staging:
        for name, source in (extra_files or {}).items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staging / name)
        card_sections = sections(staging / "plots")
        for section in card_sections:
            section.plots[:] = [Path(p).relative_to(staging).as_posix() for p in section.plots]
        write_hub_layout(
            staging,
            configs,
            card_template=card_template,
            card_data=card_data,
            card_variables={**card_variables, "sections": card_sections},
        )
    return Path(out)


def write_hub_layout(
    out: Path,
    configs: Sequence[HubConfig],
    *,
    card_template: str,
    card_data: dict[str, Any],
    card_variables: dict[str, Any],
) -> None:
    """Write every config's parquet shards under ``out/data`` and the card ``out/README.md``."""
    metadata: dict[str, dict[str, Any]] = {}
    infos: dict[str, DatasetInfo] = {}
    by_name = {config.name: config for config in configs}
    for config in configs:
        files: dict[str, list[str]] = {}
        split_dict = SplitDict()
        features = None
        sources = [by_name[name] for name in config.reuse] or [config]
        for split in {split for source in sources for split in source.splits}:
            files[split] = [f"{source.data_dir}/{split}-*.parquet" for source in sources if split in source.splits]
            parts = [source.splits[split] for source in sources if split in source.splits]
            split_dict.add(
                SplitInfo(
                    name=split, num_bytes=sum(p.data.nbytes for p in parts), num_examples=sum(len(p) for p in parts)
                )
            )
            features = parts[0].features
        if not config.reuse:
            for split, dataset in config.splits.items():
                write_parquet_shards(dataset, out / config.data_dir, split)
        entry: dict[str, Any] = {
            "data_files": [
                {"split": split, "path": paths[0] if len(paths) == 1 else paths}
                for split, paths in sorted(files.items())
            ]
        }
        if config.default:
            entry["default"] = True
        metadata[config.name] = entry
        infos[config.name] = DatasetInfo(
            features=features, splits=split_dict, dataset_size=sum(s.num_bytes for s in split_dict.values())
        )
    data = DatasetCardData(**card_data)
    DatasetInfosDict(infos).to_dataset_card_data(data)
    MetadataConfigs(metadata).to_dataset_card_data(data)
    body = render(card_template, **card_variables)
    DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}").save(out / "README.md")


@dataclass(frozen=True)
class PublishPlan:
    repo_id: str
    revision: str | None
    private: bool
    files: list[tuple[str, int]]  # (path in the repo, size in bytes)


def plan_publish(folder: Path, repo_id: str, *, revision: str | None = None, private: bool = False) -> PublishPlan:
    """What ``publish`` would upload; refuses folders that are not a Hub layout or hold image bytes."""
    folder = Path(folder)
    if not (folder / "README.md").is_file() or not list(folder.glob("data/**/*.parquet")):
        raise FileNotFoundError(
            f"{str(folder)!r} is not a built Hub layout (README.md + data/**/*.parquet); run `cadvi build` first"
        )
    files = []
    for pattern in UPLOAD_PATTERNS:
        for path in sorted(folder.glob(pattern)):
            if path.suffix == ".parquet":
                refuse_image_bytes(path)
            files.append((path.relative_to(folder).as_posix(), path.stat().st_size))
    return PublishPlan(repo_id, revision, private, files)


def refuse_image_bytes(path: Path) -> None:
    """Raise when a parquet file carries binary columns (image bytes must never be published)."""
    schema = pq.read_schema(path)
    binary = [field.name for field in schema if "binary" in str(field.type) or "bytes" in str(field.type)]
    features = datasets.Features.from_arrow_schema(schema)
    images = [name for name, feature in features.items() if "Image(" in repr(feature)]
    if binary or images:
        raise ValueError(
            f"{path}: columns {sorted(set(binary + images))} hold image data; publish file names only (image licences)"
        )


def publish(
    folder: Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    token: str | None = None,
) -> PublishPlan:
    """Upload a built Hub layout with huggingface_hub (parquet, card and plots only)."""
    plan = plan_publish(folder, repo_id, revision=revision, private=private)
    if dry_run:
        return plan
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
    api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="dataset",
        revision=revision,
        allow_patterns=list(UPLOAD_PATTERNS),
        commit_message="Upload with cadvi publish",
    )
    return plan
