"""Phase-1 generation: image pairs -> prompts -> LLM -> validated CaD summaries (paper §3.1).

Each pair becomes one request (the rendered ``phase1.jinja``) keyed by a hash of the template,
the inputs, the model and the sampling settings; a summary that fails validation is a reject with
its reason, retried with a new seed up to ``max_attempts``. :class:`Phase1Task` is only that: the
run itself (resume, retries, sharding, outages, too-long prompts, progress) is
:func:`builders.generate.run_task`, shared by every stage.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from builders.generate import Accepted, GenerationTask, Outcome, Rejected, RunSummary, run_identity, run_task
from builders.generate.task import attempt_seed
from builders.llm.base import Backend, Result, Sampling
from builders.pair_file import PairRecord
from builders.runs import InputFile, request_key
from builders.summary import SummaryBounds, check_summary, structured
from prompts import load_template

__all__ = ["DEFAULT_SAMPLING", "Phase1Settings", "Phase1Task", "RunSummary", "attempt_seed", "run_phase1"]

# Mixtral-8x7B-Instruct, max 750 new tokens (facts §2). Temperature and top-p were not
# published: ours, chosen for "diverse and creative" summaries as the paper asks.
DEFAULT_SAMPLING = Sampling(max_tokens=750, temperature=0.7, top_p=0.95, seed=0)
# Two captions of the caption readers' default bound (8,000 characters each) and the instruction fit.
DEFAULT_MAX_PROMPT_CHARS = 20_000


@dataclass(frozen=True)
class Phase1Settings:
    template: str = "phase1.jinja"
    sampling: Sampling = DEFAULT_SAMPLING
    max_attempts: int = 3
    bounds: SummaryBounds = field(default_factory=SummaryBounds)
    system_prompt: str | None = None  # unknown whether the original used one; none by default
    # Longer rendered prompts are final rejects, never sent (not part of the run's identity: it changes
    # which requests run, not what a request returns).
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS


class Phase1Task(GenerationTask[PairRecord]):
    """Two captions -> a CaD summary with both sections, refering to Image 1 and Image 2, within bounds."""

    stage = "phase1"
    noun = "pairs"

    def __init__(self, settings: Phase1Settings = Phase1Settings()) -> None:
        self.settings = settings
        self.template = load_template(settings.template)
        self.sampling = settings.sampling
        self.max_attempts = settings.max_attempts
        self.max_prompt_chars = settings.max_prompt_chars
        self._sampling = dataclasses.asdict(settings.sampling)

    def identity(self) -> dict[str, Any]:
        return {
            "sampling": self._sampling,
            "template": self.settings.template,
            "template_sha256": self.template.sha256,
            "system_prompt": self.settings.system_prompt,
            "max_attempts": self.settings.max_attempts,
            "bounds": dataclasses.asdict(self.settings.bounds),
        }

    def key(self, item: PairRecord, model: str) -> str:
        return request_key(
            "phase1",
            self.template.sha256,
            item.images,
            item.captions,
            model,
            self._sampling,
            self.settings.system_prompt,
        )

    def format_input(self, item: PairRecord) -> tuple[dict[str, Any], ...]:
        prompt = self.template.render(caption_1=item.captions[0], caption_2=item.captions[1])
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        if self.settings.system_prompt:
            messages.insert(0, {"role": "system", "content": self.settings.system_prompt})
        return tuple(messages)

    def format_output(self, item: PairRecord, result: Result) -> Outcome:
        parsed, reason = check_summary(result.text, self.settings.bounds, finish_reason=result.finish_reason)
        return Accepted({"summary": structured(parsed)}) if parsed is not None else Rejected(reason or "invalid")

    def record_fields(self, item: PairRecord) -> dict[str, Any]:
        return {
            "pair_id": item.pair_id,
            "images": list(item.images),
            "captions": list(item.captions),
            "shared_nouns": list(item.shared_nouns),
            "bin": item.bin,
            "sources": list(item.sources),
            "template": self.settings.template,
            "template_sha256": self.template.sha256,
        }


def phase1_identity(settings: Phase1Settings, backend: str, model: str) -> dict[str, Any]:
    """What a phase-1 run folder must match to be resumed (known before any model loads)."""
    return run_identity(Phase1Task(settings), backend, model)


def run_phase1(
    pairs: Sequence[PairRecord],
    backend: Backend,
    out: str | os.PathLike,
    settings: Phase1Settings = Phase1Settings(),
    *,
    num_shards: int = 1,
    shard_index: int = 0,
    inputs: Sequence[InputFile] | dict[str, str] | None = None,
    extend: bool = False,
    max_failures_in_a_row: int = 8,
    console: Console | None = None,
    progress: bool = True,
) -> RunSummary:
    """Generate a summary for every pair of this shard that has none yet (see :func:`builders.generate.run_task`)."""
    return run_task(
        Phase1Task(settings),
        pairs,
        backend,
        out,
        num_shards=num_shards,
        shard_index=shard_index,
        inputs=inputs,
        extend=extend,
        max_failures_in_a_row=max_failures_in_a_row,
        console=console,
        progress=progress,
    )
