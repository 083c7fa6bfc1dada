"""The one LLM interface every generation stage talks to: requests in, results out, backends behind it.

Phase-1 summaries, phase-2 conversations, CaD-QA and the judge all build :class:`Request` objects and
read :class:`Result` objects; whether vLLM, an OpenAI-compatible server or transformers does the work
is a constructor argument (:func:`make_backend`). Sampling settings are always explicit because the
defaults differ between engines (vLLM stops after 16 tokens when ``max_tokens`` is not given).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

BACKENDS: dict[str, str] = {
    "transformers": "builders.llm.transformers_backend:TransformersBackend",
    "openai": "builders.llm.openai_backend:OpenAIBackend",
    "vllm": "builders.llm.vllm_backend:VLLMBackend",
}


@dataclass(frozen=True)
class Sampling:
    """Decoding settings of one request; the same fields mean the same thing on every backend."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Structured outputs (a JSON schema); backends that cannot enforce one log a warning once.
    json_schema: dict | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):  # a bare string would become a tuple of characters
            object.__setattr__(self, "stop", (self.stop,))
        elif not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Request:
    """One chat completion to run. ``key`` is the caller's id (a content hash); its result carries it back."""

    key: str
    messages: tuple[dict, ...]  # OpenAI-style: {"role": "system" | "user" | "assistant", "content": str}
    sampling: Sampling

    def __post_init__(self) -> None:
        if not isinstance(self.messages, tuple):
            object.__setattr__(self, "messages", tuple(self.messages))
        if not self.messages:
            raise ValueError(f"request {self.key!r} has no messages")


@dataclass(frozen=True)
class Result:
    """What came back for one request. A failed request has ``error`` set and empty text, never a missing row."""

    key: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | whatever the engine reports; "error" when it failed
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(cls, key: str, error: str) -> Result:
        return cls(key=key, text="", prompt_tokens=0, completion_tokens=0, finish_reason="error", error=error)


@runtime_checkable
class Backend(Protocol):
    name: str  # "vllm" | "openai" | "transformers"
    model: str

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Yield one :class:`Result` per request, each as soon as it is done (any order); never raise mid-stream."""
        ...

    def describe(self) -> dict[str, Any]:
        """Backend, model and settings for run manifests (never secrets such as an API key)."""
        ...

    def close(self) -> None: ...


class Closing:
    """``with make_backend(...) as llm:`` closes the backend (frees GPU memory, stops threads) on exit."""

    def close(self) -> None:  # pragma: no cover - every backend overrides it
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def make_backend(kind: str, model: str, **options: Any) -> Backend:
    """Build a backend by name (the CLI's ``--backend``); heavy imports happen only for the chosen one."""
    if kind not in BACKENDS:
        raise ValueError(f"unknown LLM backend {kind!r}; choose one of {', '.join(sorted(BACKENDS))}")
    module_name, class_name = BACKENDS[kind].split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    return backend_class(model, **options)


def fold_system_prompt(messages: Sequence[dict]) -> tuple[dict, ...]:
    """Merge system messages into the first user turn as ``"<system>\\n\\n<user>"``.

    Mixtral-8x7B-Instruct's original chat template has no system role and raises on one; this is the
    folding its newer template does itself. Input dicts are never mutated. Without a user turn the
    system text becomes the user turn.
    """
    system = [_text_of(m["content"]) for m in messages if m.get("role") == "system"]
    rest = [dict(m) for m in messages if m.get("role") != "system"]
    if not system:
        return tuple(rest)
    system_text = "\n\n".join(system)
    for message in rest:
        if message.get("role") == "user":
            content = message["content"]
            if isinstance(content, str):
                message["content"] = f"{system_text}\n\n{content}"
            else:  # a list of content parts (text + images): the system text goes first
                message["content"] = [{"type": "text", "text": f"{system_text}\n\n"}, *content]
            return tuple(rest)
    return ({"role": "user", "content": system_text}, *rest)


def chat_template_accepts_system(tokenizer: Any) -> bool:
    """Whether ``tokenizer``'s chat template renders a system message (rather than raising on or dropping it)."""
    probe = "cadvi-system-probe"
    try:
        rendered = tokenizer.apply_chat_template(
            [{"role": "system", "content": probe}, {"role": "user", "content": "hi"}],
            add_generation_prompt=True,
            tokenize=False,
        )
    except Exception:  # jinja2's TemplateError from raise_exception(), or a template that cannot cope
        return False
    return probe in rendered


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (excluded, as OpenAI and vLLM return it) and whether one was found."""
    cuts = [index for index in (text.find(s) for s in stop) if index >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class WarnOnce:
    """Log a warning the first time each topic comes up: a backend ignoring a setting says so, once."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._seen: set[str] = set()

    def __call__(self, topic: str, message: str, *args: object) -> None:
        if topic not in self._seen:
            self._seen.add(topic)
            self._logger.warning(message, *args)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
