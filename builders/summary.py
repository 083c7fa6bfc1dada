"""Reading CaD summaries: the ``Commonalities:`` / ``Differences:`` text the LLM writes.

One parser serves the dataset statistics and the generation pipeline's output validation.
Items are labelled by the six axes of the paper when the model labelled them
(``1. Object types: ...``); unknown labels are kept as ``other`` and unlabelled items have no
axis.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

AXES: tuple[str, ...] = (
    "object types",
    "object attributes",
    "counting the objects",
    "object actions",
    "object locations",
    "relative positions between objects",
)
OTHER = "other"

_SECTION = re.compile(r"^[\s*#_]*(commonalities|similarities|differences)\b[\s*_]*:?[\s*_]*", re.I | re.M)
_ITEM_START = re.compile(r"^[ \t]*(?:\d{1,2}[.)]|[-*\u2022])[ \t]+", re.M)
_LABEL = re.compile(r"^[\s*_]*([A-Za-z][A-Za-z ,/&'-]{1,60}?)[\s*_]*:[\s*_]*(?=\S)")
_WORD = re.compile(r"[A-Za-z0-9']+")

# Checked in order: "relative positions between objects" also mentions "objects".
_AXIS_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("relative positions between objects", ("relative", "position", "arrangement", "spatial")),
    ("counting the objects", ("count", "number", "quantit")),
    ("object locations", ("location", "setting", "place", "scene", "environment")),
    ("object actions", ("action", "activit", "pose", "doing")),
    ("object attributes", ("attribute", "color", "colour", "appearance", "size", "shape", "material")),
    ("object types", ("type", "kind", "categor")),
)


@dataclass(frozen=True)
class AxisItem:
    """One item of a section: its axis (None when unlabelled), its text without the label, and the label as the
    model wrote it (phase 2 keeps free-form labels such as ``Food:``; not part of equality)."""

    axis: str | None
    text: str
    label: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class CadSummary:
    commonalities: str
    differences: str
    common_items: list[AxisItem] = field(default_factory=list)
    difference_items: list[AxisItem] = field(default_factory=list)

    @property
    def axes(self) -> list[str]:
        """Every axis label used, in both sections (what Fig. 3(c) of the paper counts)."""
        return [item.axis for item in (*self.common_items, *self.difference_items) if item.axis]


def normalize_axis(label: str) -> str:
    """Map a free-form item label onto one of :data:`AXES`, or :data:`OTHER`."""
    lowered = label.lower()
    for axis, keywords in _AXIS_KEYWORDS:
        if any(keyword in lowered for keyword in keywords):
            return axis
    return OTHER


def split_items(section: str) -> list[AxisItem]:
    """Items of a section: numbered or bulleted entries, or the paragraph as one item."""
    section = section.strip()
    if not section:
        return []
    starts = [match.start() for match in _ITEM_START.finditer(section)]
    if starts and starts[0] > 0 and section[: starts[0]].strip():
        starts.insert(0, 0)
    chunks = [section[a:b] for a, b in zip(starts, [*starts[1:], len(section)], strict=True)] if starts else [section]
    items = []
    for chunk in chunks:
        text = _ITEM_START.sub("", chunk, count=1).strip()
        if not text:
            continue
        label = _LABEL.match(text)
        if label and len(label.group(1).split()) <= 6:
            written = label.group(1).strip()
            items.append(AxisItem(normalize_axis(written), text[label.end() :].strip(), written))
        else:
            items.append(AxisItem(None, text))
    return items


def parse_summary(text: str) -> CadSummary | None:
    """Split a summary into its two sections; None when either header is missing."""
    headers: dict[str, re.Match[str]] = {}
    for match in _SECTION.finditer(text):
        headers.setdefault(match.group(1).lower(), match)
    common = headers.get("commonalities") or headers.get("similarities")
    differences = headers.get("differences")
    if common is None or differences is None or differences.start() < common.start():
        return None
    common_text = text[common.end() : differences.start()].strip()
    difference_text = text[differences.end() :].strip()
    return CadSummary(common_text, difference_text, split_items(common_text), split_items(difference_text))


def word_count(text: str) -> int:
    """Whitespace-separated words, as summary lengths are usually counted (157 in the paper)."""
    return len(text.split())


def opening_words(text: str, n: int) -> str:
    """The first ``n`` words, lower-cased: the "characteristics" of Fig. 3(a)/(b) in the paper."""
    return " ".join(match.group().lower() for match in itertools.islice(_WORD.finditer(text), n))


_IMAGE_1 = re.compile(r"\b(?:image\s*(?:1|one)|first\s+image)\b", re.I)
_IMAGE_2 = re.compile(r"\b(?:image\s*(?:2|two)|second\s+image)\b", re.I)


@dataclass(frozen=True)
class SummaryBounds:
    """Length bounds (whitespace words) of an acceptable summary.

    Ours, not the paper's: the release averages 157 words; anything under ``min_words`` has
    no room for both sections and anything over ``max_words`` is a rambling or looping model.
    """

    min_words: int = 30
    max_words: int = 600


def check_summary(
    text: str, bounds: SummaryBounds = SummaryBounds(), *, finish_reason: str = "stop"
) -> tuple[CadSummary | None, str | None]:
    """``(summary, None)`` for an acceptable LLM output, ``(None, reason)`` otherwise."""
    if finish_reason == "length":
        return None, "truncated: the model hit max_tokens before finishing"
    words = word_count(text)
    if words < bounds.min_words:
        return None, f"too short: {words} words < {bounds.min_words}"
    if words > bounds.max_words:
        return None, f"too long: {words} words > {bounds.max_words}"
    summary = parse_summary(text)
    if summary is None:
        return None, "missing a 'Commonalities:' or 'Differences:' section (or in the wrong order)"
    if not summary.commonalities or not summary.difference_items:
        return None, "empty 'Commonalities:' or 'Differences:' section"
    if not _IMAGE_1.search(text) or not _IMAGE_2.search(text):
        return None, "does not refer to both images ('Image 1' and 'Image 2')"
    return summary, None


def structured_with_labels(summary: CadSummary) -> dict[str, object]:
    """:func:`structured` plus each difference's ``label`` as written (None when unlabelled): phase 2's form."""
    return {
        "commonalities": summary.commonalities,
        "differences": [
            {"label": item.label, "axis": item.axis, "text": item.text} for item in summary.difference_items
        ],
    }


def structured(summary: CadSummary) -> dict[str, object]:
    """``{commonalities, differences: [{axis, text}]}``: the record form of a summary.

    ``axis`` is one of :data:`AXES`, :data:`OTHER` for an unknown label, or None when the
    model did not label the item.
    """
    return {
        "commonalities": summary.commonalities,
        "differences": [{"axis": item.axis, "text": item.text} for item in summary.difference_items],
    }
