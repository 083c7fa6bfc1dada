"""Judging every CaD-QA answer of an lmms-eval run at once, with bounded concurrency, on the one runner.

lmms-eval calls ``process_results`` per answer (a few threads at most); judging there would send one
blocking request at a time. Instead ``process_results`` returns one record per answer, shared by every
metric of the sample, and the first aggregation judges all records that have no judgement yet in one
:func:`builders.judge.judge` call (``CADQA_JUDGE_MAX_CONCURRENT`` in flight), writing each judgement into
its record: the later aggregations find them judged, and lmms-eval's logged samples, which hold the same
record objects, carry the judgements.

A judge server that stops answering leaves its items *not judged* (``judge_failed``), never invalid or 0;
what was judged before is kept in the run folder, so rerunning the evaluation judges only the rest.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path
from typing import Any

from builders.judge import JudgeItem, JudgeTask, identity_folder, judge
from builders.llm.base import BackendRefusedError, BackendUnavailableError
from eval_tasks.cadqa.judge_server import LmmsEvalJudgeBackend, LmmsEvalJudgeSettings

logger = logging.getLogger(__name__)
_LOCK = threading.Lock()


@functools.cache
def judge_backend() -> tuple[LmmsEvalJudgeBackend, LmmsEvalJudgeSettings]:
    """lmms-eval's judge server, built once per process on the first aggregation (not at import: listing
    tasks must not need a judge). ``lmms_eval.llm_judge`` is imported first so that its ``.env`` is loaded."""
    import lmms_eval.llm_judge  # noqa: F401  (loads .env from the working directory)

    settings = LmmsEvalJudgeSettings.from_env()
    return LmmsEvalJudgeBackend(settings), settings


def answer_record(doc: dict[str, Any], prediction: str) -> dict[str, Any]:
    """The per-sample record of one answer, before it is judged."""
    return {
        "question_id": str(doc["question_id"]),
        "question": doc["question"],
        "reference": doc["answer"],
        "prediction": prediction,
    }


def judge_records(records: list[dict[str, Any]]) -> None:
    """Judge every record that has no judgement yet, all at once; the judgements go into the records."""
    with _LOCK:  # lmms-eval aggregates metrics one after another, but be safe with threads
        todo = [record for record in records if "rating" not in record]
        if not todo:
            return
        backend, settings = judge_backend()
        items = [JudgeItem(r["question_id"], r["question"], r["reference"], r["prediction"]) for r in todo]
        run_dir = judge_run_folder(settings, backend)
        logger.info("cadqa: judging %d answers (%d in flight); judgements kept in %s", len(items),
                    settings.max_concurrent, run_dir)  # fmt: skip
        try:
            report = judge(items, backend, retries=settings.invalid_retries, run_dir=run_dir, warn_invalid=False)
            judged = {judgement.item.id: judgement for judgement in report.records}
            error = None
        except (BackendUnavailableError, BackendRefusedError) as stopped:
            judged = {judgement.item.id: judgement for judgement in getattr(stopped, "settled", [])}
            error = stopped
        for record in todo:
            judgement = judged.get(record["question_id"])
            if judgement is not None:
                record.update(judgement.to_record())
            else:  # the judge server failed: not a judgement, not a 0
                record.update(
                    rating=None, valid=False, judge_failed=True, errors=[str(error)], judge_model=backend.model
                )


def judge_run_folder(settings: LmmsEvalJudgeSettings, backend: LmmsEvalJudgeBackend) -> Path:
    """One run folder per judge identity (model, template, sampling, attempts) under the judge cache."""
    base = Path(settings.run_dir).expanduser() if settings.run_dir else _default_base()
    return identity_folder(base, JudgeTask(retries=settings.invalid_retries), backend.name, backend.model)


def _default_base() -> Path:
    hf_home = os.environ.get("HF_HOME") or "~/.cache/huggingface"
    return Path(hf_home).expanduser() / "cadvi" / "cadqa-judge"
