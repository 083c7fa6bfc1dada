"""EQBEN (Wang et al., ICCV 2023) as CaD-VI evaluates it: 120 groups of two questions (``question_id``
``<k>_0``/``<k>_1``) over the same image pair with minimally different captions, answer ``A``/``B``.
Metrics: per-question accuracy, group accuracy (a group counts only if both questions are right;
chance 25%) and group accuracy per subset (the first folder of the image path), each with a 95% CI
(groups resampled) and the unparseable count."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from eval_tasks import data, scoring
from eval_tasks.data import doc_to_messages, doc_to_text, doc_to_visual

__all__ = [
    "SUBSETS",
    "accuracy",
    "doc_to_messages",
    "doc_to_text",
    "doc_to_visual",
    "group_accuracy",
    "group_accuracy_eqbenag",
    "group_accuracy_eqbengebc",
    "group_accuracy_eqbenkubric_attr",
    "group_accuracy_eqbenkubric_cnt",
    "group_accuracy_eqbenkubric_loc",
    "group_accuracy_eqbensd",
    "process_docs",
    "process_results",
]

BENCHMARK = "eqben"
OPTIONS = scoring.LETTER_OPTIONS_2
# The six subsets of the official file, 20 groups each (one metric each in eqben.yaml).
SUBSETS = ("eqbenag", "eqbengebc", "eqbenkubric_attr", "eqbenkubric_cnt", "eqbenkubric_loc", "eqbensd")


def group_fields(row: dict[str, Any]) -> dict[str, str]:
    return {
        "group": scoring.group_of_question_id(row["question_id"]),
        "subset": PurePosixPath(row["image"][0]).parts[0],
    }


process_docs = data.process_docs_for(BENCHMARK, extra=group_fields)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict]:
    result = scoring.choice_result(
        results[0], doc["answer"], OPTIONS, question_id=doc["question_id"], group=doc["group"], subset=doc["subset"]
    )
    return {
        "accuracy": result,
        "group_accuracy": result,
        **{f"group_accuracy_{subset}": result for subset in SUBSETS},
    }


accuracy = scoring.accuracy_aggregation
group_accuracy = scoring.group_accuracy
group_accuracy_eqbenag = scoring.filtered(scoring.group_accuracy, "subset", "eqbenag")
group_accuracy_eqbengebc = scoring.filtered(scoring.group_accuracy, "subset", "eqbengebc")
group_accuracy_eqbenkubric_attr = scoring.filtered(scoring.group_accuracy, "subset", "eqbenkubric_attr")
group_accuracy_eqbenkubric_cnt = scoring.filtered(scoring.group_accuracy, "subset", "eqbenkubric_cnt")
group_accuracy_eqbenkubric_loc = scoring.filtered(scoring.group_accuracy, "subset", "eqbenkubric_loc")
group_accuracy_eqbensd = scoring.filtered(scoring.group_accuracy, "subset", "eqbensd")
