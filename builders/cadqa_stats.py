"""Statistics of a CaD-QA question file, to set a generated CaD-QA beside the official one.

:func:`qa_statistics` takes rows in the release shape (``{"image": [a, b], "text": "Image 1: <image>\\n
Image 2: <image>\\n<question>", "answer", "question_id"}``; a row with ``question`` or ``prompt``
instead of ``text``, as the CaD-QA builder yields, works too) and returns a JSON-ready dict;
:func:`official_statistics` reads and validates a JSONL file first; :func:`statistics_table` renders
two such dicts side by side in Markdown.

Rules (all on whitespace-separated words, names matched case-insensitively):

- *openings*: the first word and the first two words of the question, trailing punctuation
  removed, the ``top`` most frequent with counts and shares of all questions.
- *single-image question* (:data:`SINGLE_IMAGE_RULE`): the question names exactly one of
  ``Image 1`` / ``Image 2``. On the official file this gives 2,916 of 7,520, the paper's own
  number exactly, so it is most likely how the paper counted. It is literal: "Both images have
  trees. Describe the tree in Image 2" counts as single, "the first image" does not count at all.
- *single-image, broad* (:data:`BROAD_SINGLE_IMAGE_RULE`): the question refers to exactly one image
  by any of ``Image 1``/``Image 2``/``image one``/``the first (second) image|picture|photo``, and not
  to both (``both``, ``two``/``the``/``these`` ``images``, ``each``/``either image``, ``the other image``/``one``).
  On the official file: 3,372 (it adds the 461 questions saying "the first/second image" and drops 5
  that also speak of both images).
- *answers naming Image 1/Image 2*: the answer contains ``Image 1`` or ``Image 2``; *naming the
  first/second image*: it contains ``first``/``second`` + ``image``/``picture``/``photo``.
- *Yes / No answers*: the answer's first word, punctuation stripped, is ``yes`` / ``no``.
- *length percentiles*: linear interpolation between order statistics (numpy's default).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from builders.release.sources import iter_json_records
from builders.release.validate import PAIR_PREFIX, ProblemCollector, cadqa_row_problems

TOP_OPENINGS = 10
PUNCTUATION = ".,;:!?\"'()[]"

SINGLE_IMAGE_RULE = "names exactly one of 'Image 1' / 'Image 2' (case-insensitive)"
BROAD_SINGLE_IMAGE_RULE = (
    "refers to exactly one image (Image 1/2, image one/two, the first/second image|picture|photo) "
    "and not to both (both, two/the/these images, each/either image, the other image|one)"
)

_IMAGE_1 = re.compile(r"\bimage\s+1\b", re.IGNORECASE)
_IMAGE_2 = re.compile(r"\bimage\s+2\b", re.IGNORECASE)
_PICTURE = r"(?:image|picture|photo|photograph)"
_BROAD_1 = re.compile(rf"\bimage\s+(?:1|one)\b|\bfirst\s+{_PICTURE}\b", re.IGNORECASE)
_BROAD_2 = re.compile(rf"\bimage\s+(?:2|two)\b|\bsecond\s+{_PICTURE}\b", re.IGNORECASE)
_BOTH = re.compile(
    rf"\bboth\b|\b(?:two|the|these|all|both)\s+{_PICTURE}s\b"
    rf"|\b(?:each|either)\s+{_PICTURE}\b|\bthe\s+other\s+(?:one|{_PICTURE})\b",
    re.IGNORECASE,
)
_ORDINAL_IMAGE = re.compile(rf"\b(?:first|second)\s+{_PICTURE}\b", re.IGNORECASE)


def question_of(row: Mapping[str, Any]) -> str:
    """The question of a CaD-QA row: ``question``, or ``text``/``prompt`` without the image prefix."""
    question = row.get("question")
    if isinstance(question, str):
        return question
    for key in ("text", "prompt"):
        text = row.get(key)
        if isinstance(text, str):
            return text[len(PAIR_PREFIX) :] if text.startswith(PAIR_PREFIX) else text
    raise ValueError(f"a CaD-QA row needs 'text', 'prompt' or 'question', got keys {sorted(row)}")


def is_single_image_question(question: str) -> bool:
    """:data:`SINGLE_IMAGE_RULE`: the question names exactly one of ``Image 1`` / ``Image 2``."""
    return bool(_IMAGE_1.search(question)) != bool(_IMAGE_2.search(question))


def is_single_image_question_broad(question: str) -> bool:
    """:data:`BROAD_SINGLE_IMAGE_RULE`: one image named in any wording, and no reference to both."""
    one, two = bool(_BROAD_1.search(question)), bool(_BROAD_2.search(question))
    return one != two and not _BOTH.search(question)


def qa_statistics(rows: Iterable[Mapping[str, Any]], *, top: int = TOP_OPENINGS) -> dict[str, Any]:
    """The statistics of CaD-QA rows (see the module docstring for each rule); a JSON-ready dict."""
    count = 0
    first_words: Counter[str] = Counter()
    first_two: Counter[str] = Counter()
    question_lengths: list[int] = []
    answer_lengths: list[int] = []
    flags: Counter[str] = Counter()
    image_uses: Counter[str] = Counter()
    pairs: set[tuple[str, str]] = set()
    for row in rows:
        question = question_of(row)
        answer = row.get("answer")
        if not isinstance(answer, str):
            raise ValueError(f"row {count + 1}: 'answer' must be a string, got {type(answer).__name__}")
        count += 1
        words = [word.strip(PUNCTUATION) for word in question.split()]
        words = [word for word in words if word]
        if words:
            first_words[words[0]] += 1
            first_two[" ".join(words[:2])] += 1
        question_lengths.append(len(question.split()))
        answer_lengths.append(len(answer.split()))
        flags["single_image"] += is_single_image_question(question)
        flags["single_image_broad"] += is_single_image_question_broad(question)
        flags["answer_names_image_1_2"] += bool(_IMAGE_1.search(answer) or _IMAGE_2.search(answer))
        flags["answer_names_first_second"] += bool(_ORDINAL_IMAGE.search(answer))
        opening = answer.split(maxsplit=1)[0].strip(PUNCTUATION).lower() if answer.strip() else ""
        flags["answer_yes"] += opening == "yes"
        flags["answer_no"] += opening == "no"
        images = row.get("image")
        if isinstance(images, (list, tuple)):
            image_uses.update(str(name) for name in images)
            if len(images) == 2:
                pairs.add((str(images[0]), str(images[1])))

    def share(n: int) -> dict[str, Any]:
        return {"count": n, "share": n / count if count else 0.0}

    def openings(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"text": text, **share(n)} for text, n in counter.most_common(top)]

    return {
        "rows": count,
        "openings": {"first_word": openings(first_words), "first_two_words": openings(first_two)},
        "question_words": _lengths(question_lengths),
        "answer_words": _lengths(answer_lengths),
        "single_image": {**share(flags["single_image"]), "rule": SINGLE_IMAGE_RULE},
        "single_image_broad": {**share(flags["single_image_broad"]), "rule": BROAD_SINGLE_IMAGE_RULE},
        "answers_naming_image_1_2": share(flags["answer_names_image_1_2"]),
        "answers_naming_first_second": share(flags["answer_names_first_second"]),
        "answers_yes": share(flags["answer_yes"]),
        "answers_no": share(flags["answer_no"]),
        "distinct_images": len(image_uses),
        "max_uses_per_image": max(image_uses.values(), default=0),
        "distinct_pairs": len(pairs),
    }


def read_cadqa_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a CaD-QA JSONL file (the release shape), every bad row raised at once (``file:row``)."""
    path = Path(path)
    problems = ProblemCollector()
    if not path.is_file():
        problems.add(str(path), None, "no such CaD-QA question file")
        problems.raise_if_any()
    rows = []
    for number, record in iter_json_records(path, problems):
        if problems.add_all(str(path), number, cadqa_row_problems(record)):
            rows.append(record)
    if not rows and not problems:
        problems.add(str(path), None, "no questions in this file")
    problems.raise_if_any()
    return rows


