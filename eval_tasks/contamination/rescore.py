"""A benchmark's score recomputed without its contaminated questions, from an lmms-eval samples file.

``lmms-eval --log_samples`` writes one JSON line per question (``<date>_samples_<task>.jsonl``): ``filtered_resps``,
the model's answer after the task's filters, and each metric's per-sample result (ours carry the ``question_id``;
lmms-eval 0.7 leaves the ``doc`` out). Each answer is scored again by the task's own ``TASK.process_results`` (the
one scorer, :mod:`eval_tasks.scoring`) against its row of the question file, so over all questions the figures
are those lmms-eval reported (``tests/test_eval_tasks.py`` checks it on lmms-eval's own files), and then
summarised three times: over all questions, over the clean ones and over the
contaminated ones, each with its bootstrap interval (groups resampled for group accuracy; a group is
contaminated when any of its questions is). CaD-QA's answers are not judged again: the judge's rating is
in the sample (``judge_rating``) and its mean is recomputed, as the task does, over the valid ratings.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from builders.judge import RatingSummary
from builders.release.sources import iter_json_records
from builders.release.validate import ProblemCollector

__all__ = ["SamplesFileError", "rescore"]


class SamplesFileError(ValueError):
    """A samples file that is not an lmms-eval samples file of this benchmark."""


def _samples(path: Path, id_field: str) -> Iterable[tuple[int, str, dict[str, Any]]]:
    """``(line, question_id, sample)``: the id from the per-sample result under ``id_field`` (lmms-eval 0.7 drops
    the ``doc`` from what it writes; an older samples file with its ``doc`` is read too)."""
    problems = ProblemCollector()
    for number, sample in iter_json_records(path, problems):
        if not isinstance(sample, dict) or "filtered_resps" not in sample:
            raise SamplesFileError(f"{path}:{number}: not an lmms-eval sample (no 'filtered_resps')")
        result, doc = sample.get(id_field), sample.get("doc")
        if isinstance(result, dict) and "question_id" in result:
            yield number, str(result["question_id"]), sample
        elif isinstance(doc, dict) and "question_id" in doc:
            yield number, str(doc["question_id"]), sample
        else:
            raise SamplesFileError(f"{path}:{number}: no {id_field!r} result with a question_id: another task's?")
    if problems:  # a line that is not JSON
        raise SamplesFileError(str(problems.problems[0]))


def _response(sample: dict[str, Any]) -> str:
    response = sample.get("filtered_resps", sample.get("resps"))
    while isinstance(response, list):
        response = response[0] if response else ""
    return "" if response is None else str(response)


def _choice_results(benchmark: str, path: Path, rows: Mapping[str, dict]) -> list[tuple[str, dict[str, Any]]]:
    """Every sample's answer scored again by the task's own ``process_results`` against its question-file row."""
    utils = importlib.import_module(f"eval_tasks.{benchmark}.utils")
    primary = utils.TASK.metrics.summaries[0].name
    extra = getattr(utils, "group_fields", None)
    results = []
    for number, question_id, sample in _samples(path, primary):
        if question_id not in rows:
            raise SamplesFileError(f"{path}:{number}: question_id {question_id!r} is not a {benchmark} question")
        doc = dict(rows[question_id])
        if extra is not None:
            doc.update(extra(doc))
        scored = utils.TASK.process_results(doc, [_response(sample)])
        results.append((question_id, scored[primary]))
    return results


def _summaries(benchmark: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Every summary of the task over all selected results (not its per-category ones)."""
    utils = importlib.import_module(f"eval_tasks.{benchmark}.utils")
    return {summary.name: summary(results) for summary in utils.TASK.metrics.summaries if summary.where is None}


def rescore(benchmark: str, path: str | Path, rows: Mapping[str, dict], contaminated: set[str]) -> dict[str, Any]:
    """``{"samples", "all", "clean", "contaminated"}``: the task's summaries over each subset of questions.

    ``rows``: the benchmark's question-file rows by question id (the answers and fields the scorer reads).
    """
    path = Path(path)
    if benchmark == "cadqa":
        return _rescore_cadqa(path, set(rows), contaminated)
    results = _choice_results(benchmark, path, rows)
    if not results:
        raise SamplesFileError(f"{path}: no samples")
    if benchmark in ("eqben", "cola"):  # a group is contaminated when any of its questions is
        groups = {result["group"] for question, result in results if question in contaminated}
        dirty = {question for question, result in results if result["group"] in groups}
    else:
        dirty = {question for question, _ in results if question in contaminated}
    subsets = {
        "all": [r for _, r in results],
        "clean": [r for q, r in results if q not in dirty],
        "contaminated": [r for q, r in results if q in dirty],
    }
    return {"samples": len(results), **{name: _summaries(benchmark, rows) for name, rows in subsets.items()}}


def _rescore_cadqa(path: Path, known: set[str], contaminated: set[str]) -> dict[str, Any]:
    ratings: list[tuple[str, int | None]] = []
    for number, question_id, sample in _samples(path, "judge_rating"):
        if question_id not in known:
            raise SamplesFileError(f"{path}:{number}: question_id {question_id!r} is not a cadqa question")
        record = sample.get("judge_rating")
        if not isinstance(record, dict) or "rating" not in record:
            raise SamplesFileError(f"{path}:{number}: no judge_rating record (run lmms-eval with the cadqa task)")
        if not record.get("judge_failed"):  # an unjudged answer is excluded, as the task does
            ratings.append((question_id, record["rating"]))
    if not ratings:
        raise SamplesFileError(f"{path}: no judged samples")
    subsets = {
        "all": [r for _, r in ratings],
        "clean": [r for q, r in ratings if q not in contaminated],
        "contaminated": [r for q, r in ratings if q in contaminated],
    }
    return {"samples": len(ratings), **{name: {"judge_rating": _rating(rows)} for name, rows in subsets.items()}}


def _rating(ratings: list[int | None]) -> dict[str, Any]:
    """The judge's mean rating over the valid ratings, in the fields of the choice summaries."""
    summary = RatingSummary.of(ratings)
    return {
        "value": summary.mean,
        "ci_low": summary.ci_low,
        "ci_high": summary.ci_high,
        "n": summary.valid,
        "invalid": summary.invalid,
    }
