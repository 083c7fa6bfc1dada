"""Phase-1 generation: image pairs -> prompts -> LLM -> validated CaD summaries (paper §3.1).

Each pair becomes one request (the rendered ``phase1.jinja``) keyed by a hash of the template,
the inputs, the model and the sampling settings. An output that fails validation is kept in the
rejects file with its reason and retried with a new seed, up to ``max_attempts``. The run folder
is a :class:`builders.runs.RunStore`, so an interrupted run resumes where it stopped.

A failure of the model server is not a rejected output: a request that failed in transport
(refused, timed out, 5xx after the backend's retries, dropped) uses up no attempt and leaves its
pair to do, for a rerun. The server is checked before the first request, and the run stops
(:class:`BackendUnavailableError`, carrying the :class:`RunSummary`) when ``max_failures_in_a_row``
requests fail in a row. A prompt too long for the model (``max_prompt_chars``, or the backend's
context window) is a final reject, found before the model runs.
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

from builders.llm.base import (
    TOO_LONG,
    Backend,
    BackendUnavailableError,
    CircuitBreaker,
    Request,
    Result,
    Sampling,
)
from builders.pair_file import PairRecord
from builders.release.origin import package_version
from builders.runs import InputFile, RunStore, request_key
from builders.summary import SummaryBounds, check_summary, structured
from prompts import Template, load_template

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


@dataclass
class RunSummary:
    """What a run did. ``valid + rejected == attempted`` (attempts made by this run).

    ``failed`` requests (the model server failed) are not attempts: their pairs are ``left`` to do.
    """

    items: int = 0  # pairs of this shard
    already_done: int = 0  # finished before this run (resumed)
    attempted: int = 0
    valid: int = 0
    rejected: int = 0
    exhausted: int = 0  # pairs that used up every attempt without a valid summary (or can never fit)
    failed: int = 0  # requests the model server failed (not attempts; their pairs stay to do)
    left: int = 0  # pairs of this shard still to do when the run ended
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """Every pair of the shard has a valid summary or used up its attempts."""
        return self.left == 0

    def line(self) -> str:
        text = (
            f"{self.items:,} pairs in this shard: {self.already_done:,} already done; this run attempted "
            f"{self.attempted:,} = {self.valid:,} valid + {self.rejected:,} rejected; "
            f"{self.exhausted:,} pairs exhausted"
        )
        if self.failed:
            text += f"; {self.failed:,} requests failed at the model server (not counted as attempts)"
        if self.left:
            text += f"; {self.left:,} pairs left to do (rerun to resume)"
        return f"{text}; {self.seconds:.1f} s"


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
    """Generate a summary for every pair of this shard that has none yet; returns what it did.

    ``inputs`` (the pairs file and its hash) go into the manifest; a run folder made from other inputs
    is refused unless ``extend``. Raises :class:`BackendUnavailableError` (with ``.summary``) when the
    backend fails its health check or ``max_failures_in_a_row`` requests in a row.
    """
    template = load_template(settings.template)
    sampling = dataclasses.asdict(settings.sampling)
    identity = phase1_identity(settings, backend.name, backend.model)
    details = {
        "backend": backend.describe(),
        "version": package_version(),
        "max_prompt_chars": settings.max_prompt_chars,
    }
    started = time.perf_counter()
    store = RunStore(
        Path(out), identity, details, num_shards=num_shards, shard_index=shard_index, inputs=inputs, extend=extend
    )
    with store:
        items = {}
        for pair in pairs:
            key = request_key(
                "phase1", template.sha256, pair.images, pair.captions, backend.model, sampling, settings.system_prompt
            )
            if store.mine(key):
                items[key] = pair
        run = _Run(store, items, settings, template, backend)
        try:
            run.generate(console or Console(), progress=progress, breaker=CircuitBreaker(max_failures_in_a_row))
        except BackendUnavailableError as error:
            error.summary = run.finish(started)  # type: ignore[attr-defined]
            raise
    return run.finish(started)


def phase1_identity(settings: Phase1Settings, backend: str, model: str) -> dict[str, Any]:
    """What a phase-1 run folder must match to be resumed (known before any model loads)."""
    return {
        "stage": "phase1",
        "backend": backend,
        "model": model,
        "sampling": dataclasses.asdict(settings.sampling),
        "template": settings.template,
        "template_sha256": load_template(settings.template).sha256,
        "system_prompt": settings.system_prompt,
        "max_attempts": settings.max_attempts,
        "bounds": dataclasses.asdict(settings.bounds),
    }


class _Run:
    """One run over the items of a shard: what to send next and where each outcome goes."""

    def __init__(
        self,
        store: RunStore,
        items: dict[str, PairRecord],
        settings: Phase1Settings,
        template: Template,
        backend: Backend,
    ) -> None:
        self.store, self.items, self.settings, self.template, self.backend = store, items, settings, template, backend
        self.deferred: set[str] = set()  # transport failures of this run: left for a rerun
        self.summary = RunSummary(items=len(items), already_done=sum(map(self.settled, items)))

    def settled(self, key: str) -> bool:
        return key in self.store.done or _exhausted(self.store, key, self.settings)

    def todo(self) -> list[str]:
        return [key for key in self.items if not self.settled(key) and key not in self.deferred]

    def generate(self, console: Console, *, progress: bool, breaker: CircuitBreaker) -> None:
        if not self.todo():
            return
        self.backend.check()
        summary = self.summary
        with _progress(console, enabled=progress) as bar:
            task = bar.add_task("phase 1", total=summary.items, completed=summary.already_done, valid=0, rejected=0)

            def settle(key: str, result: Result) -> None:
                if self.settle(key, result):
                    bar.advance(task)
                bar.update(task, valid=summary.valid, rejected=summary.rejected)

            while pending := self.todo():
                requests = []
                for key in pending:
                    request = _request(
                        key, self.items[key], self.store.rejected_attempts[key] + 1, self.template, self.settings
                    )
                    too_long = self.too_long(request)
                    if too_long:  # never sent: one huge prompt stalls or fails the model
                        settle(key, Result.failure(request.key, too_long, TOO_LONG))
                    else:
                        requests.append(request)
                results = self.backend.generate(requests)
                try:
                    for result in results:
                        key = result.key.rsplit("#", 1)[0]
                        tripped = breaker.record(result)
                        if result.transport_failed:
                            self.deferred.add(key)
                            summary.failed += 1
                        else:
                            settle(key, result)
                        if tripped:
                            raise BackendUnavailableError(
                                f"{breaker.in_a_row} requests in a row failed at the model server "
                                f"(last: {breaker.last_error})"
                            )
                finally:
                    close = getattr(results, "close", None)
                    if close is not None:  # cancels what a server backend still has in flight
                        close()

    def too_long(self, request: Request) -> str | None:
        chars = sum(len(_text(message.get("content", ""))) for message in request.messages)
        if chars <= self.settings.max_prompt_chars:
            return None
        return f"prompt too long: {chars:,} characters > max_prompt_chars {self.settings.max_prompt_chars:,}"

    def settle(self, key: str, result: Result) -> bool:
        """Record one attempt: a valid summary, or a reject with its reason (final when too long).

        Returns whether the pair is now finished (valid, or out of attempts).
        """
        attempt = int(result.key.rsplit("#", 1)[1])
        record = _record(key, attempt, self.items[key], result, self.settings, self.template.sha256, self.backend)
        self.summary.attempted += 1
        if result.error:
            parsed, reason = None, f"request failed: {result.error}"
        else:
            parsed, reason = check_summary(result.text, self.settings.bounds, finish_reason=result.finish_reason)
        if parsed is not None:
            self.store.add({**record, "summary": structured(parsed)})
            self.summary.valid += 1
            return True
        final = {"final": True} if result.failure_kind == TOO_LONG else {}
        self.store.reject({**record, "reason": reason, **final})
        self.summary.rejected += 1
        if _exhausted(self.store, key, self.settings):
            self.summary.exhausted += 1
            return True
        return False

    def finish(self, started: float) -> RunSummary:
        self.summary.left = sum(1 for key in self.items if not self.settled(key))
        self.summary.seconds = time.perf_counter() - started
        return self.summary


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def _exhausted(store: RunStore, key: str, settings: Phase1Settings) -> bool:
    """Out of attempts, or rejected for good (a prompt that can never fit)."""
    return key not in store.done and (store.rejected_attempts[key] >= settings.max_attempts or key in store.final)


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
        "sources": list(pair.sources),
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
