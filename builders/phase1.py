"""Phase-1 generation: image pairs -> prompts -> LLM -> validated CaD summaries (paper §3.1).

Each pair becomes one request (the rendered ``phase1.jinja``) keyed by a hash of the template,
the inputs, the model and the sampling settings. An output that fails validation is kept in the
rejects file with its reason and retried with a new seed, up to ``max_attempts``. The run folder
is a :class:`builders.runs.RunStore`, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from builders.llm.base import Backend, Request, Result, Sampling
from builders.pair_file import PairRecord
from builders.release.origin import package_version
from builders.runs import RunStore, request_key
from builders.summary import SummaryBounds, check_summary, structured
from prompts import Template, load_template

# Mixtral-8x7B-Instruct, max 750 new tokens (facts §2). Temperature and top-p were not
# published: ours, chosen for "diverse and creative" summaries as the paper asks.
DEFAULT_SAMPLING = Sampling(max_tokens=750, temperature=0.7, top_p=0.95, seed=0)


@dataclass(frozen=True)
class Phase1Settings:
    template: str = "phase1.jinja"
    sampling: Sampling = DEFAULT_SAMPLING
    max_attempts: int = 3
    bounds: SummaryBounds = field(default_factory=SummaryBounds)
    system_prompt: str | None = None  # unknown whether the original used one; none by default


@dataclass
class RunSummary:
    """What a run did. ``valid + rejected == attempted`` (attempts made by this run)."""

    items: int = 0  # pairs of this shard
    already_done: int = 0  # finished before this run (resumed)
    attempted: int = 0
    valid: int = 0
    rejected: int = 0
    exhausted: int = 0  # pairs that used up every attempt without a valid summary
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"{self.items:,} pairs in this shard: {self.already_done:,} already done; this run attempted "
            f"{self.attempted:,} = {self.valid:,} valid + {self.rejected:,} rejected; "
            f"{self.exhausted:,} pairs exhausted {self.seconds:.1f} s"
        )


def run_phase1(
    pairs: Sequence[PairRecord],
    backend: Backend,
    out: str | os.PathLike,
    settings: Phase1Settings = Phase1Settings(),
    *,
    num_shards: int = 1,
    shard_index: int = 0,
    inputs: dict[str, str] | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> RunSummary:
    """Generate a summary for every pair of this shard that has none yet; returns what it did."""
    template = load_template(settings.template)
    sampling = dataclasses.asdict(settings.sampling)
    identity = {
        "stage": "phase1",
        "backend": backend.name,
        "model": backend.model,
        "sampling": sampling,
        "template": settings.template,
        "template_sha256": template.sha256,
        "system_prompt": settings.system_prompt,
        "max_attempts": settings.max_attempts,
        "bounds": dataclasses.asdict(settings.bounds),
    }
    details = {"backend": backend.describe(), "inputs": inputs or {}, "version": package_version()}
    summary = RunSummary()
    started = time.perf_counter()
    with RunStore(Path(out), identity, details, num_shards=num_shards, shard_index=shard_index) as store:
        items = {}
        for pair in pairs:
            key = request_key(
                "phase1", template.sha256, pair.images, pair.captions, backend.model, sampling, settings.system_prompt
            )
            if store.mine(key):
                items[key] = pair
        summary.items = len(items)
        summary.already_done = sum(1 for k in items if k in store.done or _exhausted(store, k, settings))
        console = console or Console()
        with _progress(console, enabled=progress) as bar:
            task = bar.add_task("phase 1", total=summary.items, completed=summary.already_done, valid=0, rejected=0)
            while pending := [k for k in items if k not in store.done and not _exhausted(store, k, settings)]:
                requests = [_request(k, items[k], store.rejected_attempts[k] + 1, template, settings) for k in pending]
                for result in backend.generate(requests):
                    key, attempt = result.key.rsplit("#", 1)
                    record = _record(key, int(attempt), items[key], result, settings, template.sha256, backend)
                    summary.attempted += 1
                    parsed, reason = (
                        (None, f"request failed: {result.error}")
                        if result.error
                        else check_summary(result.text, settings.bounds, finish_reason=result.finish_reason)
                    )
                    if parsed is not None:
                        store.add({**record, "summary": structured(parsed)})
                        summary.valid += 1
                        bar.advance(task)
                    else:
                        store.reject({**record, "reason": reason})
                        summary.rejected += 1
                        if _exhausted(store, key, settings):
                            summary.exhausted += 1
                            bar.advance(task)
                    bar.update(task, valid=summary.valid, rejected=summary.rejected)
    summary.seconds = time.perf_counter() - started
    return summary


def _exhausted(store: RunStore, key: str, settings: Phase1Settings) -> bool:
    return key not in store.done and store.rejected_attempts[key] >= settings.max_attempts


def _request(key: str, pair: PairRecord, attempt: int, template: Template, settings: Phase1Settings) -> Request:
    prompt = template.render(caption_1=pair.captions[0], caption_2=pair.captions[1])
    messages: list[dict[str, str]] = [{"role": "user", "content": prompt}]
    if settings.system_prompt:
        messages.insert(0, {"role": "system", "content": settings.system_prompt})
    sampling = dataclasses.replace(settings.sampling, seed=attempt_seed(settings.sampling.seed, key, attempt))
    return Request(key=f"{key}#{attempt}", messages=tuple(messages), sampling=sampling)


def attempt_seed(base: int | None, key: str, attempt: int) -> int:
    """A new seed per attempt (a retry must not repeat the rejected sample), stable across reruns."""
    return int(request_key("seed", base, key, attempt)[:8], 16) & 0x7FFFFFFF


def _record(
    key: str,
    attempt: int,
    pair: PairRecord,
    result: Result,
    settings: Phase1Settings,
    template_sha: str,
    backend: Backend,
) -> dict[str, Any]:
    return {
        "key": key,
        "attempt": attempt,
        "pair_id": pair.pair_id,
        "images": list(pair.images),
        "captions": list(pair.captions),
        "shared_nouns": list(pair.shared_nouns),
        "bin": pair.bin,
        "template": settings.template,
        "template_sha256": template_sha,
        "backend": backend.name,
        "model": backend.model,
        "seed": attempt_seed(settings.sampling.seed, key, attempt),
        "text": result.text,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "finish_reason": result.finish_reason,
    }


class ThroughputColumn(ProgressColumn):
    """Finished pairs per second (valid or exhausted), over rich's sliding window."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.2f}/s" if task.speed else "-/s")


def _progress(console: Console, *, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        ThroughputColumn(),
        TextColumn("[green]{task.fields[valid]} valid"),
        TextColumn("[red]{task.fields[rejected]} rejected"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )
