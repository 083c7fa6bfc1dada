"""COLA multi-object (Ray et al., 2023) as CaD-VI evaluates it: 210 groups of two questions
(``question_id`` ``<k>_0``/``<k>_1``) over the same Visual Genome image pair with captions that swap
attributes between objects, answer ``A``/``B``. Metrics: per-question accuracy and group accuracy (a
group counts only if both are right; chance 25%), each with a 95% CI (groups resampled) and the
unparseable count."""

from __future__ import annotations

from typing import Any

from eval_tasks import data, scoring
from eval_tasks.data import doc_to_messages, doc_to_text, doc_to_visual

__all__ = [
    "accuracy",
    "doc_to_messages",
    "doc_to_text",
    "doc_to_visual",
    "group_accuracy",
    "process_docs",
    "process_results",
]

BENCHMARK = "cola"
OPTIONS = scoring.LETTER_OPTIONS_2


def group_fields(row: dict[str, Any]) -> dict[str, str]:
    return {"group": scoring.group_of_question_id(row["question_id"])}


process_docs = data.process_docs_for(BENCHMARK, extra=group_fields)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict]:
    result = scoring.choice_result(
        results[0], doc["answer"], OPTIONS, question_id=doc["question_id"], group=doc["group"]
    )
    return {"accuracy": result, "group_accuracy": result}


accuracy = scoring.accuracy_aggregation
group_accuracy = scoring.group_accuracy
