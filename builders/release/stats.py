"""Statistics and plots for dataset cards (the paper's Fig. 3, recomputed from the data).

Pure functions over columns; plotting uses matplotlib's non-interactive backend so builds run
on headless machines.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pyarrow.compute as pc

from builders.summary import AXES, OTHER, opening_words, parse_summary, word_count


@dataclass
class SummaryStatistics:
    """Lengths, axis counts and opening words of a collection of CaD summaries."""

    summary_words: list[int] = field(default_factory=list)
    common_words: list[int] = field(default_factory=list)
    difference_words: list[int] = field(default_factory=list)
    axis_counts: Counter[str] = field(default_factory=Counter)
    openings: Counter[str] = field(default_factory=Counter)
    unparsed: int = 0

    @classmethod
    def of(cls, summaries: Iterable[str], opening_n: int = 2) -> SummaryStatistics:
        stats = cls()
        for text in summaries:
            stats.summary_words.append(word_count(text))
            parsed = parse_summary(text)
            if parsed is None:
                stats.unparsed += 1
                continue
            stats.common_words.append(word_count(parsed.commonalities))
            stats.difference_words.append(word_count(parsed.differences))
            stats.axis_counts.update(parsed.axes)
            for item in (*parsed.common_items, *parsed.difference_items):
                stats.openings[opening_words(item.text, opening_n)] += 1
        return stats

    def table(self) -> list[tuple[str, str]]:
        return [
            ("summaries", f"{len(self.summary_words):,}"),
            ("mean summary length (words)", mean(self.summary_words)),
            ("mean commonalities length (words)", mean(self.common_words)),
            ("mean differences length (words)", mean(self.difference_words)),
            ("summaries without both sections", f"{self.unparsed:,}"),
            *((f"items on axis '{axis}'", f"{self.axis_counts[axis]:,}") for axis in (*AXES, OTHER)),
        ]

    def plot(self, folder: Path, prefix: str) -> list[Path]:
        return [
            histogram(
                {"summary": self.summary_words}, folder / f"{prefix}_summary_length.png", "Summary length", "words"
            ),
            histogram(
                {"commonalities": self.common_words, "differences": self.difference_words},
                folder / f"{prefix}_section_lengths.png",
                "Commonalities vs differences length",
                "words",
            ),
            bars(
                {axis: self.axis_counts[axis] for axis in (*AXES, OTHER)},
                folder / f"{prefix}_axis_counts.png",
                "Axis counts in CaD summaries",
            ),
            bars(
                dict(self.openings.most_common(20)),
                folder / f"{prefix}_opening_words.png",
                "Most frequent opening words of summary items",
            ),
        ]


def distinct_images(dataset: datasets.Dataset) -> int:
    """Distinct file names in the ``image`` column (a list column of two names per row)."""
    return pc.count_distinct(pc.list_flatten(dataset.data.column("image"))).as_py()


def mean(values: Sequence[float]) -> str:
    return f"{statistics.fmean(values):.1f}" if values else "n/a"


def histogram(series: dict[str, Sequence[float]], path: Path, title: str, xlabel: str) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for label, values in series.items():
        axes.hist(values, bins=40, alpha=0.6, label=label)
    axes.set(title=title, xlabel=xlabel, ylabel="count")
    if len(series) > 1:
        axes.legend()
    return _save(figure, path)


def bars(counts: dict[str, int], path: Path, title: str) -> Path:
    plt = _pyplot()
    labels = list(counts)[::-1]
    figure, axes = plt.subplots(figsize=(6, 0.3 * len(labels) + 1.2))
    axes.barh(labels, [counts[label] for label in labels])
    axes.set(title=title, xlabel="count")
    return _save(figure, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    _pyplot().close(figure)
    return path
