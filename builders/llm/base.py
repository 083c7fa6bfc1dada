"""The one LLM interface every generation stage talks to: requests in, results out, backends behind it.

Phase-1 summaries, phase-2 conversations, CaD-QA and the judge all build :class:`Request` objects and
read :class:`Result` objects; whether vLLM, an OpenAI-compatible server or transformers does the work
is a constructor argument (:func:`make_backend`). Sampling settings are always explicit because the
defaults differ between engines (vLLM stops after 16 tokens when ``max_tokens`` is not given).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from builders.llm.content import check_content, content_identity, has_images, text_of

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
    # OpenAI-style: {"role": "system" | "user" | "assistant", "content": str | [text and image parts]}
    # (the parts are described in builders.llm.content).
    messages: tuple[dict, ...]
    sampling: Sampling

    def __post_init__(self) -> None:
        if not isinstance(self.messages, tuple):
            object.__setattr__(self, "messages", tuple(self.messages))
        if not self.messages:
            raise ValueError(f"request {self.key!r} has no messages")
        for index, message in enumerate(self.messages):  # a malformed part fails here, not deep in a backend
            if not isinstance(message, dict):
                raise ValueError(f"request {self.key!r}: message {index} is not a dict")
            check_content(message.get("content"), f"request {self.key!r}, message {index}")

    @property
    def has_images(self) -> bool:
        return has_images(self.messages)


def messages_identity(messages: Sequence[dict]) -> list[dict]:
    """The JSON-serialisable identity of chat messages, for ``request_key(...)``: the messages as they are, but
    each image part replaced by ``{"type": "image", "sha256": <hex>}`` (plus its ``detail``, when one is set).

    Text-only messages come back equal to ``[dict(m) for m in messages]``, so their keys do not change. The hash
    rule (:func:`builders.llm.content.image_sha256`): PIL images and lossless files (PNG, ...) by their decoded
    pixels, so a PIL image and a PNG data URI or file of it give one key; JPEG and other lossy files by their
    bytes (``sha256sum``), the same for the file and a data URI of it. Image bytes never enter the key.
    Raises ``ValueError``/``OSError`` for an image that cannot be read.
    """
    return [{**message, "content": content_identity(message.get("content"))} for message in messages]


# Why a request failed, which decides what a generation stage does with it:
# * "transport": the model server or engine failed (refused, timed out, 5xx after retries, dropped, cancelled).
#   Nothing is wrong with the request: it is no rejected output, uses up no attempt, and a rerun retries it.
# * "request": the backend refused or could not run this request (a 4xx, a chat template that rejects it, a
#   generation error of this request alone): a rejected attempt, retried with a new seed.
# * "too_long": the prompt (plus ``max_tokens``) does not fit the model's context, found before the model
#   ran: a final reject, never retried (it would not fit the next time either).
FailureKind = Literal["transport", "request", "too_long"]
TRANSPORT: FailureKind = "transport"
REQUEST: FailureKind = "request"
TOO_LONG: FailureKind = "too_long"


@dataclass(frozen=True)
class Result:
    """What came back for one request. A failed request has ``error`` set and empty text, never a missing row."""

    key: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | whatever the engine reports; "error" when it failed
    error: str | None = None
    failure_kind: FailureKind | None = None  # set with ``error``; see :data:`FailureKind`

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def transport_failed(self) -> bool:
        """The server or engine failed, not the request: keep the item to do, count no attempt."""
        return self.error is not None and self.failure_kind == TRANSPORT

    @classmethod
    def failure(cls, key: str, error: str, kind: FailureKind = REQUEST) -> Result:
        return cls(
            key=key,
            text="",
            prompt_tokens=0,
            completion_tokens=0,
            finish_reason="error",
            error=error,
            failure_kind=kind,
        )


class BackendUnavailableError(RuntimeError):
    """The model server or engine cannot serve requests (unreachable, dead, failing every request).

    A stage that gets it stops early, records nothing for the requests in flight, and reports how many
    items are left to do; a rerun resumes them. Never a per-item failure.
    """


class BackendRefusedError(RuntimeError):
    """The backend answers but refuses every request (a wrong model name, key or request shape): a
    misconfiguration to fix, not an outage to wait out."""


class CircuitBreaker:
    """Trips after ``threshold`` transport failures in a row: a server that fails everything is away.

    One success resets the count. Backends already retried each failed request with backoff, so a few
    failures in a row mean the server has been unreachable for minutes.
    """

    def __init__(self, threshold: int = 8) -> None:
        if threshold < 1:
            raise ValueError(f"the circuit breaker threshold must be >= 1, got {threshold}")
        self.threshold = threshold
        self.in_a_row = 0
        self.last_error: str | None = None

    def record(self, result: Result) -> bool:
        """Count one result; True when the breaker trips (the caller stops sending requests)."""
        if result.transport_failed:
            self.in_a_row += 1
            self.last_error = result.error
        else:
            self.in_a_row = 0
        return self.tripped

    @property
    def tripped(self) -> bool:
        return self.in_a_row >= self.threshold


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

    def check(self) -> None:
        """Raise :class:`BackendUnavailableError` when the backend cannot serve (called before the first request)."""
        ...

    def close(self) -> None: ...


class Closing:
    """``with make_backend(...) as llm:`` closes the backend (frees GPU memory, stops threads) on exit.

    In-process backends are ready once built, so their health check passes; servers override it.
    """

    def close(self) -> None:  # pragma: no cover - every backend overrides it
        pass

    def check(self) -> None:
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
    system text becomes the user turn. A user turn made of content parts gets the system text as a first
    text part, its images kept in place; images in a system message raise ``ValueError`` (no template
    that needs folding could show them).
    """
    if any(has_images([m]) for m in messages if m.get("role") == "system"):
        raise ValueError("a system message holds an image: it cannot be folded into the user turn")
    system = [text_of(m["content"]) for m in messages if m.get("role") == "system"]
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


