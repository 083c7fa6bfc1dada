"""Any OpenAI-compatible chat server: ``vllm serve``, ``transformers serve``, hosted APIs.

The official ``openai`` client does the HTTP; retries are ours (the client's own are off) so that one
policy covers every server: exponential backoff with jitter on 429, 408/409, 5xx, timeouts and
dropped or refused connections, a bounded number of attempts, then a :class:`Result` with ``error``
set. A long generation run therefore survives a server restart, and never dies or loses a row
because of one bad request. At most ``max_concurrency`` requests are in flight.

The client runs on an event loop in a background thread that lives as long as the backend;
:meth:`OpenAIBackend.generate` is a plain generator that reads requests lazily (a bounded window
ahead of the results) and yields results in completion order.

Server differences handled here (checked against ``transformers serve`` of transformers 5.24):

* vLLM (>= 0.12) takes structured outputs as ``extra_body={"structured_outputs": {"json": schema}}``
  (the old ``guided_json`` is silently ignored). A server that rejects the field (``transformers
  serve`` answers 422 "Unexpected fields") gets it dropped, with one warning, and the request resent.
* ``transformers serve`` returns the matched stop string inside the text; vLLM and OpenAI do not.
  Text is cut at the first stop string so every server gives the same answer.
* A chat template without a system role (Mixtral's original) makes the server fail the request
  (``transformers serve``: a bare 500, which looks transient). With ``fold_system=None`` (the
  default) the first request with a system message is preceded by a one-token probe; if the server
  fails it but accepts the folded version, every later request is folded (one warning).

Images: PIL images and local files are sent as base64 data URIs in ``image_url`` parts (data URIs as
given), encoded once per request off the event loop; ``max_image_side`` shrinks larger ones first.
Neither logs nor ``Result.error`` ever hold image bytes: a server that echoes the request in an error
has its data URIs cut out (``builders.llm.openai_errors``). ``transformers serve`` takes data URIs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from builders.llm.base import (
    REQUEST,
    TOO_LONG,
    TRANSPORT,
    BackendUnavailableError,
    Closing,
    Request,
    Result,
    WarnOnce,
    cut_at_stop,
    fold_system_prompt,
    says_too_long,
)
from builders.llm.content import openai_messages, redact_data_uris
from builders.llm.openai_errors import (
    error_summary,
    error_text,
    is_answer,
    is_transport_error,
    rejects_field,
    retry_after,
)

logger = logging.getLogger(__name__)

PLACEHOLDER_API_KEY = "EMPTY"  # local servers ignore the key, but the client insists on one
HEALTH_CHECK_ATTEMPTS = 3
_END = object()


class OpenAIBackend(Closing):
    """``AsyncOpenAI`` chat completions with our own bounded retries and a bounded number in flight."""

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        max_attempts: int = 8,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        timeout: float = 600.0,
        fold_system: bool | None = None,
        structured_outputs: bool = True,
        extra_body: dict[str, Any] | None = None,
        max_image_side: int | None = None,
        http_client: Any = None,
    ) -> None:
        """Settings:

        * ``api_key_env``: name of the environment variable holding the key (read now, never stored in
          settings or logged); unset means the placeholder ``"EMPTY"`` that local servers accept.
        * ``max_attempts``: tries per request, the first included; the wait before try ``n + 1`` is
          ``min(backoff_max, backoff_base * 2**(n - 1))``, jittered to between half and all of it,
          and never shorter than a 429's ``Retry-After``.
        * ``timeout``: seconds per HTTP attempt (a long summary on a busy server takes minutes).
        * ``fold_system``: fold system messages into the first user turn; ``None`` probes the server.
        * ``structured_outputs``: send ``Sampling.json_schema`` the vLLM way; ``False`` never sends it.
        * ``extra_body``: merged into every request (e.g. ``{"top_k": 50}`` for vLLM).
        * ``max_image_side``: resize images whose longest side is longer to this many pixels before
          sending (aspect kept; ``None``, the default, sends them as they are).
        * ``http_client``: an ``openai.DefaultAsyncHttpxClient(...)`` for proxies or instrumentation.
        """
        import openai

        if max_concurrency < 1 or max_attempts < 1:
            raise ValueError("max_concurrency and max_attempts must be >= 1")
        if max_image_side is not None and max_image_side < 1:
            raise ValueError(f"max_image_side must be >= 1, got {max_image_side}")
        self.model = str(model)
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.fold_system = fold_system
        self.structured_outputs = structured_outputs
        self.extra_body = dict(extra_body or {})
        self.max_image_side = max_image_side
        self._warn = WarnOnce(logger)
        self._random = random.Random()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cadvi-openai-loop", daemon=True)
        self._thread.start()
        self._semaphore: asyncio.Semaphore | None = None
        self._probe_lock: asyncio.Lock | None = None
        # The key goes straight into the client; it is not kept on this object (describe(), repr, pickles).
        self._client = openai.AsyncOpenAI(
            api_key=os.environ.get(api_key_env) or PLACEHOLDER_API_KEY,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            http_client=http_client,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "max_concurrency": self.max_concurrency,
            "max_attempts": self.max_attempts,
            "backoff_base": self.backoff_base,
            "backoff_max": self.backoff_max,
            "timeout": self.timeout,
            "fold_system": self.fold_system,
            "structured_outputs": self.structured_outputs,
            "extra_body": self.extra_body,
            "max_image_side": self.max_image_side,
        }

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def check(self, timeout: float = 10.0) -> None:
        """Is a server listening at ``base_url``? ``GET /models``, tried a few times a second apart.

        Any HTTP answer proves a server (``transformers serve`` answers 500 there before its cache exists);
        a refused or timed-out connection, or a 401/403 (every request would be refused), raises
        :class:`BackendUnavailableError`.
        """
        import openai

        async def probe() -> None:
            await self._client.models.list(timeout=timeout)  # the client itself: it caches its platform info

        error: Exception | None = None
        for attempt in range(HEALTH_CHECK_ATTEMPTS):
            try:
                asyncio.run_coroutine_threadsafe(probe(), self._loop).result(timeout=timeout + 5)
                return
            except openai.APIStatusError as answered:
                if answered.status_code in (401, 403):
                    raise BackendUnavailableError(
                        f"the model server at {self.base_url} refused the API key from ${self.api_key_env} "
                        f"({error_summary(answered)})"
                    ) from None
                return
            except Exception as failed:  # refused, timed out, dropped
                error = failed
                if attempt + 1 < HEALTH_CHECK_ATTEMPTS:
                    time.sleep(1.0)
        raise BackendUnavailableError(
            f"no model server answers at {self.base_url} ({error_summary(error) if error else 'no answer'})"
        )

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Keep ``2 * max_concurrency`` requests submitted, yield results as they finish.

        Requests are read from ``requests`` in this (the caller's) thread, so a lazy generator is fine
        and backpressure holds: a run over 350K prompts never has more than a window of them queued.
        If the caller stops early, the requests still pending are cancelled.
        """
        done: queue.SimpleQueue[tuple[concurrent.futures.Future, Result]] = queue.SimpleQueue()
        pending: set[concurrent.futures.Future] = set()
        iterator = iter(requests)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < 2 * self.max_concurrency:
                    request = next(iterator, _END)
                    if request is _END:
                        exhausted = True
                        break
                    future = asyncio.run_coroutine_threadsafe(self._complete(request), self._loop)
                    pending.add(future)
                    future.add_done_callback(lambda f, r=request: done.put((f, _outcome(f, r))))
                if not pending:
                    return
                future, result = done.get()
                pending.discard(future)
                yield result
        finally:
            for future in pending:
                future.cancel()

    async def _complete(self, request: Request) -> Result:
        if self._semaphore is None:  # created on the loop they are used on
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._probe_lock = asyncio.Lock()
        async with self._semaphore:
            return await self._with_retries(request)

    async def _with_retries(self, request: Request) -> Result:
        import openai

        has_system = any(message.get("role") == "system" for message in request.messages)
        messages: list[dict] | tuple[dict, ...] = request.messages
        if request.has_images:
            try:  # once per request, in a worker thread: encoding images would stall every request in flight
                messages = await asyncio.to_thread(openai_messages, request.messages, self.max_image_side)
            except (OSError, ValueError) as error:
                logger.warning("request %s: image: %s", request.key, error)
                return Result.failure(request.key, f"image: {error}", REQUEST)
        attempt = 0
        while True:
            if has_system and self.fold_system is None:
                await self._probe_system_role()
            kwargs = self._create_kwargs(request, messages)  # rebuilt: folding or structured outputs may have changed
            attempt += 1
            try:
                response = await self._client.chat.completions.create(**kwargs)
                return self._to_result(request, response)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as error:
                if "structured_outputs" in kwargs.get("extra_body", {}) and rejects_field(error, "structured_outputs"):
                    self.structured_outputs = False
                    self._warn(
                        "json_schema", "server at %s rejects structured_outputs: json_schema ignored", self.base_url
                    )
                    attempt -= 1  # the server never ran this one
                    continue
                return self._give_up(request, error, attempt)
            except Exception as error:
                if not is_transport_error(error) or attempt >= self.max_attempts:
                    return self._give_up(request, error, attempt)
                delay = self._backoff(attempt, error)
                logger.info(
                    "request %s: %s (attempt %d/%d); retrying in %.2fs",
                    request.key,
                    error_summary(error),
                    attempt,
                    self.max_attempts,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _probe_system_role(self) -> None:
        """Decide ``fold_system`` from how the server takes a one-token request with a system message.

        Accepted: no folding. Failed (any 4xx/5xx but 408/409/429) while the folded form is accepted:
        fold from now on. Unreachable or busy server: no verdict yet, the next attempt probes again.
        """
        assert self._probe_lock is not None
        async with self._probe_lock:
            if self.fold_system is not None:
                return
            messages = ({"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hello."})
            plain = await self._probe(messages)
            if plain is None:
                self.fold_system = False
            elif is_answer(plain):
                folded = await self._probe(fold_system_prompt(messages))
                if folded is None:
                    self.fold_system = True
                    logger.warning(
                        "server at %s fails a system message (%s) but takes it folded: folding system prompts",
                        self.base_url,
                        error_summary(plain),
                    )
                elif is_answer(folded):  # fails either way: not a template problem, leave the messages alone
                    self.fold_system = False

    async def _probe(self, messages: tuple[dict, ...]) -> Exception | None:
        """The error of a one-token request (None when it worked); a dropped connection is tried again.

        ``transformers serve`` closes the connection after a 500 without saying so: the next request on
        that pooled connection fails with a ReadError, which says nothing about the request.
        """
        import openai

        error: Exception | None = None
        for _ in range(3):
            try:
                await self._client.chat.completions.create(
                    model=self.model, messages=[dict(m) for m in messages], max_tokens=1, temperature=0.0
                )
                return None
            except openai.APIConnectionError as dropped:
                error = dropped
                await asyncio.sleep(0.05)
            except Exception as failed:
                return failed
        return error

    def _create_kwargs(self, request: Request, messages: Sequence[dict]) -> dict[str, Any]:
        sampling = request.sampling
        messages = fold_system_prompt(messages) if self.fold_system else messages
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(message) for message in messages],
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.seed is not None:
            kwargs["seed"] = sampling.seed
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop)
        extra_body = dict(self.extra_body)
        if sampling.json_schema is not None:
            if self.structured_outputs:
                extra_body["structured_outputs"] = {"json": sampling.json_schema}
            else:
                self._warn("json_schema", "structured outputs are off for %s: json_schema ignored", self.base_url)
        if extra_body:
            kwargs["extra_body"] = extra_body
        return kwargs

    def _to_result(self, request: Request, response: Any) -> Result:
        if not response.choices:
            return Result.failure(request.key, "server returned no choices", REQUEST)
        choice = response.choices[0]
        text, cut = cut_at_stop(choice.message.content or "", request.sampling.stop)
        usage = response.usage
        return Result(
            key=request.key,
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason="stop" if cut else (choice.finish_reason or "stop"),
        )

    def _backoff(self, attempt: int, error: Exception) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        delay = self._random.uniform(delay / 2, delay)
        wait = retry_after(error)
        return max(delay, min(wait, self.backoff_max)) if wait is not None else delay

    def _give_up(self, request: Request, error: Exception, attempt: int) -> Result:
        """The failure of a request: transport (the server), too long (its prompt), or request (anything else)."""
        message = f"{error_summary(error)} after {attempt} attempt{'s' if attempt > 1 else ''}"
        logger.warning("request %s failed: %s", request.key, message)
        if is_transport_error(error):
            return Result.failure(request.key, message, TRANSPORT)
        kind = TOO_LONG if says_too_long(error_text(error)) else REQUEST
        return Result.failure(request.key, message, kind)


def _outcome(future: concurrent.futures.Future, request: Request) -> Result:
    """The result of a finished future; a crash or cancellation still yields a result for the request."""
    if future.cancelled():
        return Result.failure(request.key, "cancelled", TRANSPORT)
    error = future.exception()
    if error is not None:  # not the request's fault: it stays to do, and a rerun tries it again
        message = redact_data_uris(f"{type(error).__name__}: {error}")
        logger.warning("request %s crashed: %s", request.key, message)
        return Result.failure(request.key, message, TRANSPORT)
    return future.result()
