"""Judging answers on the one runner: :class:`JudgeTask` and :func:`judge`.

Every answer is one request (the rendered ``judge_cadqa.jinja``) keyed by the template hash, the item
and the judge model; a reply that holds no valid rating is a reject, asked again up to ``retries``
times, then the item is *invalid*. The run is :func:`builders.generate.run_task`'s: bounded
concurrency from the backend, outages that are not judgements, resume from a run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from builders.generate import Accepted, GenerationTask, Outcome, Rejected, run_identity, run_task
from builders.judge.rating import JUDGE_SAMPLING, JUDGE_TEMPLATE, parse_rating
from builders.judge.summary import JudgeReport, RatingSummary
from builders.llm.base import Backend, BackendRefusedError, BackendUnavailableError, Result, Sampling
from builders.runs import all_records, request_key
from prompts import load_template

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgeItem:
    """One answer to rate. ``id`` is the CaD-QA ``question_id``."""

    id: str
    question: str
    reference: str
    prediction: str


@dataclass(frozen=True)
class Judgement:
    """The outcome for one item: ``rating`` None means invalid (excluded from the mean)."""

    item: JudgeItem
    rating: int | None
    raw: tuple[str, ...]  # the judge's text of every attempt ("" for a failed request)
    errors: tuple[str, ...] = ()  # the failed requests' errors, if any
    template: str = JUDGE_TEMPLATE
    template_sha256: str = ""
    model: str | None = None

    @property
    def attempts(self) -> int:
        return len(self.raw)

    @property
    def valid(self) -> bool:
        return self.rating is not None

    def to_record(self) -> dict[str, Any]:
        """The JSON line written per item (``cadvi judge --out``, lmms-eval's logged samples)."""
        return {
            "question_id": self.item.id,
            "rating": self.rating,
            "valid": self.valid,
            "attempts": self.attempts,
            "raw": list(self.raw),
            "errors": list(self.errors),
            "question": self.item.question,
            "reference": self.item.reference,
            "prediction": self.item.prediction,
            "judge_model": self.model,
            "template": self.template,
            "template_sha256": self.template_sha256,
        }


class JudgeTask(GenerationTask[JudgeItem]):
    """Question, reference and prediction -> a 0-5 rating (a reply without one is rejected and asked again)."""

    stage = "judge"
    noun = "answers"

    def __init__(self, *, template: str = JUDGE_TEMPLATE, sampling: Sampling = JUDGE_SAMPLING, retries: int = 1):
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.template_name = template
        self.template = load_template(template)
        self.sampling = sampling
        self.max_attempts = retries + 1
        self._sampling = dataclasses.asdict(sampling)

    def identity(self) -> dict[str, Any]:
        return {
            "template": self.template_name,
            "template_sha256": self.template.sha256,
            "sampling": self._sampling,
            "max_attempts": self.max_attempts,
        }

    def key(self, item: JudgeItem, model: str) -> str:
        parts = (item.id, item.question, item.reference, item.prediction)
        return request_key("judge", self.template.sha256, *parts, model, self._sampling)

    def format_input(self, item: JudgeItem) -> tuple[dict[str, Any], ...]:
        prompt = self.template.render(question=item.question, reference=item.reference, prediction=item.prediction)
        return ({"role": "user", "content": prompt},)

    def format_output(self, item: JudgeItem, result: Result) -> Outcome:
        rating = parse_rating(result.text)
        return Rejected("no single 0-5 rating in the reply") if rating is None else Accepted({"rating": rating})

    def record_fields(self, item: JudgeItem) -> dict[str, Any]:
        return {
            "question_id": item.id,
            "question": item.question,
            "reference": item.reference,
            "prediction": item.prediction,
            "template": self.template_name,
            "template_sha256": self.template.sha256,
        }


def judge(
    items: Iterable[JudgeItem],
    backend: Backend,
    *,
    retries: int = 1,
    template: str = JUDGE_TEMPLATE,
    sampling: Sampling = JUDGE_SAMPLING,
    run_dir: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
    warn_invalid: bool = True,
    max_failures_in_a_row: int = 8,
    console: Console | None = None,
    show_progress: bool = False,
    on_resume: Callable[[int], None] | None = None,
) -> JudgeReport:
    """Rate every item through ``backend``; unreadable ratings are asked again up to ``retries`` times.

    ``run_dir`` keeps the run (a rerun resumes it: judged items are not asked again); without it the run
    lives in a temporary folder. ``progress`` is called with 1 for each item settled by this run,
    ``on_resume`` once with the number already judged in ``run_dir``. A judge
    that is away or refuses everything raises (:class:`BackendUnavailableError` /
    :class:`BackendRefusedError`, ``.settled`` holding the judgements made so far), never a 0 or an invalid.
    """
    task = JudgeTask(template=template, sampling=sampling, retries=retries)
    items = list(items)
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)[:5]
        raise ValueError(f"duplicate item ids: {', '.join(map(repr, duplicates))}")
    with _run_folder(run_dir) as folder:
        try:
            summary = run_task(
                task,
                items,
                backend,
                folder,
                max_failures_in_a_row=max_failures_in_a_row,
                console=console,
                progress=show_progress,
                on_settled=(lambda _item: progress(1)) if progress is not None else None,
                on_resume=on_resume,
            )
            if not summary.complete:  # some requests failed at the judge server: those answers are not judged
                raise BackendUnavailableError(
                    f"{summary.left:,} of {len(items):,} answers not judged: {summary.failed:,} requests failed at "
                    "the judge server"
                )
        except (BackendUnavailableError, BackendRefusedError) as error:  # keep what was judged before it stopped
            done = judgements(folder, task, items, backend.model)
            error.settled = [done[item.id] for item in items if item.id in done]  # type: ignore[attr-defined]
            raise
        done = judgements(folder, task, items, backend.model)
    records = tuple(done[item.id] for item in items)
    summary = RatingSummary.of(record.rating for record in records)
    if summary.invalid and warn_invalid:
        failed = sum(1 for record in records if record.errors and not record.valid)
        logger.warning(
            "judge: %d of %d judgements invalid after %d attempt(s) each (%d with failed requests); "
            "they are excluded from the mean",
            summary.invalid,
            summary.n,
            task.max_attempts,
            failed,
        )
    settings = {"retries": retries, "asked": {"backend": backend.describe(), "sampling": task.identity()["sampling"]}}
    return JudgeReport(records, summary, template, task.template.sha256, backend.model, settings)


