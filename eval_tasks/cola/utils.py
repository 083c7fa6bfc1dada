"""COLA multi-object (Ray et al., 2023) as CaD-VI evaluates it: 210 groups of two questions
(``question_id`` ``<k>_0``/``<k>_1``) over the same Visual Genome image pair with captions that swap
attributes between objects, answer ``A``/``B``. Metrics: per-question ``accuracy`` and
``group_accuracy`` (a group counts only if both are right; chance 25%), each with its 95% CI (groups
resampled), ``n`` and the unparseable count (group accuracy also ``n_questions`` and ``partial_groups``),
all plain numbers (:mod:`eval_tasks.metrics`)."""

from __future__ import annotations

from typing import Any

from eval_tasks import data, metrics, scoring

__all__ = ["TASK", "group_fields", "process_docs", "process_results"]

TASK = metrics.ChoiceTask(
    scoring.LETTER_OPTIONS_2,
    metrics.PlainMetrics(metrics.Summary("accuracy"), metrics.Summary("group_accuracy", grouped=True)),
    fields=("group",),
)


def group_fields(row: dict[str, Any]) -> dict[str, str]:
    return {"group": scoring.group_of_question_id(row["question_id"])}


process_docs = data.process_docs_for("cola", extra=group_fields)
process_results = TASK.process_results
__getattr__ = TASK.metrics.module_getattr()  # accuracy, group_accuracy_ci_low, ...: the aggregations the YAML names
