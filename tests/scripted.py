"""A scripted judge backend: known answers for hand-computed scoring tests (like lmms-eval's ``dummy`` model).

Real servers are tested elsewhere (``transformers serve`` on 127.0.0.1); these tests pin the runner's and
the judge's bookkeeping (attempts, invalid ratings, failed requests) against answers chosen by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from builders.llm.base import REQUEST, Closing, FailureKind, Request, Result


@dataclass(frozen=True)
class Fail:
    """A scripted failed request: refused by the judge (``request``) or lost in ``transport``."""

    error: str
    kind: FailureKind = REQUEST


class ScriptedBackend(Closing):
    """Answers each prompt with the next scripted answer of the first script key its text contains."""

    name = "scripted"

    def __init__(self, script: dict[str, list[str | Fail]], model: str = "scripted-judge") -> None:
        self.script = {key: list(answers) for key, answers in script.items()}
        self.model = model
        self.batches: list[list[str]] = []  # the prompts of every generate() call

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        requests = list(requests)
        prompts = [str(request.messages[-1]["content"]) for request in requests]
        self.batches.append(prompts)
        for request, prompt in zip(requests, prompts, strict=True):
            key = next(key for key in self.script if key in prompt)
            answer = self.script[key].pop(0)
            if isinstance(answer, Fail):
                yield Result.failure(request.key, answer.error, answer.kind)
            else:
                yield Result(request.key, answer, 1, 1, "stop")
