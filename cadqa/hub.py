"""``cadvi build cadqa``: CaD-QA turned into the Hub layout with a generated card."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import datasets

from builders.release.hub import CardSection, HubConfig, build_hub_folder
from builders.release.origin import CITATION, package_version
from builders.release.stats import bars, distinct_images, histogram, mean
from builders.summary import opening_words, word_count
from cadqa.builder import load, source_files

CARD_DATA = {
    "license": "mit",
    "language": ["en"],
    "pretty_name": "CaD-QA",
    "task_categories": ["visual-question-answering"],
    "tags": ["multi-image", "benchmark", "comparison"],
    "size_categories": ["1K<n<10K"],
}
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
) -> datasets.Dataset:
    """Build CaD-QA from ``source`` into ``out`` (one config, split ``test``)."""
    files = source_files(source, revision=revision, shape=shape)
    dataset = load(source, revision=revision, shape=shape, cache_dir=cache_dir)

    def sections(plots: Path) -> list[CardSection]:
        return [question_section(dataset, plots)]

    build_hub_folder(
        Path(out),
        [HubConfig("default", {"test": dataset}, "data", default=True)],
        card_template="card_cadqa.md.jinja",
        card_data=CARD_DATA,
        card_variables={
            "version": package_version(),
            "repo_id": repo_id,
            "citation": CITATION,
            "origin": f"{source} — {', '.join(f'{f.path.name} ({f.shape})' for f in files)}",
        },
        sections=sections,
        overwrite=overwrite,
    )
    return dataset


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
