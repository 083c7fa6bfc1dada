"""The one scorer of the CaD-VI benchmarks: answer parsing, (group) accuracy and bootstrap intervals.

Every lmms-eval task of this package (and the CaD-QA judge and SEED-Bench video tasks) maps its
fields onto these functions; nothing here knows about a particular benchmark.

Why not exact match, as in the original evaluation scripts: a model that answers ``"B. Image 2"``
or ``"The answer is B"`` has answered B, and exact match silently scores it wrong. We parse, and we
count what we could not parse (``unparseable``), so a model that ignores the answer format is visible
in the results instead of looking merely bad. Unparseable answers are scored wrong, like the original.

Why intervals: the benchmarks are small (150 BISON questions, 120 EQBEN groups), so two models a few
points apart are often indistinguishable. Every metric carries a 95% percentile-bootstrap interval;
for group metrics the *groups* are resampled, because the questions of a group are not independent.

Per-sample results (what a task's ``process_results`` returns under each metric name) are dicts:

``{"correct": 0 | 1, "parsed": bool, "answer": <gold key>, "prediction": <parsed key or None>,
"group": <group id, for group metrics>, "category": <for per-category metrics>, ...}``

Summaries (:func:`accuracy_aggregation`, :func:`group_accuracy`) return the dict of :func:`mean_with_ci`:
``value`` (accuracies in percent, like the paper's tables), ``ci_low``, ``ci_high``, ``n`` and
``unparseable``; group summaries add ``n_questions`` and ``partial_groups``.

How lmms-eval gets these as plain numbers (one metric per figure): :mod:`eval_tasks.metrics`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from builders.confidence import bootstrap_ci, mean_with_ci

__all__ = [
    "LETTER_OPTIONS_2",
    "LETTER_OPTIONS_4",
    "TRUE_FALSE_OPTIONS",
    "accuracy_aggregation",
    "accuracy_by",
    "bootstrap_ci",
    "choice_result",
    "filtered",
    "group_accuracy",
    "group_accuracy_by",
    "group_of_question_id",
    "mean_with_ci",
    "parse_choice",
    "select",
]

# Aliases: what a model may write for each option. Single characters ("A") are matched in free text
# only where they are clearly an answer (see parse_choice); longer aliases anywhere, as whole words.
LETTER_OPTIONS_2: dict[str, tuple[str, ...]] = {
    "A": ("A", "Image 1", "first image", "the first one"),
    "B": ("B", "Image 2", "second image", "the second one"),
}
TRUE_FALSE_OPTIONS: dict[str, tuple[str, ...]] = {
    "True": ("True", "yes", "correct"),
    "False": ("False", "no", "incorrect", "not correct"),
}
LETTER_OPTIONS_4: dict[str, tuple[str, ...]] = {
    "A": ("A", "option A"),
    "B": ("B", "option B"),
    "C": ("C", "option C"),
    "D": ("D", "option D"),
}

PERCENT = 100.0

# Markup and chat debris that carries no answer: markdown emphasis/code/headers, end-of-turn tokens.
_DEBRIS = re.compile(r"\*\*|__|`|^#+\s*|</?s>|<\|[^|>]*\|>", re.MULTILINE)
# Punctuation and brackets around a bare answer: "(A)", "A.", "'True'", "[B]:".
_EDGES = re.compile(r"^[\s\"'(\[{<*_]+|[\s\"')\]}>*_.,;:!?]+$")
# Phrases that introduce an answer; removed (repeatedly) from the start of the answer.
_LEAD_IN = re.compile(
    r"^(?:(?:so|thus|therefore|hence)\s*,?\s*)?"
    r"(?:(?:my|the|final|correct|best)\s+)*(?:answer|choice|option|statement)s?"
    r"(?:\s+(?:is|would\s+be|will\s+be))?\s*(?:[:=-]\s*)?"
    r"|^(?:i\s+(?:choose|pick|select|would\s+choose|would\s+say)|it\s+is|it's)\s*:?\s*",
    re.IGNORECASE,
)
# Places where a single letter in free text is an answer: "answer is B", "Answer: B", "option C",
# "(C)", and a letter opening the text followed by a delimiter ("B. Image 2", "C) ...").
_EXPLICIT_LETTER = (
    r"(?i:answer|choice|option)s?\s*(?i:is|would\s+be|will\s+be|:|=|-)?\s*[(\[]?({letters}){after}",
    r"[(\[]({letters})[)\]]",
)
# After an upper-case letter anything but a hyphen/apostrophe may follow ("B because ..."); a
# lower-case one must end the clause, so "Answer: a dog" is not option A.
_AFTER_UPPER = r"\b(?![-'])"
_AFTER_LOWER = r"(?=\s*(?:$|[.,;:!)\]]))"
_LEADING_LETTER = r"^[(\[]?({letters})(?:[).:\]]|\s*$|\s+[-:])"


def _clean(text: str) -> str:
    return " ".join(_DEBRIS.sub(" ", text).split())


def _strip_edges(text: str) -> str:
    return _EDGES.sub("", text)


def _alias_table(options: Mapping[str, Sequence[str]]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(bare-answer alias -> key, free-text alias -> key, single-letter alias -> key), all lowercased.

    A key is always an alias of itself. An alias claimed by two keys is dropped: it cannot decide.
    """
    whole: dict[str, set[str]] = defaultdict(set)
    for key, aliases in options.items():
        for alias in (key, *aliases):
            normalised = " ".join(str(alias).lower().split())
            if normalised:
                whole[normalised].add(key)
    unique = {alias: next(iter(keys)) for alias, keys in whole.items() if len(keys) == 1}
    free = {alias: key for alias, key in unique.items() if len(alias) > 1}
    letters = {alias: key for alias, key in unique.items() if len(alias) == 1}
    return unique, free, letters


