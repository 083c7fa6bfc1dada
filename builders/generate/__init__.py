"""One generation framework for every stage: a task contract and the one runner that runs it.

A stage (phase-1 summaries, the CaD-QA judge, phase-2 refinement, CaD-QA questions) is a
:class:`GenerationTask`; :func:`run_task` runs any of them over a :class:`~builders.runs.RunStore`
run folder with the same resume, retry, sharding, outage and progress behaviour.
"""

from builders.generate.runner import RunSummary, run_identity, run_task
from builders.generate.task import Accepted, GenerationTask, Outcome, Rejected, attempt_seed

__all__ = [
    "Accepted",
    "GenerationTask",
    "Outcome",
    "Rejected",
    "RunSummary",
    "attempt_seed",
    "run_identity",
    "run_task",
]