def official_statistics(path: str | os.PathLike, *, top: int = TOP_OPENINGS) -> dict[str, Any]:
    """:func:`qa_statistics` of a CaD-QA JSONL file such as the official ``CaD_QA_eval.jsonl``."""
    return qa_statistics(read_cadqa_rows(path), top=top)


def statistics_table(
    ours: Mapping[str, Any],
    official: Mapping[str, Any],
    *,
    ours_label: str = "ours",
    official_label: str = "official",
) -> str:
    """A Markdown table, one metric per row, ``ours`` beside ``official`` (two :func:`qa_statistics` dicts).

    Opening rows are the union of both sides' top openings, in the official file's order; "–"
    means that opening is not in that side's top list.
    """
    lines = [f"| metric | {ours_label} | {official_label} |", "|---|---:|---:|"]

    def add(metric: str, get) -> None:
        lines.append(f"| {metric} | {get(ours)} | {get(official)} |")

    add("questions", lambda s: f"{s['rows']:,}")
    for key, label in (("question_words", "question words"), ("answer_words", "answer words")):
        for stat in ("mean", "median", "p10", "p90"):
            add(f"{label}, {stat}", lambda s, k=key, t=stat: _number(s[k][t]))
    for key, label in (
        ("single_image", "single-image questions (names one of Image 1/Image 2)"),
        ("single_image_broad", "single-image questions, broad rule"),
        ("answers_naming_image_1_2", "answers naming Image 1/Image 2"),
        ("answers_naming_first_second", "answers naming the first/second image"),
        ("answers_yes", "answers starting with Yes"),
        ("answers_no", "answers starting with No"),
    ):
        add(label, lambda s, k=key: _count_share(s[k]))
    add("distinct images", lambda s: f"{s['distinct_images']:,}")
    add("max uses per image", lambda s: f"{s['max_uses_per_image']:,}")
    add("distinct image pairs", lambda s: f"{s['distinct_pairs']:,}")
    for key, label in (("first_word", "opening word"), ("first_two_words", "opening words")):
        mine = {o["text"]: o for o in ours["openings"][key]}
        theirs = {o["text"]: o for o in official["openings"][key]}
        for text in list(theirs) + [t for t in mine if t not in theirs]:
            lines.append(
                f"| {label} “{_cell(text)}” | {_count_share(mine.get(text))} | {_count_share(theirs.get(text))} |"
            )
    return "\n".join(lines) + "\n"


def _lengths(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "p10": 0.0, "p90": 0.0}
    ordered = sorted(values)
    return {
        "mean": statistics.fmean(ordered),
        "median": float(statistics.median(ordered)),
        "p10": _percentile(ordered, 0.10),
        "p90": _percentile(ordered, 0.90),
    }


def _percentile(ordered: Sequence[int], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default ``linear`` method)."""
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def _number(value: float) -> str:
    return f"{value:.1f}"


def _count_share(entry: Mapping[str, Any] | None) -> str:
    return "–" if entry is None else f"{entry['count']:,} ({100 * entry['share']:.1f}%)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Statistics of a CaD-QA question file beside the official one.")
    parser.add_argument("ours", help="a CaD-QA JSONL file (release shape)")
    parser.add_argument("official", help="the official CaD_QA_eval.jsonl")
    args = parser.parse_args(argv)
    print(statistics_table(official_statistics(args.ours), official_statistics(args.official)), end="")


if __name__ == "__main__":
    main()
