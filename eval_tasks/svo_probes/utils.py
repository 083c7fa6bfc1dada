"""SVO-Probes (Hendricks & Nematzadeh, 2021) as CaD-VI evaluates it: 1,500 caption-to-image selections,
500 each probing the subject, the verb or the object (field ``category``), answer ``A``/``B``;
metrics: accuracy overall and per category (each with 95% CI and unparseable count)."""

from __future__ import annotations

from typing import Any

from eval_tasks import data, scoring
from eval_tasks.data import doc_to_messages, doc_to_text, doc_to_visual

__all__ = [
    "accuracy",
    "doc_to_messages",
    "doc_to_text",
    "doc_to_visual",
    "object_accuracy",
    "process_docs",
    "process_results",
    "subject_accuracy",
    "verb_accuracy",
]

BENCHMARK = "svo_probes"
OPTIONS = scoring.LETTER_OPTIONS_2
CATEGORIES = ("subject", "verb", "object")

process_docs = data.process_docs_for(BENCHMARK)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict]:
    result = scoring.choice_result(
        results[0], doc["answer"], OPTIONS, question_id=doc["question_id"], category=doc["category"]
    )
    # Every metric gets the same result; the per-category aggregations keep their own category.
    return {"accuracy": result, **{f"{category}_accuracy": result for category in CATEGORIES}}


accuracy = scoring.accuracy_aggregation
subject_accuracy = scoring.filtered(scoring.accuracy_aggregation, "category", "subject")
verb_accuracy = scoring.filtered(scoring.accuracy_aggregation, "category", "verb")
object_accuracy = scoring.filtered(scoring.accuracy_aggregation, "category", "object")
