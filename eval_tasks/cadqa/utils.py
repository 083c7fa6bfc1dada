"""CaD-QA (paper §4) as an lmms-eval task: 7,520 open questions on Visual Genome image pairs, rated 0-5 by an
LLM judge; the metric is the mean rating (CaD-VI 7B 3.29, LLaVA-1.5 7B 2.54 with the paper's unreleased judge).

Question file
    The official ``CaD_QA_eval.jsonl``: by default ``json_files/CaD_QA_eval.jsonl`` of the Hub dataset
    ``wlin21at/CaD-Inst`` at a pinned revision, downloaded once by ``huggingface_hub`` (its cache) and
    checked against its sha256 on every load. ``CADVI_EVAL_DATA_DIR=<folder>`` (the closed tasks'
    override, :mod:`eval_tasks.data`) reads ``<folder>/CaD_QA_eval.jsonl`` instead. Rows go through
    :func:`cadqa.load`, the dataset's own validator (two images, the ``Image 1: <image>\\nImage 2: <image>\\n``
    prefix, unique ids), which also gives the question without the placeholders for the judge.

Images
    Visual Genome, never shipped: ``CADVI_CADQA_IMAGE_ROOT`` (the folder holding ``VG_100K/`` and
    ``VG_100K_2/``), else ``$CADVI_EVAL_IMAGE_ROOT/cadqa``. Every image is checked when the docs are built,
    so a missing one stops the run before the model runs, naming the benchmark, the root and the file.

Judge (lmms-eval's way: ``lmms_eval.llm_judge``, configured by environment variables or ``.env``)
    ``API_TYPE`` (default ``openai``), ``OPENAI_API_URL`` and ``OPENAI_API_KEY`` (any non-empty key for a
    local server such as ``vllm serve`` or ``transformers serve``); ``CADQA_JUDGE_MODEL`` (default
    ``mistralai/Mixtral-8x7B-Instruct-v0.1``, the paper's judge); ``CADQA_JUDGE_NUM_RETRIES`` /
    ``CADQA_JUDGE_RETRY_DELAY`` (lmms-eval's retries of a failed request, default 5 x 10 s),
    ``CADQA_JUDGE_TIMEOUT``, ``CADQA_JUDGE_MAX_CONCURRENT`` (requests in flight, default 32),
    ``CADQA_JUDGE_INVALID_RETRIES`` (asks again after an unreadable rating, default 1),
    ``CADQA_JUDGE_RUN_DIR`` (where judgements are kept, default ``$HF_HOME/cadvi/cadqa-judge``). The prompt,
    the rating parser and the runner are :mod:`builders.judge`'s, shared with ``cadvi judge``; the answers
    are judged all at once, concurrently (:mod:`eval_tasks.cadqa.judging`).

Metrics (plain numbers, as lmms-eval's own tasks report them)
    ``judge_rating``: the mean over *valid* ratings (null when none is valid); ``judge_rating_ci_low`` /
    ``judge_rating_ci_high``: its 95% bootstrap interval; ``judge_valid``; ``judge_invalid`` (no readable
    rating after the retry: excluded from the mean, never scored 0); ``judge_not_judged`` (the judge server
    failed: no judgement, excluded, with a warning; logged samples carry ``judge_failed``);
    ``judge_rating_0`` ... ``judge_rating_5``: the histogram.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import cadqa
from builders.judge import RatingSummary
from eval_tasks import data
from eval_tasks.cadqa.judging import answer_record, judge_records
from eval_tasks.data import doc_to_messages, doc_to_text, doc_to_visual

__all__ = [
    "METRICS",
    "doc_to_messages",
    "doc_to_text",
    "doc_to_visual",
    "judge_invalid",
    "judge_not_judged",
    "judge_rating",
    "judge_rating_ci_high",
    "judge_rating_ci_low",
    "judge_valid",
    "load_docs",
    "process_docs",
    "process_results",
    "question_file",
]

logger = logging.getLogger(__name__)

BENCHMARK = "cadqa"
HUB_FILE = "json_files/CaD_QA_eval.jsonl"


def question_file() -> Path:
    """The official question file: ``$CADVI_EVAL_DATA_DIR/CaD_QA_eval.jsonl``, else the pinned, verified Hub file."""
    return data.annotation_file(BENCHMARK)


def load_docs(
    *,
    with_images: bool = True,
    annotations: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """The docs as a ``datasets.Dataset``: ``question_id``, ``image`` (names), ``image_paths``, ``text``
    (the official prompt, placeholders kept), ``question`` (without them) and ``answer`` (the reference).

    ``with_images=False`` skips image resolution (``image_paths`` empty): for counting and scoring tests.
    """
    import datasets

    path = Path(annotations) if annotations is not None else question_file()
    rows = cadqa.load(path, shape="jsonl", cache_dir=cache_dir).to_list()
    paths = data.resolve_images(BENCHMARK, rows, root) if with_images else [[] for _ in rows]
    docs = [
        {
            "question_id": row["question_id"],
            "image": row["image"],
            "image_paths": row_paths,
            "text": row["prompt"],
            "question": row["question"],
            "answer": row["answer"],
        }
        for row, row_paths in zip(rows, paths, strict=True)
    ]
    return datasets.Dataset.from_list(docs)


def process_docs(_placeholder: Any) -> Any:
    """lmms-eval's one-row placeholder (see :mod:`eval_tasks.data`) replaced by the CaD-QA docs."""
    return load_docs()


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    """One record per answer, the same object for every metric; the first aggregation judges them all."""
    record = answer_record(doc, (results[0] if results else "") or "")
    return {metric: record for metric in METRICS}


