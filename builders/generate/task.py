"""The contract every generation stage implements: what it asks the model, and what it makes of the answer.

Modelled on distilabel's tasks (``format_input`` / ``format_output``): a stage is a small class that
knows its items and its prompt, and nothing about retries, resuming, sharding, server outages or
progress bars, which :func:`builders.generate.run_task` does once for every stage. A task says:

* :meth:`GenerationTask.identity`: what a run folder must match to be resumed (template hashes,
  settings), recorded in the manifest with the backend and model;
* :meth:`GenerationTask.key`: the content hash of one item's request (the record key; images enter
  it through their content hash, never their bytes);
* :meth:`GenerationTask.format_input`: one item -> request messages (text, or text and images);
* :meth:`GenerationTask.format_output`: one answer -> :class:`Accepted` fields for the record, or a
  :class:`Rejected` reason (retried with a new seed up to ``max_attempts``, unless ``final``);
* :meth:`GenerationTask.record_fields`: what of the item every record and reject carries.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from builders.llm.base import Result, Sampling
from builders.runs import request_key

Item = TypeVar("Item", bound=Hashable)


@dataclass(frozen=True)
class Accepted:
    """A valid output: ``fields`` go into its record (the parsed summary, the rating, ...)."""

    fields: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    """An output that failed validation, with why. ``final``: retrying cannot help (never retried)."""

    reason: str
    final: bool = False


Outcome = Accepted | Rejected


class GenerationTask(ABC, Generic[Item]):
    """One generation stage. Subclasses set :attr:`stage`, :attr:`sampling`, :attr:`max_attempts`."""

    stage: ClassVar[str]  # "phase1", "judge", ...: the manifest's stage and the first part of every key
    noun: ClassVar[str] = "items"  # what an item is called in progress and summaries ("pairs", "answers")
    sampling: Sampling
    max_attempts: int = 3
    # A rendered prompt longer than this is a final reject, never sent (None: no bound).
    max_prompt_chars: int | None = None

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Settings a run folder must match to be resumed (the runner adds stage, backend and model)."""

    @abstractmethod
    def key(self, item: Item, model: str) -> str:
        """The request key of ``item``: a content hash of everything its output depends on."""

    @abstractmethod
    def format_input(self, item: Item) -> tuple[dict[str, Any], ...]:
        """The request messages of ``item`` (OpenAI style; content may be text or text and image parts)."""

    @abstractmethod
    def format_output(self, item: Item, result: Result) -> Outcome:
        """What a successful answer of ``item`` is worth: the record's fields, or why it is rejected."""

    def record_fields(self, item: Item) -> dict[str, Any]:
        """The item's fields that every record and reject of it carries (ids, inputs)."""
        return {}

    def attempt_sampling(self, key: str, attempt: int) -> Sampling:
        """The sampling of one attempt: a new seed each time (a retry must not repeat a rejected sample)."""
        return dataclasses.replace(self.sampling, seed=attempt_seed(self.sampling.seed, key, attempt))


def attempt_seed(base: int | None, key: str, attempt: int) -> int:
    """A new seed per attempt, stable across reruns."""
    return int(request_key("seed", base, key, attempt)[:8], 16) & 0x7FFFFFFF
