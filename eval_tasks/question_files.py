"""The benchmarks' question files: found through the one resolver, read and validated row by row.

Every problem of a file is collected with :class:`builders.release.validate.ProblemCollector` and reported
at once, each as ``<benchmark>: file:row: reason`` (rows count from 1), as the release builders do: a
user fixing a file wants the whole list, not the first complaint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builders.release.sources import iter_json_records
from builders.release.validate import (
    IMAGE_TOKEN,
    MAX_PROBLEMS_SHOWN,
    ProblemCollector,
    UnsafeImageNameError,
    checked_relative_name,
)
from eval_tasks.benchmarks import Benchmark, benchmark
from eval_tasks.pinned import BenchmarkDataError


def annotation_file(name: str) -> Path:
    """The question file of benchmark ``name``: the local override, or the verified cached download."""
    return benchmark(name).source.resolve()


def raise_problems(name: str, path: Path, problems: ProblemCollector) -> None:
    """One error listing every problem found in ``path`` (the first :data:`MAX_PROBLEMS_SHOWN`), if any."""
    if not problems:
        return
    shown = "\n".join(f"  {name}: {problem}" for problem in problems.problems[:MAX_PROBLEMS_SHOWN])
    more = len(problems.problems) - MAX_PROBLEMS_SHOWN
    tail = f"\n  ... and {more} more" if more > 0 else ""
    raise BenchmarkDataError(f"{name}: {len(problems.problems)} problem(s) in {path}:\n{shown}{tail}")


def read_rows(name: str, path: str | Path | None = None) -> list[dict[str, Any]]:
    """The validated rows of benchmark ``name`` (from ``path``, default :func:`annotation_file`)."""
    spec = benchmark(name)
    path = Path(path) if path is not None else annotation_file(name)
    problems = ProblemCollector()
    rows = []
    for line_number, row in iter_json_records(path, problems):
        problem = _row_problem(row, spec)
        if problem:
            problems.add(str(path), line_number, problem)
            continue
        problems.check_unique(str(path), line_number, "question_id", str(row["question_id"]))
        rows.append(row)
    raise_problems(spec.name, path, problems)
    if not rows:
        raise BenchmarkDataError(f"{spec.name}: {path} holds no questions")
    return rows


def _row_problem(row: Any, spec: Benchmark) -> str | None:
    if not isinstance(row, dict):
        return "a row must be a JSON object"
    missing = [key for key in ("image", "text", "answer", "question_id") if key not in row]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    images = row["image"]
    if not isinstance(images, list) or not images or not all(isinstance(name, str) and name for name in images):
        return "'image' must be a non-empty list of file names"
    if not isinstance(row["text"], str) or row["text"].count(IMAGE_TOKEN) != len(images):
        return f"'text' must hold one {IMAGE_TOKEN} placeholder per image ({len(images)})"
    if spec.answers is not None and row["answer"] not in spec.answers:
        return f"answer {row['answer']!r} is not one of {', '.join(spec.answers)}"
    try:
        for name in images:
            checked_relative_name(name)
    except UnsafeImageNameError as error:
        return str(error)
    return None