def _mentions(text: str, free: Mapping[str, str]) -> set[str]:
    """Keys whose multi-character aliases occur in ``text`` as whole words (longest alias wins)."""
    found: set[str] = set()
    lowered = text.lower()
    taken = [False] * len(lowered)
    for alias in sorted(free, key=len, reverse=True):
        for match in re.finditer(rf"(?<!\w){re.escape(alias)}(?!\w)", lowered):
            span = range(match.start(), match.end())
            if any(taken[i] for i in span):
                continue  # "not correct" must not also count as "correct"
            for i in span:
                taken[i] = True
            found.add(free[alias])
    return found


def parse_choice(text: str | None, options: Mapping[str, Sequence[str]]) -> str | None:
    """The option key that ``text`` answers, or ``None`` if it answers none or several.

    Tried in order, the first tier that decides wins:

    1. the whole answer, without markdown, brackets, trailing punctuation and lead-ins such as
       "The answer is" / "Answer:" / "Option", is an alias (``"(A)"``, ``"a"``, ``"True."``, ``"Image 1"``);
    2. an explicit answer pattern names one key (``"Answer: B"``, ``"the answer is (B) because ..."``,
       ``"B. Image 2"``); a leading letter contradicted by another option named in the same text -> None;
    3. the multi-character aliases that occur in the text name exactly one key
       (``"The statement is false."``, ``"It is the second image."``).

    Single letters are not searched in free text (tier 3): the article "a" is not option A.
    """
    if not text or not options:
        return None
    unique, free, letters = _alias_table(options)
    cleaned = _clean(str(text))

    # Tier 1: the bare answer, peeling lead-ins one at a time ("So the answer is option C").
    candidate = _strip_edges(cleaned)
    for _ in range(4):
        key = unique.get(candidate.lower())
        if key is not None:
            return key
        stripped = _strip_edges(_LEAD_IN.sub("", candidate, count=1))
        if stripped == candidate:
            break
        candidate = stripped
    if candidate.lower() in unique:
        return unique[candidate.lower()]

    mentioned = _mentions(cleaned, free)

    # Tier 2: explicit answer patterns naming a letter.
    if letters:
        upper = "|".join(re.escape(letter.upper()) for letter in sorted(letters))
        lower = "|".join(re.escape(letter) for letter in sorted(letters))
        explicit: set[str] = set()
        for pattern in _EXPLICIT_LETTER:
            for letters_alt, after, flags in ((upper, _AFTER_UPPER, 0), (lower, _AFTER_LOWER, re.IGNORECASE)):
                regex = pattern.format(letters=letters_alt, after=after)
                explicit.update(letters[m.group(1).lower()] for m in re.finditer(regex, cleaned, flags=flags))
        leading = re.match(_LEADING_LETTER.format(letters=upper), cleaned)  # case-sensitive: not "a dog"
        if leading:
            explicit.add(letters[leading.group(1).lower()])
        if len(explicit) == 1:
            (key,) = explicit
            others = mentioned - {key}
            return None if leading and others else key
        if len(explicit) > 1:
            return None

    # Tier 3: named options in free text.
    if len(mentioned) == 1:
        return next(iter(mentioned))
    return None