def judgements(
    folder: str | os.PathLike, task: JudgeTask, items: Sequence[JudgeItem], model: str
) -> dict[str, Judgement]:
    """The settled judgements of ``items`` in a run folder: valid ones, and those out of attempts (invalid)."""
    keys = {task.key(item, model): item for item in items}
    valid = {record["key"]: record for record in all_records(folder) if record["key"] in keys}
    attempts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in all_records(folder, "rejects"):
        if record["key"] in keys:
            attempts[record["key"]].append(record)
    found: dict[str, Judgement] = {}
    for key, item in keys.items():
        tries = sorted(attempts[key], key=lambda record: record["attempt"])
        if key in valid:
            tries.append(valid[key])
        elif len(tries) < task.max_attempts and not any(record.get("final") for record in tries):
            continue  # not settled: still to do
        found[item.id] = Judgement(
            item,
            valid[key]["rating"] if key in valid else None,
            tuple(record["text"] for record in tries),
            tuple(record["error"] for record in tries if record.get("error")),
            task.template_name,
            task.template.sha256,
            model,
        )
    return found


def identity_folder(base: str | os.PathLike, task: JudgeTask, backend: str, model: str) -> Path:
    """A run folder under ``base`` for this judge (backend, model, template, sampling, attempts).

    Judgements of another judge never share a folder (its manifest would refuse them): each identity
    gets its own, so ``base`` can hold the runs of every judge, and each resumes on its own.
    """
    return Path(base) / request_key("judge-run", run_identity(task, backend, model))[:16]


@contextlib.contextmanager
def _run_folder(run_dir: str | os.PathLike | None) -> Iterator[Path]:
    """The given run folder, or a temporary one removed afterwards."""
    if run_dir is not None:
        yield Path(run_dir)
        return
    with tempfile.TemporaryDirectory(prefix="cadvi-judge-") as folder:
        yield Path(folder) / "run"
