"""NLVR2 (Suhr et al., 2019) as CaD-VI evaluates it: 150 statements over 75 test1 image pairs, answer
``True``/``False``; metrics: ``accuracy`` with its 95% CI, ``n`` and the unparseable count, each a plain
number (:mod:`eval_tasks.metrics`)."""

from __future__ import annotations

from eval_tasks import data, metrics, scoring

__all__ = ["TASK", "process_docs", "process_results"]

TASK = metrics.ChoiceTask(scoring.TRUE_FALSE_OPTIONS, metrics.PlainMetrics(metrics.Summary("accuracy")))

process_docs = data.process_docs_for("nlvr2")
process_results = TASK.process_results
__getattr__ = TASK.metrics.module_getattr()  # accuracy, accuracy_ci_low, ...: the aggregations the YAML names