def choice_result(
    prediction: str | None, answer: str, options: Mapping[str, Sequence[str]], **extra: Any
) -> dict[str, Any]:
    """The per-sample result dict every aggregation here reads; ``extra`` adds group/category fields."""
    parsed = parse_choice(prediction, options)
    return {
        "correct": int(parsed is not None and parsed == answer),
        "parsed": parsed is not None,
        "answer": answer,
        "prediction": parsed,
        **extra,
    }


def accuracy_aggregation(results: list[dict]) -> dict[str, float | int]:
    """Per-question accuracy in percent with its CI, ``n`` questions and the ``unparseable`` count."""
    summary = mean_with_ci((result["correct"] for result in results), scale=PERCENT)
    summary["unparseable"] = sum(not result.get("parsed", True) for result in results)
    return summary


def accuracy_by(results: list[dict], field: str) -> dict[str, dict[str, float | int]]:
    """:func:`accuracy_aggregation` for each value of ``field`` (e.g. SVO-Probes' ``category``)."""
    buckets: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        buckets[str(result[field])].append(result)
    return {value: accuracy_aggregation(buckets[value]) for value in sorted(buckets)}


def group_accuracy(results: list[dict], *, group_field: str = "group") -> dict[str, float | int]:
    """Group accuracy in percent: a group counts only if ALL its questions are right.

    The bootstrap resamples groups. ``n`` is the number of groups, ``n_questions`` the number of
    questions and ``partial_groups`` the groups smaller than the largest one (``--limit`` can cut a
    group in two; such a group is scored on the questions it has, so read the number with care).
    """
    groups: dict[Any, list[dict]] = defaultdict(list)
    for result in results:
        groups[result[group_field]].append(result)
    largest = max((len(members) for members in groups.values()), default=0)
    summary = mean_with_ci((all(member["correct"] for member in members) for members in groups.values()), scale=PERCENT)
    summary["n_questions"] = len(results)
    summary["unparseable"] = sum(not result.get("parsed", True) for result in results)
    summary["partial_groups"] = sum(len(members) < largest for members in groups.values())
    return summary


def group_accuracy_by(
    results: list[dict], field: str, *, group_field: str = "group"
) -> dict[str, dict[str, float | int]]:
    """:func:`group_accuracy` for each value of ``field`` (e.g. EQBEN's ``subset``)."""
    buckets: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        buckets[str(result[field])].append(result)
    return {value: group_accuracy(buckets[value], group_field=group_field) for value in sorted(buckets)}


def group_of_question_id(question_id: str | int) -> str:
    """EQBEN/COLA group id: ``"17_0"`` and ``"17_1"`` -> ``"17"``."""
    group, separator, _member = str(question_id).rpartition("_")
    if not separator or not group:
        raise ValueError(f"question_id {question_id!r} is not of the form '<group>_<member>'")
    return group


def filtered(aggregate: Callable[[list[dict]], dict], field: str, value: str) -> Callable[[list[dict]], dict]:
    """``aggregate`` over the results whose ``field`` equals ``value`` (a per-category summary)."""

    def aggregation(results: list[dict]) -> dict:
        return aggregate(select(results, (field, value)))

    aggregation.__name__ = f"{getattr(aggregate, '__name__', 'aggregate')}_{field}_{value}"
    return aggregation


def select(results: Sequence[dict], where: tuple[str, str] | None) -> Sequence[dict]:
    """The results whose ``where[0]`` field equals ``where[1]`` (compared as text), or all of them."""
    if where is None:
        return results
    field, value = where
    return [result for result in results if str(result.get(field)) == value]
