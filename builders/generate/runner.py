"""The one runner of every generation stage: resumable, sharded, retrying, honest about outages.

:func:`run_task` takes a :class:`~builders.generate.task.GenerationTask`, its items and a backend,
and writes a :class:`~builders.runs.RunStore` run folder: one record per item keyed by the task's
request key, rejects with their reasons, a manifest of the settings and inputs. What it guarantees
for every stage:

* **Resume**: finished keys are skipped; after a SIGKILL the torn last line is cut, so every record
  is in the store exactly once.
* **Retries with new seeds**: a rejected output is retried, up to the task's ``max_attempts``, with a
  seed derived from the key and the attempt; ``valid + rejected == attempted``.
* **Outages are not rejects**: a request that failed in transport uses up no attempt and leaves its
  item to do. The backend is health-checked before the first request; ``max_failures_in_a_row``
  transport failures stop the run (:class:`BackendUnavailableError`, with the summary).
* **A misconfigured backend is not a reject either**: while the backend has answered nothing, the
  requests it refuses (a wrong model name, a 4xx) are held back; when ``max_failures_in_a_row`` are
  refused, or a whole round, :class:`BackendRefusedError` stops the run and none counts as an attempt.
* **Long prompts** over the task's ``max_prompt_chars`` (or the backend's context) are final rejects,
  found before the model runs.
* **Sharding**: ``num_shards`` / ``shard_index`` split the keys between processes or machines.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Task as ProgressTask
from rich.text import Text

from builders.generate.task import Accepted, GenerationTask, Item
from builders.llm.base import (
    REQUEST,
    TOO_LONG,
    Backend,
    BackendRefusedError,
    BackendUnavailableError,
    CircuitBreaker,
    Request,
    Result,
)
from builders.release.origin import package_version
from builders.runs import InputFile, RunStore


@dataclass
class RunSummary:
    """What a run did. ``valid + rejected == attempted`` (attempts made by this run).

    ``failed`` requests (the model server failed) are not attempts: their items are ``left`` to do.
    """

    items: int = 0  # items of this shard
    already_done: int = 0  # finished before this run (resumed)
    attempted: int = 0
    valid: int = 0
    rejected: int = 0
    exhausted: int = 0  # items that used up every attempt without a valid output (or can never fit)
    failed: int = 0  # requests the model server failed (not attempts; their items stay to do)
    left: int = 0  # items of this shard still to do when the run ended
    seconds: float = 0.0
    noun: str = "items"

    @property
    def complete(self) -> bool:
        """Every item of the shard has a valid output or used up its attempts."""
        return self.left == 0

    def line(self) -> str:
        text = (
            f"{self.items:,} {self.noun} in this shard: {self.already_done:,} already done; this run attempted "
            f"{self.attempted:,} = {self.valid:,} valid + {self.rejected:,} rejected; "
            f"{self.exhausted:,} {self.noun} exhausted"
        )
        if self.failed:
            text += f"; {self.failed:,} requests failed at the model server (not counted as attempts)"
        if self.left:
            text += f"; {self.left:,} {self.noun} left to do (rerun to resume)"
        return f"{text}; {self.seconds:.1f} s"


def run_task(
    task: GenerationTask[Item],
    items: Iterable[Item],
    backend: Backend,
    out: str | os.PathLike,
    *,
    num_shards: int = 1,
    shard_index: int = 0,
    inputs: Sequence[InputFile] | Mapping[str, str] | None = None,
    extend: bool = False,
    max_failures_in_a_row: int = 8,
    console: Console | None = None,
    progress: bool = True,
    on_settled: Callable[[Item], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> RunSummary:
    """Generate an output for every item of this shard that has none yet; returns what the run did.

    ``inputs`` (input files and their hashes) go into the manifest; a run folder made from other inputs
    is refused unless ``extend``. ``on_resume`` is called once with the number of items already done,
    ``on_settled`` with each item this run finishes (valid, or out of attempts). Raises
    :class:`BackendUnavailableError` / :class:`BackendRefusedError` (both with ``.summary``) when the
    backend is away or refuses everything.
    """
    started = time.perf_counter()
    details = {"backend": backend.describe(), "version": package_version()}
    if task.max_prompt_chars is not None:
        details["max_prompt_chars"] = task.max_prompt_chars
    identity = run_identity(task, backend.name, backend.model)
    store = RunStore(
        Path(out), identity, details, num_shards=num_shards, shard_index=shard_index, inputs=inputs, extend=extend
    )
    with store:
        keyed: dict[str, Item] = {}
        for item in items:
            key = task.key(item, backend.model)
            if store.mine(key):
                keyed.setdefault(key, item)
        run = Run(task, store, keyed, backend, on_settled)
        if on_resume is not None:
            on_resume(run.summary.already_done)
        try:
            run.generate(console or Console(stderr=True), progress=progress, threshold=max_failures_in_a_row)
        except (BackendUnavailableError, BackendRefusedError) as error:
            error.summary = run.finish(started)  # type: ignore[attr-defined]
            raise
    return run.finish(started)


def run_identity(task: GenerationTask[Any], backend: str, model: str) -> dict[str, Any]:
    """What a run folder of ``task`` must match to be resumed (known before any model loads)."""
    return {"stage": task.stage, "backend": backend, "model": model, **task.identity()}


class Run:
    """One run over the items of a shard: what to send next and where each outcome goes."""

    def __init__(
        self,
        task: GenerationTask[Item],
        store: RunStore,
        items: dict[str, Item],
        backend: Backend,
        on_settled: Callable[[Item], None] | None,
    ) -> None:
        self.task, self.store, self.items, self.backend, self.on_settled = task, store, items, backend, on_settled
        self.deferred: set[str] = set()  # transport failures of this run: left for a rerun
        self.answered = bool(getattr(backend, "answered", False))  # has the backend answered any request yet
        self.held: list[tuple[str, Result]] = []  # refusals while it has answered nothing
        self.summary = RunSummary(items=len(items), already_done=sum(map(self.settled, items)), noun=task.noun)

    def settled(self, key: str) -> bool:
        return key in self.store.done or self.exhausted(key)

    def exhausted(self, key: str) -> bool:
        """Out of attempts, or rejected for good (a prompt that can never fit)."""
        store = self.store
        return key not in store.done and (store.rejected_attempts[key] >= self.task.max_attempts or key in store.final)

    def todo(self) -> list[str]:
        return [key for key in self.items if not self.settled(key) and key not in self.deferred]

    def generate(self, console: Console, *, progress: bool, threshold: int) -> None:
        if not self.todo():
            return
        self.backend.check()
        summary = self.summary
        breaker = CircuitBreaker(threshold)
        with _progress(console, enabled=progress) as bar:
            bar_task = bar.add_task(
                self.task.stage, total=summary.items, completed=summary.already_done, valid=0, rejected=0
            )

            def settle(key: str, result: Result) -> None:
                if self.settle(key, result):
                    bar.advance(bar_task)
                bar.update(bar_task, valid=summary.valid, rejected=summary.rejected)

            while pending := self.todo():
                requests = []
                for key in pending:
                    request = self.request(key)
                    too_long = self.too_long(request)
                    if too_long:  # never sent: one huge prompt stalls or fails the model
                        settle(key, Result.failure(request.key, too_long, TOO_LONG))
                    else:
                        requests.append(request)
                self.send(requests, breaker, threshold, settle)

    def send(
        self, requests: list[Request], breaker: CircuitBreaker, threshold: int, settle: Callable[[str, Result], None]
    ) -> None:
        results = self.backend.generate(requests)
        try:
            for result in results:
                key = result.key.rsplit("#", 1)[0]
                tripped = breaker.record(result)
                if result.transport_failed:
                    self.deferred.add(key)
                    self.summary.failed += 1
                elif result.error and result.failure_kind == REQUEST and not self.answered:
                    self.held.append((key, result))  # a refusal before any answer: misconfigured, or one bad item?
                    if len(self.held) >= threshold:
                        self.refused()
                else:
                    if result.ok:
                        self.answered = True
                        for held_key, held in self.held:  # the backend works: those were the items' own faults
                            settle(held_key, held)
                        self.held.clear()
                    settle(key, result)
                if tripped:
                    raise BackendUnavailableError(
                        f"{breaker.in_a_row} requests in a row failed at the model server (last: {breaker.last_error})"
                    )
        finally:
            close = getattr(results, "close", None)
            if close is not None:  # cancels what a server backend still has in flight
                close()
        if self.held:  # a whole round refused, nothing answered
            self.refused()

    def refused(self) -> None:
        _, first = self.held[0]
        raise BackendRefusedError(
            f"the {self.backend.name} backend ({self.backend.model}) failed every request before answering any "
            f"({len(self.held)} refused, e.g. {first.error}); check the server address, model name and key"
        )

    def request(self, key: str) -> Request:
        attempt = self.store.rejected_attempts[key] + 1
        item = self.items[key]
        return Request(
            key=f"{key}#{attempt}",
            messages=self.task.format_input(item),
            sampling=self.task.attempt_sampling(key, attempt),
        )

    def too_long(self, request: Request) -> str | None:
        bound = self.task.max_prompt_chars
        if bound is None:
            return None
        chars = sum(len(_text(message.get("content", ""))) for message in request.messages)
        return None if chars <= bound else f"prompt too long: {chars:,} characters > max_prompt_chars {bound:,}"

    def settle(self, key: str, result: Result) -> bool:
        """Record one attempt: a valid output, or a reject with its reason (final when too long).

        Returns whether the item is now finished (valid, or out of attempts).
        """
        item = self.items[key]
        attempt = int(result.key.rsplit("#", 1)[1])
        record: dict[str, Any] = {
            "key": key,
            "attempt": attempt,
            **self.task.record_fields(item),
            "backend": self.backend.name,
            "model": self.backend.model,
            "seed": self.task.attempt_sampling(key, attempt).seed,
            "text": result.text,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "finish_reason": result.finish_reason,
        }
        self.summary.attempted += 1
        if result.error:
            outcome = None
            record["error"] = result.error
            reason, final = f"request failed: {result.error}", result.failure_kind == TOO_LONG
        else:
            outcome = self.task.format_output(item, result)
        if isinstance(outcome, Accepted):
            self.store.add({**record, **outcome.fields})
            self.summary.valid += 1
            return self._finished(item)
        if outcome is not None:
            reason, final = outcome.reason, outcome.final
        self.store.reject({**record, "reason": reason, **({"final": True} if final else {})})
        self.summary.rejected += 1
        if self.exhausted(key):
            self.summary.exhausted += 1
            return self._finished(item)
        return False

    def _finished(self, item: Item) -> bool:
        if self.on_settled is not None:
            self.on_settled(item)
        return True

    def finish(self, started: float) -> RunSummary:
        self.summary.left = sum(1 for key in self.items if not self.settled(key))
        self.summary.seconds = time.perf_counter() - started
        return self.summary


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


class ThroughputColumn(ProgressColumn):
    """Finished items per second (valid or exhausted), over rich's sliding window."""

    def render(self, task: ProgressTask) -> Text:
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