def _summary(records: list[dict[str, Any]]) -> RatingSummary:
    judge_records(records)
    return RatingSummary.of(record["rating"] for record in records if not record.get("judge_failed"))


def judge_rating(records: list[dict[str, Any]]) -> float | None:
    """The mean of the valid ratings (null when none is valid); warns about invalid and unjudged answers."""
    summary = _summary(records)
    not_judged = len(records) - summary.n
    if summary.invalid:
        logger.warning("cadqa: %s", summary.line())
    if not_judged:
        logger.warning(
            "cadqa: %d of %d answers were not judged (the judge server failed); the mean is over the judged ones "
            "only: rerun the evaluation (judged answers are kept) or rate the logged answers with `cadvi judge`",
            not_judged,
            len(records),
        )
    return summary.mean


def judge_rating_ci_low(records: list[dict[str, Any]]) -> float | None:
    """Lower end of the 95% bootstrap interval of the mean rating."""
    return _summary(records).ci_low


def judge_rating_ci_high(records: list[dict[str, Any]]) -> float | None:
    """Upper end of the 95% bootstrap interval of the mean rating."""
    return _summary(records).ci_high


def judge_valid(records: list[dict[str, Any]]) -> int:
    """Answers with a readable rating (the ``n`` of the mean)."""
    return _summary(records).valid


def judge_invalid(records: list[dict[str, Any]]) -> int:
    """Judgements with no readable rating after the retry: excluded from the mean, not scored 0."""
    return _summary(records).invalid


def judge_not_judged(records: list[dict[str, Any]]) -> int:
    """Answers the judge server never judged (it failed): excluded from everything, counted here."""
    judge_records(records)
    return sum(1 for record in records if record.get("judge_failed"))


def _histogram_bin(rating: int):
    def count(records: list[dict[str, Any]]) -> int:
        return _summary(records).histogram[rating]

    count.__name__ = count.__qualname__ = f"judge_rating_{rating}"
    count.__doc__ = f"Answers rated {rating}."
    return count


judge_rating_0, judge_rating_1, judge_rating_2, judge_rating_3, judge_rating_4, judge_rating_5 = map(
    _histogram_bin, range(6)
)
METRICS = (
    "judge_rating",
    "judge_rating_ci_low",
    "judge_rating_ci_high",
    "judge_valid",
    "judge_invalid",
    "judge_not_judged",
    *(f"judge_rating_{rating}" for rating in range(6)),
)
