"""SVO-Probes (Hendricks & Nematzadeh, 2021) as CaD-VI evaluates it: 1,500 caption-to-image selections,
500 each probing the subject, the verb or the object (field ``category``), answer ``A``/``B``;
metrics: ``accuracy`` overall and per category (``subject_accuracy``, ``verb_accuracy``,
``object_accuracy``), each with its 95% CI, ``n`` and the unparseable count as plain numbers
(:mod:`eval_tasks.metrics`)."""

from __future__ import annotations

from eval_tasks import data, metrics, scoring

__all__ = ["CATEGORIES", "TASK", "process_docs", "process_results"]

CATEGORIES = ("subject", "verb", "object")
TASK = metrics.ChoiceTask(
    scoring.LETTER_OPTIONS_2,
    metrics.PlainMetrics(
        metrics.Summary("accuracy"),
        *(metrics.Summary(f"{category}_accuracy", where=("category", category)) for category in CATEGORIES),
    ),
    fields=("category",),
)

process_docs = data.process_docs_for("svo_probes")
process_results = TASK.process_results
__getattr__ = TASK.metrics.module_getattr()  # accuracy, verb_accuracy_ci_low, ...: the aggregations the YAML names
