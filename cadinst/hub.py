"""``cadvi build cadinst``: the release turned into the Hub layout with a generated card."""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import pyarrow.compute as pc

from builders.export import read_provenance
from builders.outputs import refuse_output_over_sources
from builders.release.audit import read_audit
from builders.release.card import describe_origin, size_category
from builders.release.hub import CardSection, HubConfig, build_hub_folder
from builders.release.origin import CITATION, HUB_REPO, HUB_REVISION, package_version
from builders.release.stats import SummaryStatistics, distinct_images, mean
from cadinst.builder import load, source_files

CARD_DATA = {
    "language": ["en"],
    "pretty_name": "CaD-Inst",
    "task_categories": ["image-text-to-text"],
    "tags": ["multi-image", "instruction-tuning", "llava", "comparison"],
}
# The card's licence by origin: the authors' MIT covers their release; regenerated rows are the user's
# to license (within the model's and the captions' terms); files of unknown origin are unknown.
LICENCES = {"release": "mit", "regenerated": "other", "files": "unknown"}


def build(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    revision: str | None = None,
    shape: str = "auto",
    repo_id: str = "ORG/CaD-Inst",
    overwrite: bool = False,
    cache_dir: str | os.PathLike | None = None,
    license: str | None = None,
    audit: str | os.PathLike | None = None,
) -> dict[str, datasets.Dataset]:
    """Build every phase found in ``source`` into ``out`` (configs ``phase1``, ``phase2``, ``all``).

    The card states what the rows are: the original release (the Hub repo), a regenerated export (its
    ``cadvi_provenance.json``: model, templates, caption sources), or files of unknown origin; its licence
    follows (MIT, ``other``, ``unknown``) unless ``license`` (an SPDX id or a Hub licence name) is given.
    """
    refuse_output_over_sources(out, [source], what="dataset build")  # before any work
    report = read_audit(audit, dataset="cadinst") if audit is not None else None
    phases: dict[str, datasets.Dataset] = {}
    files = []
    for config in ("phase1", "phase2"):
        try:
            found = source_files(source, config, revision=revision, shape=shape)
        except FileNotFoundError:
            continue
        phases[config] = load(source, config, revision=revision, shape=shape, cache_dir=cache_dir)
        files += found
    if not phases:
        source_files(source, "phase1", revision=revision, shape=shape)  # raises with the expected layout
    configs = [HubConfig(name, {"train": dataset}, f"data/{name}") for name, dataset in phases.items()]
    configs.append(HubConfig("all", {}, "data", default=True, reuse=list(phases)))
    summary = [{"name": name, "rows": len(ds), "images": distinct_images(ds)} for name, ds in phases.items()]
    if len(phases) > 1:
        summary.append(
            {
                "name": "all",
                "rows": sum(len(ds) for ds in phases.values()),
                "images": distinct_images(datasets.concatenate_datasets(list(phases.values()))),
            }
        )

    def sections(plots: Path) -> list[CardSection]:
        return [phase_section(name, dataset, plots) for name, dataset in phases.items()]

    local = Path(source).expanduser()
    provenance = read_provenance(local) if local.is_dir() else None
    if revision is None and str(source) == HUB_REPO:
        revision = HUB_REVISION
    origin = describe_origin(source, files, revision=revision, provenance=provenance)
    rows = sum(len(ds) for ds in phases.values())
    build_hub_folder(
        Path(out),
        configs,
        card_template="card_cadinst.md.jinja",
        card_data={**CARD_DATA, "license": license or LICENCES[origin.kind], "size_categories": [size_category(rows)]},
        card_variables={
            "version": package_version(),
            "origin": origin,
            "configs": summary,
            "phases": list(phases),
            "rows": rows,
            "repo_id": repo_id,
            "citation": CITATION,
            "audit": report,
        },
        sections=sections,
        overwrite=overwrite,
        sources=[source],
        extra_files=report.files if report else None,
    )
    return phases


def summaries(dataset: datasets.Dataset) -> list[str]:
    """The first gpt answer of every row: the CaD summary."""
    turns = pc.list_element(dataset.data.column("conversations"), 1)
    return pc.struct_field(turns, "value").to_pylist()


def phase_section(name: str, dataset: datasets.Dataset, plots: Path) -> CardSection:
    stats = SummaryStatistics.of(summaries(dataset))
    turns = pc.list_value_length(dataset.data.column("conversations")).to_pylist()
    scores = [s for s in dataset.data.column("clip_sim_score").to_pylist() if s is not None]
    table = [
        ("rows", f"{len(dataset):,}"),
        ("distinct images", f"{distinct_images(dataset):,}"),
        ("mean turns per conversation", mean(turns)),
        ("rows with clip_sim_score", f"{len(scores):,}"),
        *stats.table(),
    ]
    return CardSection(title=name, table=table, plots=[str(p) for p in stats.plot(plots, name)])
