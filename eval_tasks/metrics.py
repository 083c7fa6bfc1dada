"""How the scorer's summaries reach lmms-eval: every figure its own plain-number metric.

lmms-eval prints and stores each metric's aggregate as it is: a dict becomes an unreadable blob in its
table (with "Stderr N/A") and a nested object in its results JSON. So every figure of every summary of
:mod:`eval_tasks.scoring` is its own metric, as lmms-eval's own tasks report theirs. A summary called
``accuracy`` is reported as

* ``accuracy`` (the value, in percent), ``accuracy_ci_low`` and ``accuracy_ci_high`` (the 95% bootstrap
  interval), ``accuracy_n`` (questions scored) and ``accuracy_unparseable`` (answers that named no option,
  or several: scored wrong);
* a group summary (``grouped=True``, e.g. ``group_accuracy``) also as ``<name>_n_questions`` and
  ``<name>_partial_groups`` (groups cut by ``--limit``); its ``n`` counts groups.

An empty selection (a subset that ``--limit`` left out) has the value ``None`` (``null`` in the JSON).
lmms-eval's own stderr stays "N/A" for these aggregations: it computes one only for its built-in
aggregation functions; the bootstrap interval is the uncertainty to read.

lmms-eval hands every metric its own list of per-sample results and calls its aggregation once per
metric; the summary behind a metric's figures is therefore computed once and cached on its inputs (the
correctness, parse and group of each result, in order: the bootstrap is deterministic).

A task's ``utils.py`` declares one :class:`ChoiceTask` (its options, the doc fields its summaries select
on, its summaries) and hands lmms-eval ``TASK.process_results`` and, as the module's ``__getattr__``,
the aggregations (see :meth:`PlainMetrics.module_getattr`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eval_tasks.scoring import accuracy_aggregation, choice_result, group_accuracy, select

SUMMARY_FIELDS = ("value", "ci_low", "ci_high", "n", "unparseable")
GROUP_SUMMARY_FIELDS = (*SUMMARY_FIELDS, "n_questions", "partial_groups")
# The ``higher_is_better`` of each figure in the task YAMLs (None: a count, neither).
HIGHER_IS_BETTER: dict[str, bool | None] = {
    "value": True,
    "ci_low": True,
    "ci_high": True,
    "n": None,
    "unparseable": False,
    "n_questions": None,
    "partial_groups": None,
}

Aggregation = Callable[[list[dict]], "float | int | None"]


@dataclass(frozen=True)
class Summary:
    """One summary a task reports: per-question (``grouped``: group) accuracy over all its results, or over
    those whose field ``where[0]`` is ``where[1]`` (SVO-Probes' ``category``, EQBEN's ``subset``)."""

    name: str
    grouped: bool = False
    where: tuple[str, str] | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return GROUP_SUMMARY_FIELDS if self.grouped else SUMMARY_FIELDS

    def metric(self, field: str) -> str:
        """The lmms-eval metric name of one figure: ``accuracy`` for the value, ``accuracy_ci_low``, ..."""
        return self.name if field == "value" else f"{self.name}_{field}"

    def __call__(self, results: Sequence[dict]) -> dict[str, float | int | None]:
        """The summary dict: the numbers of :func:`~eval_tasks.scoring.accuracy_aggregation` (or
        :func:`~eval_tasks.scoring.group_accuracy`) of the selected results."""
        key = tuple(
            (int(result["correct"]), bool(result.get("parsed", True)), result["group"] if self.grouped else None)
            for result in select(results, self.where)
        )
        return dict(_summary(self.grouped, key))


@functools.lru_cache(maxsize=256)
def _summary(grouped: bool, key: tuple[tuple[int, bool, Any], ...]) -> dict[str, float | int | None]:
    """The summary of the results that ``key`` describes (cached: one bootstrap per summary, not per figure)."""
    results = [{"correct": correct, "parsed": parsed, "group": group} for correct, parsed, group in key]
    return group_accuracy(results) if grouped else accuracy_aggregation(results)


class PlainMetrics:
    """A task's lmms-eval metrics: every figure of every :class:`Summary`, by metric name."""

    def __init__(self, *summaries: Summary) -> None:
        self.summaries = summaries
        self._figures: dict[str, tuple[Summary, str]] = {}
        for summary in summaries:
            for field in summary.fields:
                name = summary.metric(field)
                if name in self._figures:
                    raise ValueError(f"metric {name!r} is defined twice")
                self._figures[name] = (summary, field)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._figures)

    def higher_is_better(self, name: str) -> bool | None:
        return HIGHER_IS_BETTER[self._figures[name][1]]

    def per_sample(self, result: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """What ``process_results`` returns: the sample's result under every metric name."""
        return dict.fromkeys(self._figures, result)

    def aggregation(self, name: str) -> Aggregation:
        """The aggregation of metric ``name``: one figure of its summary."""
        summary, field = self._figures[name]

        def aggregate(results: list[dict]) -> float | int | None:
            return summary(results)[field]

        aggregate.__name__ = aggregate.__qualname__ = name
        aggregate.__doc__ = f"The {field} of the summary {summary.name!r} (eval_tasks.metrics)."
        return aggregate

    def module_getattr(self) -> Callable[[str], Aggregation]:
        """A module ``__getattr__`` (PEP 562) answering every metric name with its aggregation.

        lmms-eval resolves ``aggregation: !function utils.<metric>`` with ``getattr(module, name)``, which
        falls back to the module's ``__getattr__``: each metric the task YAML names finds its aggregation
        without a line of Python per metric. ``tests/test_eval_tasks.py`` checks that every task YAML
        lists exactly :attr:`names`, with :meth:`higher_is_better`.
        """

        def __getattr__(name: str) -> Aggregation:
            if name not in self._figures:
                raise AttributeError(f"no metric or attribute {name!r}")
            return self.aggregation(name)

        return __getattr__


@dataclass(frozen=True, repr=False)
class ChoiceTask:
    """A closed-answer task as its ``utils.py`` maps it onto the scorer: the answer options, the doc fields
    copied into each result (for the summaries' ``where`` and groups) and the summaries it reports."""

    options: Mapping[str, Sequence[str]]
    metrics: PlainMetrics
    fields: tuple[str, ...] = ()

    def __repr__(self) -> str:  # lmms-eval writes it into the results JSON's task config
        summaries = ", ".join(summary.name for summary in self.metrics.summaries)
        return f"ChoiceTask(options={'/'.join(self.options)}, summaries={summaries}, fields={','.join(self.fields)})"

    def process_results(self, doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
        """lmms-eval's ``process_results``: the parsed answer scored, under every metric name."""
        extra = {field: doc[field] for field in self.fields}
        return self.metrics.per_sample(
            choice_result(results[0], doc["answer"], self.options, question_id=doc["question_id"], **extra)
        )