def chat_template_accepts_system(tokenizer: Any, *, as_parts: bool = False) -> bool:
    """Whether ``tokenizer``'s chat template renders a system message (rather than raising on or dropping it).

    ``as_parts``: probe with content parts, as multimodal templates (a processor's) expect them.
    """
    probe = "cadvi-system-probe"
    system, user = ([{"type": "text", "text": probe}], [{"type": "text", "text": "hi"}]) if as_parts else (probe, "hi")
    try:
        rendered = tokenizer.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            add_generation_prompt=True,
            tokenize=False,
        )
    except Exception:  # jinja2's TemplateError from raise_exception(), or a template that cannot cope
        return False
    return probe in rendered


# How engines and servers say a prompt does not fit (vLLM: "This model's maximum context length is 4096
# tokens", "The decoder prompt (length 5000) is longer than the maximum model length of 4096").
_TOO_LONG_MESSAGE = re.compile(
    r"maximum (context|model) length|context length|context window|too long|too many tokens|longer than the max",
    re.IGNORECASE,
)


def says_too_long(message: str) -> bool:
    """Whether an engine's or server's error message says the prompt does not fit the context."""
    return _TOO_LONG_MESSAGE.search(message) is not None


def context_overflow(prompt_tokens: int, max_tokens: int, context: int | None) -> str | None:
    """Why a prompt cannot run in a model's context window (None when it fits or the window is unknown)."""
    if context is None or prompt_tokens + max_tokens <= context:
        return None
    return (
        f"prompt too long: {prompt_tokens:,} prompt tokens + max_tokens {max_tokens:,} exceed the model's context "
        f"of {context:,} tokens"
    )


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


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$|^[A-Za-z0-9][\w.-]*$")


def check_model_reference(model: str) -> None:
    """Fail in one line, before anything loads, when ``model`` is neither a model folder nor a usable Hub id.

    An in-process backend given a path that does not exist would otherwise end in transformers' Hub
    lookup and a misleading "not a valid repo id" traceback. Offline (``HF_HUB_OFFLINE=1``), a Hub id
    must already be in the Hugging Face cache.
    """
    path = Path(model).expanduser()
    if path.exists():
        if path.is_file():
            raise ValueError(f"model {model!r} is a file; give the model's folder (with config.json) or a Hub id")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model folder {model!r} has no config.json: it is not a saved model")
        return
    if model.startswith((".", "/", "~")) or model.endswith("/") or not _REPO_ID.match(model):
        raise FileNotFoundError(f"model {model!r}: no such folder, and not a Hugging Face Hub id")
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(model, "config.json"), str):
        raise FileNotFoundError(
            f"model {model!r} is not a local folder, and offline (HF_HUB_OFFLINE=1) a Hub id must already be in "
            "the Hugging Face cache"
        )
