"""Row validation for release files, run before anything is encoded.

``datasets`` checks almost nothing (a missing key becomes None, ``"a.jpg"`` given for a list
becomes five one-letter names), so every row of every source is checked here first. Problems
are collected, never raised one by one: a user fixing a file wants the whole list, each as
``file:row: reason`` (rows count from 1, as lines of a JSONL file do).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

IMAGE_TOKEN = "<image>"
PAIR_PREFIX = "Image 1: <image>\nImage 2: <image>\n"
ROLES = ("human", "gpt")
MAX_PROBLEMS_SHOWN = 50


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row (``row`` is None for file-level problems)."""

    file: str
    row: int | None
    reason: str

    def __str__(self) -> str:
        where = self.file if self.row is None else f"{self.file}:{self.row}"
        return f"{where}: {self.reason}"


class ReleaseValidationError(ValueError):
    """Raised with every problem found in a source; nothing was written when it is raised."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
        more = len(problems) - MAX_PROBLEMS_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(problems)} problem(s) in the source rows; nothing was written:\n{shown}{tail}")


@dataclass
class ProblemCollector:
    """Accumulates problems across files; ``raise_if_any`` ends a build that found some."""

    problems: list[Problem] = field(default_factory=list)
    _first_row_of_id: dict[str, tuple[str, int]] = field(default_factory=dict)

    def add(self, file: str, row: int | None, reason: str) -> None:
        self.problems.append(Problem(file, row, reason))

    def add_all(self, file: str, row: int, reasons: Iterable[str]) -> bool:
        """Record ``reasons`` for a row; True when the row had none."""
        before = len(self.problems)
        for reason in reasons:
            self.add(file, row, reason)
        return len(self.problems) == before

    def check_unique(self, file: str, row: int, key: str, value: Any) -> None:
        if not isinstance(value, str):
            return  # a wrong type was already reported by the row check
        first = self._first_row_of_id.setdefault(value, (file, row))
        if first != (file, row):
            self.add(file, row, f"duplicate {key} {value!r} (first seen at {first[0]}:{first[1]})")

    def __bool__(self) -> bool:
        return bool(self.problems)

    def raise_if_any(self) -> None:
        if self.problems:
            raise ReleaseValidationError(self.problems)


class UnsafeImageNameError(ValueError):
    """An image name that is absolute or climbs out of its image root."""


def checked_relative_name(name: str) -> PurePosixPath:
    """``name`` as a relative path that stays inside any root, or :class:`UnsafeImageNameError`."""
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        raise UnsafeImageNameError(f"image name {name!r} is empty or not a string")
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(name).drive or PureWindowsPath(name).is_absolute():
        raise UnsafeImageNameError(f"image name {name!r} is absolute; names must be relative to an image root")
    if ".." in posix.parts:
        raise UnsafeImageNameError(f"image name {name!r} contains '..' and would leave its image root")
    return posix


def key_problems(row: Mapping[str, Any], required: Iterable[str], optional: Iterable[str] = ()) -> list[str]:
    required, optional = set(required), set(optional)
    reasons = []
    missing = sorted(required - row.keys())
    extra = sorted(row.keys() - required - optional)
    if missing:
        reasons.append(f"missing key(s) {', '.join(map(repr, missing))}")
    if extra:
        reasons.append(f"unexpected key(s) {', '.join(map(repr, extra))}")
    return reasons


def _non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def text_problems(row: Mapping[str, Any], key: str) -> list[str]:
    if key in row and not _non_empty_str(row[key]):
        return [f"{key!r} must be a non-empty string, got {_describe(row[key])}"]
    return []


def image_pair_problems(row: Mapping[str, Any], key: str = "image") -> list[str]:
    if key not in row:
        return []
    value = row[key]
    if not isinstance(value, list):
        return [f"{key!r} must be a list of two file names, got {_describe(value)}"]
    if len(value) != 2:
        return [f"{key!r} must hold exactly two file names, got {len(value)}"]
    if not all(_non_empty_str(name) for name in value):
        return [f"{key!r} must hold two non-empty strings, got {value!r}"]
    reasons = []
    for name in value:  # names are data: one that would leave its image root is refused at build time
        try:
            checked_relative_name(name)
        except UnsafeImageNameError as error:
            reasons.append(str(error))
    return reasons


def conversation_problems(conversations: Any) -> list[str]:
    """Two-image LLaVA conversations: alternating human/gpt, two placeholders, first turn only."""
    if not isinstance(conversations, list):
        return [f"'conversations' must be a list of turns, got {_describe(conversations)}"]
    if len(conversations) < 2 or len(conversations) % 2:
        return [f"'conversations' must hold human/gpt turn pairs, got {len(conversations)} turn(s)"]
    reasons = []
    for index, turn in enumerate(conversations):
        where = f"turn {index + 1}"
        if not isinstance(turn, Mapping):
            reasons.append(f"{where} must be an object with 'from' and 'value', got {_describe(turn)}")
            continue
        reasons.extend(f"{where}: {r}" for r in key_problems(turn, ("from", "value")))
        expected = ROLES[index % 2]
        if "from" in turn and turn["from"] != expected:
            reasons.append(f"{where} must be from {expected!r} (turns alternate human/gpt), got {turn['from']!r}")
        value = turn.get("value")
        if "value" in turn and not _non_empty_str(value):
            reasons.append(f"{where}: 'value' must be a non-empty string, got {_describe(value)}")
            continue
        if not isinstance(value, str):
            continue
        count = value.count(IMAGE_TOKEN)
        if index == 0 and count != 2:
            reasons.append(f"{where} must contain exactly two {IMAGE_TOKEN} placeholders, found {count}")
        elif index > 0 and count:
            reasons.append(f"{where} must not contain {IMAGE_TOKEN} (only the first human turn does), found {count}")
    return reasons


def score_problems(row: Mapping[str, Any], key: str = "clip_sim_score") -> list[str]:
    value = row.get(key)
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return [f"{key!r} must be a finite number or null, got {_describe(value)}"]
    return []


def cadinst_row_problems(row: Any, *, optional: Iterable[str] = ()) -> list[str]:
    """Everything wrong with one CaD-Inst row (LLaVA shape: id, image, conversations)."""
    if not isinstance(row, Mapping):
        return [f"a row must be an object, got {_describe(row)}"]
    reasons = key_problems(row, ("id", "image", "conversations"), optional)
    reasons += text_problems(row, "id")
    reasons += image_pair_problems(row)
    if "conversations" in row:
        reasons += conversation_problems(row["conversations"])
    reasons += score_problems(row)
    if "phase" in row and row["phase"] not in (1, 2):
        reasons.append(f"'phase' must be 1 or 2, got {row['phase']!r}")
    return reasons


def cadqa_row_problems(row: Any, *, text_key: str = "text", optional: Iterable[str] = ()) -> list[str]:
    """Everything wrong with one CaD-QA row (question_id, image, text, answer)."""
    if not isinstance(row, Mapping):
        return [f"a row must be an object, got {_describe(row)}"]
    reasons = key_problems(row, ("question_id", "image", text_key, "answer"), optional)
    for key in ("question_id", text_key, "answer"):
        reasons += text_problems(row, key)
    reasons += image_pair_problems(row)
    prompt = row.get(text_key)
    if isinstance(prompt, str) and prompt.strip():
        if not prompt.startswith(PAIR_PREFIX):
            reasons.append(f"{text_key!r} must start with {PAIR_PREFIX!r}")
        elif not prompt[len(PAIR_PREFIX) :].strip():
            reasons.append(f"{text_key!r} has no question after the image placeholders")
        count = prompt.count(IMAGE_TOKEN)
        if count != 2:
            reasons.append(f"{text_key!r} must contain exactly two {IMAGE_TOKEN} placeholders, found {count}")
    return reasons


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
