"""SEED-Bench v1's question file, pinned like every other question file, and its video questions validated.

Which questions
    The three video dimensions of SEED-Bench v1 (Li et al., 2023): question type 10, action recognition
    (Something-Something v2 ``.webm`` clips), 11, action prediction (Epic-Kitchens 100 long videos, a
    ``segment`` in seconds) and 12, procedure understanding (Breakfast videos at 15 fps, a ``segment`` in
    frames). Four options per question (``A``-``D``).

The file, pinned
    ``SEED-Bench.json`` of the Hub dataset ``AILab-CVC/SEED-Bench``, through the one resolver of the
    question files (:class:`eval_tasks.pinned.PinnedFile`): ``CADVI_EVAL_DATA_DIR=<folder>`` reads
    ``<folder>/SEED-Bench.json``; otherwise ``huggingface_hub`` downloads it once (its cache) at the
    revision ``CADVI_SEED_REVISION`` (default ``main``: we could not resolve a commit from our build
    machine; pin one for published numbers). SEED-Bench publishes no sha256 of the file, so
    ``CADVI_SEED_SHA256`` pins it if you have one; without it the first download is trusted, its hash
    recorded next to the cached file and checked on every later load (trust on first use, logged).

Bad rows
    Every problem of the file is reported at once, as ``file:row: reason`` with ``row`` the question's
    position in the ``questions`` list (from 1), through
    :class:`builders.release.validate.ProblemCollector` like every other question file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

from builders.release.validate import ProblemCollector, UnsafeImageNameError, checked_relative_name
from eval_tasks import scoring
from eval_tasks.pinned import HUB, BenchmarkDataError, PinnedFile
from eval_tasks.question_files import raise_problems

logger = logging.getLogger(__name__)

BENCHMARK = "seed_video"
QUESTION_FILE = "SEED-Bench.json"
HUB_REPO = "AILab-CVC/SEED-Bench"
HUB_REVISION = "main"  # no commit could be resolved offline; pin with CADVI_SEED_REVISION
REVISION_ENV = "CADVI_SEED_REVISION"
SHA256_ENV = "CADVI_SEED_SHA256"
OPTIONS = scoring.LETTER_OPTIONS_4
CHOICE_FIELDS = ("choice_a", "choice_b", "choice_c", "choice_d")


class QuestionType(NamedTuple):
    """One SEED-Bench v1 video dimension and where its videos live."""

    type_id: int
    name: str  # the key of the per-type metric
    title: str  # the name in SEED-Bench.json's ``question_type`` table
    source: str
    root_env: str
    default_folder: str  # the original CaD-VI folder name under the video root


QUESTION_TYPES: dict[int, QuestionType] = {
    spec.type_id: spec
    for spec in (
        QuestionType(
            10,
            "action_recognition",
            "Action Recognition",
            "Something-Something v2 validation videos (<id>.webm)",
            "CADVI_SEED_SSV2_ROOT",
            "SSv2",
        ),
        QuestionType(
            11,
            "action_prediction",
            "Action Prediction",
            "Epic-Kitchens 100 videos (P<xx>/P<xx>_<yy>.MP4)",
            "CADVI_SEED_EPIC_KITCHENS_ROOT",
            "Epic_kitchen",
        ),
        QuestionType(
            12,
            "procedure_understanding",
            "Procedure Understanding",
            "Breakfast 15 fps videos (BreakfastII_15fps_qvga_sync: P<xx>/<camera>/<name>.avi)",
            "CADVI_SEED_BREAKFAST_ROOT",
            "Breakfast",
        ),
    )
}


def question_source() -> PinnedFile:
    """``SEED-Bench.json`` at the revision and sha256 the environment pins (read at every call)."""
    return PinnedFile(
        BENCHMARK,
        HUB_REPO,
        QUESTION_FILE,
        os.environ.get(REVISION_ENV) or HUB_REVISION,
        os.environ.get(SHA256_ENV) or None,
        host=HUB,
        sha256_env=SHA256_ENV,
    )


def question_file() -> Path:
    """``SEED-Bench.json``: ``$CADVI_EVAL_DATA_DIR/SEED-Bench.json``, else the verified Hub download."""
    return question_source().resolve()


def read_questions(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The validated video questions (types 10, 11, 12) of a SEED-Bench v1 question file."""
    path = Path(path) if path is not None else question_file()
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except json.JSONDecodeError as error:
        raise BenchmarkDataError(
            f"{BENCHMARK}: {path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from error
    questions = content.get("questions") if isinstance(content, dict) else content
    if not isinstance(questions, list):
        raise BenchmarkDataError(f"{BENCHMARK}: {path} has no 'questions' list (SEED-Bench v1 format)")
    _check_type_table(path, content)
    problems = ProblemCollector()
    rows = []
    for row, question in enumerate(questions, start=1):
        if isinstance(question, dict) and question.get("question_type_id") not in QUESTION_TYPES:
            continue  # an image question: not ours
        problem = _question_problem(question)
        if problem:
            problems.add(str(path), row, problem)
            continue
        problems.check_unique(str(path), row, "question_id", str(question["question_id"]))
        rows.append(question)
    raise_problems(BENCHMARK, path, problems)
    if not rows:
        raise BenchmarkDataError(f"{BENCHMARK}: {path} holds no video questions (types 10, 11, 12)")
    counts = {type_id: sum(row["question_type_id"] == type_id for row in rows) for type_id in QUESTION_TYPES}
    logger.info("%s: %s: %s video questions %s", BENCHMARK, path, len(rows), counts)
    return rows


def _check_type_table(path: Path, content: Any) -> None:
    """Refuse a SEED-Bench-2 file: its type ids 10-12 are other dimensions (celebrities, landmarks, charts)."""
    table = content.get("question_type") if isinstance(content, dict) else None
    if not isinstance(table, dict):
        return
    by_id = {type_id: title for title, type_id in table.items()}
    for type_id, spec in QUESTION_TYPES.items():
        if type_id in by_id and by_id[type_id] != spec.title:
            raise BenchmarkDataError(
                f"{BENCHMARK}: {path}: question type {type_id} is {by_id[type_id]!r}, not {spec.title!r}; "
                "this is not SEED-Bench v1's question file"
            )


def _question_problem(question: Any) -> str | None:
    """What is wrong with one video question (``None``: nothing); the reason names its ``question_id``."""
    if not isinstance(question, dict):
        return "a question must be a JSON object"
    problem = _field_problem(question)
    return f"question {question.get('question_id')!r}: {problem}" if problem else None


def _field_problem(question: dict[str, Any]) -> str | None:
    missing = [key for key in ("question_id", "question", *CHOICE_FIELDS, "answer", "data_id") if key not in question]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    if question.get("data_type", "video") != "video":
        return f"data_type {question['data_type']!r} for a video question type"
    if question["answer"] not in OPTIONS:
        return f"answer {question['answer']!r} is not one of {', '.join(OPTIONS)}"
    if not all(isinstance(question[key], str) for key in ("question", *CHOICE_FIELDS, "data_id")):
        return "question, choices and data_id must be strings"
    try:
        checked_relative_name(question["data_id"])
    except UnsafeImageNameError as error:
        return str(error)
    segment = question.get("segment")
    if question["question_type_id"] == 10:
        return None
    if (
        not isinstance(segment, list)
        or len(segment) != 2
        or not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in segment)
        or not 0 <= segment[0] < segment[1]
    ):
        return f"segment must be [start, end] with 0 <= start < end, got {segment!r}"
    if question["question_type_id"] == 12 and not all(float(value).is_integer() for value in segment):
        return f"a type-12 segment counts frames (integers), got {segment!r}"
    return None
