"""``cadvi build cadqa``: CaD-QA turned into the Hub layout with a generated card."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path

import datasets

from builders.export import read_provenance
from builders.outputs import refuse_output_over_sources
from builders.release.audit import read_audit
from builders.release.card import describe_origin, size_category
from builders.release.hub import CardSection, HubConfig, build_hub_folder
from builders.release.origin import CADQA_SHA256, CITATION, HUB_REPO, HUB_REVISION, package_version
from builders.release.sources import file_sha256
from builders.release.stats import bars, distinct_images, histogram, mean
from builders.summary import opening_words, word_count
from cadqa.builder import load, source_files

CARD_DATA = {
    "language": ["en"],
    "pretty_name": "CaD-QA",
    "task_categories": ["visual-question-answering"],
    "tags": ["multi-image", "benchmark", "comparison"],
}
LICENCES = {"release": "mit", "regenerated": "other", "files": "unknown"}
QUESTION_OPENING_WORDS = 3


def build(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    revision: str | None = None,
    shape: str = "auto",
    repo_id: str = "ORG/CaD-QA",
    overwrite: bool = False,
    cache_dir: str | os.PathLike | None = None,
    license: str | None = None,
    audit: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Build CaD-QA from ``source`` into ``out`` (one config, split ``test``).

    The card calls the rows the official benchmark only when they are (the Hub repo, or a file whose
    sha256 is the official one); its licence follows (MIT or ``unknown``) unless ``license`` is given.
    """
    refuse_output_over_sources(out, [source], what="dataset build")  # before any work
    report = read_audit(audit, dataset="cadqa") if audit is not None else None
    files = source_files(source, revision=revision, shape=shape)
    dataset = load(source, revision=revision, shape=shape, cache_dir=cache_dir)

    local = Path(source).expanduser()
    provenance = read_provenance(local) if local.is_dir() else None

    def sections(plots: Path) -> list[CardSection]:
        found = [question_section(dataset, plots)]
        if provenance and provenance.get("statistics", {}).get("official"):
            found.append(comparison_section(provenance["statistics"]))
        return found

    if revision is None and str(source) == HUB_REPO:
        revision = HUB_REVISION
    origin = describe_origin(source, files, revision=revision, provenance=provenance)
    # The official file is known by its bytes, wherever it lies (a local copy, the Hub's jsonl).
    official = origin.is_release or all(f.shape == "jsonl" and file_sha256(f.path) == CADQA_SHA256 for f in files)
    if official and not origin.is_release:
        origin = dataclasses.replace(origin, kind="release")
    build_hub_folder(
        Path(out),
        [HubConfig("default", {"test": dataset}, "data", default=True)],
        card_template="card_cadqa.md.jinja",
        card_data={
            **CARD_DATA,
            "license": license or LICENCES[origin.kind],
            "size_categories": [size_category(len(dataset))],
        },
        card_variables={
            "version": package_version(),
            "repo_id": repo_id,
            "citation": CITATION,
            "audit": report,
            "origin": origin,
            "rows": len(dataset),
        },
        sections=sections,
        overwrite=overwrite,
        sources=[source],
        extra_files=report.files if report else None,
    )
    return dataset


def comparison_section(statistics: dict) -> CardSection:
    """These questions beside the official file's (``cadvi export cadqa --official``): how close a regeneration is."""
    ours, official = statistics["ours"], statistics["official"]

    def share(stats: dict, key: str) -> str:
        entry = stats[key]
        return f"{entry['count']:,} ({100 * entry['count'] / max(stats['rows'], 1):.1f}%)"

    rows = [("questions", lambda s: f"{s['rows']:,}")]
    rows += [("question words (mean)", lambda s: f"{s['question_words']['mean']:.1f}")]
    rows += [("answer words (mean)", lambda s: f"{s['answer_words']['mean']:.1f}")]
    rows += [("single-image questions", lambda s: share(s, "single_image"))]
    rows += [
        (label, lambda s, key=key: share(s, key))
        for label, key in (
            ("answers naming Image 1/Image 2", "answers_naming_image_1_2"),
            ("answers starting with Yes", "answers_yes"),
            ("answers starting with No", "answers_no"),
        )
    ]
    rows += [("top opening word", lambda s: s["openings"]["first_word"][0]["text"])]
    table = [(label, f"ours {value(ours)} · official {value(official)}") for label, value in rows]
    return CardSection(title="compared with the official file", table=table, plots=[])


def question_section(dataset: datasets.Dataset, plots: Path) -> CardSection:
    answers = [word_count(a) for a in dataset["answer"]]
    uses = Counter(name for pair in dataset["image"] for name in pair)
    openings = Counter(opening_words(q, QUESTION_OPENING_WORDS) for q in dataset["question"])
    table = [
        ("questions", f"{len(dataset):,}"),
        ("distinct images", f"{distinct_images(dataset):,}"),
        ("most uses of one image", f"{max(uses.values()):,}"),
        ("mean question length (words)", mean([word_count(q) for q in dataset["question"]])),
        ("mean answer length (words)", mean(answers)),
    ]
    paths = [
        histogram({"answer": answers}, plots / "answer_length.png", "Answer length", "words"),
        bars(
            dict(openings.most_common(20)),
            plots / "question_types.png",
            f"Question types (first {QUESTION_OPENING_WORDS} words)",
        ),
    ]
    return CardSection(title="test", table=table, plots=[str(p) for p in paths])
