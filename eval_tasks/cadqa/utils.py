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
    ``CADQA_JUDGE_TIMEOUT``, ``CADQA_JUDGE_INVALID_RETRIES`` (asks again after an unreadable rating,
    default 1). The prompt and the rating parser are :mod:`builders.judge`'s, shared with ``cadvi judge``.

Metrics
    ``judge_rating``: the mean over *valid* ratings with its 95% bootstrap CI, ``n`` judged, ``valid``,
    ``invalid``, ``not_judged``; ``judge_histogram``: how many items got each rating 0-5; ``judge_invalid``:
    how many judgements could not be read as a rating (after the retry). Invalid ones are excluded from the
    mean, never scored 0. With no valid rating at all, the mean and its CI are null.

Judge outages
    A judge server that stops answering is not a judgement: those items are ``not_judged`` (logged samples
    carry ``judge_failed``), excluded from ``n`` and the mean, and the aggregation warns with their count.
    The model's answers are kept in lmms-eval's samples, so ``cadvi judge`` can rate them later.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import cadqa
from builders.judge import JudgeItem, LmmsEvalAsk, LmmsEvalJudgeSettings, RatingSummary, judge
from builders.llm.base import BackendUnavailableError
from builders.release.origin import HUB_REPO, HUB_REVISION
from builders.release.sources import file_sha256
from eval_tasks import data
from eval_tasks.data import doc_to_messages, doc_to_text, doc_to_visual

__all__ = [
    "doc_to_messages",
    "doc_to_text",
    "doc_to_visual",
    "judge_histogram",
    "judge_invalid",
    "judge_rating",
    "load_docs",
    "process_docs",
    "process_results",
    "question_file",
]

logger = logging.getLogger(__name__)

BENCHMARK = "cadqa"
HUB_FILE = "json_files/CaD_QA_eval.jsonl"
METRICS = ("judge_rating", "judge_histogram", "judge_invalid")


def question_file() -> Path:
    """The official question file: ``$CADVI_EVAL_DATA_DIR/CaD_QA_eval.jsonl``, else the verified Hub download."""
    spec = data.benchmark(BENCHMARK)
    if os.environ.get(data.ANNOTATION_DIR_ENV):
        return data.annotation_file(BENCHMARK)
    from huggingface_hub import hf_hub_download

    try:
        path = Path(hf_hub_download(HUB_REPO, HUB_FILE, repo_type="dataset", revision=HUB_REVISION))
    except Exception as error:  # offline without a cached copy, no network, a moved file
        raise data.BenchmarkDataError(
            f"{BENCHMARK}: could not get {HUB_FILE} of the Hub dataset {HUB_REPO} at {HUB_REVISION} "
            f"({type(error).__name__}: {error}); set {data.ANNOTATION_DIR_ENV} to a folder holding {spec.file}"
        ) from error
    actual = file_sha256(path)
    if actual != spec.sha256:
        raise data.BenchmarkDataError(
            f"{BENCHMARK}: sha256 mismatch for {path}: expected {spec.sha256} ({HUB_REPO}@{HUB_REVISION}), "
            f"got {actual}; delete it from the Hugging Face cache to download it again, "
            f"or set {data.ANNOTATION_DIR_ENV}"
        )
    return path


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


@functools.cache
def _judge() -> tuple[LmmsEvalAsk, LmmsEvalJudgeSettings]:
    """lmms-eval's judge server, built once per process on the first result (not at import: listing tasks
    must not need a judge). ``lmms_eval.llm_judge`` is imported first so that its ``.env`` is loaded."""
    import lmms_eval.llm_judge  # noqa: F401  (loads .env from the working directory)

    settings = LmmsEvalJudgeSettings.from_env()
    return LmmsEvalAsk(settings), settings


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    """Judge one prediction; the judgement record (rating or None, raw texts, attempts) goes to every metric."""
    ask, settings = _judge()
    prediction = results[0] if results else ""
    item = JudgeItem(str(doc["question_id"]), doc["question"], doc["answer"], prediction or "")
    try:
        record = judge([item], ask, retries=settings.invalid_retries, warn_invalid=False).records[0].to_record()
    except BackendUnavailableError as error:  # the judge server is away: not a judgement, not a 0
        record = {
            "question_id": item.id,
            "rating": None,
            "valid": False,
            "judge_failed": True,
            "errors": [str(error)],
            "prediction": item.prediction,
            "judge_model": ask.model,
        }
    return {metric: record for metric in METRICS}


def _judged(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [result for result in results if not result.get("judge_failed")]


def _summary(results: list[dict[str, Any]]) -> RatingSummary:
    return RatingSummary.of(result["rating"] for result in _judged(results))


def judge_rating(results: list[dict[str, Any]]) -> dict[str, Any]:
    """``value`` (mean over valid ratings, null if none), ``ci_low``/``ci_high`` (95% bootstrap), ``n``,
    ``valid``, ``invalid``."""
    summary = _summary(results)
    not_judged = len(results) - summary.n
    if summary.invalid:
        logger.warning("cadqa: %s", summary.line())
    if not_judged:
        logger.warning(
            "cadqa: %d of %d answers were not judged (the judge server failed); the mean is over the judged ones "
            "only: rate the logged answers again with `cadvi judge`",
            not_judged,
            len(results),
        )
    return {
        "value": summary.mean,
        "ci_low": summary.ci_low,
        "ci_high": summary.ci_high,
        "confidence": summary.confidence,
        "n": summary.n,
        "valid": summary.valid,
        "invalid": summary.invalid,
        "not_judged": not_judged,
    }


def judge_histogram(results: list[dict[str, Any]]) -> dict[str, int]:
    """How many items got each rating, ``"0"`` to ``"5"`` (invalid ones are in ``judge_invalid``)."""
    return {str(rating): count for rating, count in _summary(results).histogram.items()}


def judge_invalid(results: list[dict[str, Any]]) -> int:
    """Judgements with no readable rating after the retry: excluded from the mean, not scored 0."""
    return sum(result["rating"] is None for result in _judged(results))
