"""BISON (Hu et al., 2019) as CaD-VI evaluates it: 150 "which image suits the caption better?" questions
over COCO val2014 image pairs, answer ``A``/``B``; metrics: ``accuracy`` with its 95% CI, ``n`` and the
unparseable count, each a plain number (:mod:`eval_tasks.metrics`)."""

from __future__ import annotations

from eval_tasks import data, metrics, scoring

__all__ = ["TASK", "process_docs", "process_results"]

TASK = metrics.ChoiceTask(scoring.LETTER_OPTIONS_2, metrics.PlainMetrics(metrics.Summary("accuracy")))

process_docs = data.process_docs_for("bison")
process_results = TASK.process_results
__getattr__ = TASK.metrics.module_getattr()  # accuracy, accuracy_ci_low, ...: the aggregations the YAML names
