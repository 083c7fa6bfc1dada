"""NLVR2 (Suhr et al., 2019) as CaD-VI evaluates it: 150 statements over 75 test1 image pairs, answer
``True``/``False``; metric: accuracy (with 95% CI and unparseable count)."""

from __future__ import annotations

from typing import Any

from eval_tasks import data, scoring
from eval_tasks.data import doc_to_messages, doc_to_text, doc_to_visual

__all__ = ["accuracy", "doc_to_messages", "doc_to_text", "doc_to_visual", "process_docs", "process_results"]

BENCHMARK = "nlvr2"
OPTIONS = scoring.TRUE_FALSE_OPTIONS

process_docs = data.process_docs_for(BENCHMARK)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict]:
    result = scoring.choice_result(results[0], doc["answer"], OPTIONS, question_id=doc["question_id"])
    return {"accuracy": result}


accuracy = scoring.accuracy_aggregation
