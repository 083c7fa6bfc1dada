"""EQBEN (Wang et al., ICCV 2023) as CaD-VI evaluates it: 120 groups of two questions (``question_id``
``<k>_0``/``<k>_1``) over the same image pair with minimally different captions, answer ``A``/``B``.
Metrics: per-question ``accuracy``, ``group_accuracy`` (a group counts only if both questions are right;
chance 25%) and ``group_accuracy_<subset>`` per subset (the first folder of the image path), each with
its 95% CI (groups resampled), ``n`` and the unparseable count (group summaries also ``n_questions``
and ``partial_groups``), all plain numbers (:mod:`eval_tasks.metrics`)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from eval_tasks import data, metrics, scoring

__all__ = ["SUBSETS", "TASK", "group_fields", "process_docs", "process_results"]

# The six subsets of the official file, 20 groups each.
SUBSETS = ("eqbenag", "eqbengebc", "eqbenkubric_attr", "eqbenkubric_cnt", "eqbenkubric_loc", "eqbensd")
TASK = metrics.ChoiceTask(
    scoring.LETTER_OPTIONS_2,
    metrics.PlainMetrics(
        metrics.Summary("accuracy"),
        metrics.Summary("group_accuracy", grouped=True),
        *(metrics.Summary(f"group_accuracy_{subset}", grouped=True, where=("subset", subset)) for subset in SUBSETS),
    ),
    fields=("group", "subset"),
)


def group_fields(row: dict[str, Any]) -> dict[str, str]:
    return {
        "group": scoring.group_of_question_id(row["question_id"]),
        "subset": PurePosixPath(row["image"][0]).parts[0],
    }


process_docs = data.process_docs_for("eqben", extra=group_fields)
process_results = TASK.process_results
__getattr__ = TASK.metrics.module_getattr()  # group_accuracy_eqbensd_ci_low, ...: the aggregations the YAML names
