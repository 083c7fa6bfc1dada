"""lmms-eval's judge server as a :mod:`builders.llm` backend, so the CaD-QA task judges on the one runner.

lmms-eval configures its judges through ``lmms_eval.llm_judge`` (``API_TYPE`` picks the provider;
``OPENAI_API_URL`` / ``OPENAI_API_KEY`` for the ``openai`` one, read by lmms-eval itself, also from a
``.env`` in the working directory). :class:`LmmsEvalJudgeBackend` wraps that server in the backend
interface: ``max_concurrent`` requests in flight on a thread pool (lmms-eval's servers are blocking),
each failure classified as the server's (transport: no attempt, the item stays to do) or the request's
(refused by the judge). It lives here, not in ``builders``, so that ``builders`` never imports lmms-eval.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from builders.judge import DEFAULT_JUDGE_MODEL, JUDGE_SAMPLING
from builders.llm.base import REQUEST, TRANSPORT, BackendRefusedError, Closing, Request, Result
from builders.llm.openai_backend import is_transport_error

# Settings field -> environment variable. API_TYPE is lmms-eval's own; the URL and key variables of the
# provider (OPENAI_API_URL, OPENAI_API_KEY for "openai") are read by lmms-eval itself.
JUDGE_ENV: dict[str, str] = {
    "model": "CADQA_JUDGE_MODEL",
    "api_type": "API_TYPE",
    "num_retries": "CADQA_JUDGE_NUM_RETRIES",
    "retry_delay": "CADQA_JUDGE_RETRY_DELAY",
    "timeout": "CADQA_JUDGE_TIMEOUT",
    "max_concurrent": "CADQA_JUDGE_MAX_CONCURRENT",
    "invalid_retries": "CADQA_JUDGE_INVALID_RETRIES",
    "run_dir": "CADQA_JUDGE_RUN_DIR",
}


@dataclass(frozen=True)
class LmmsEvalJudgeSettings:
    """How to reach lmms-eval's judge server (``lmms_eval.llm_judge``); see :meth:`from_env`.

    ``api_type`` is lmms-eval's provider name (``openai``: any OpenAI-compatible server, configured by
    ``OPENAI_API_URL`` and ``OPENAI_API_KEY``, read by lmms-eval itself). lmms-eval retries a failed
    request ``num_retries`` times ``retry_delay`` seconds apart (its defaults: 5 and 10 s).
    ``max_concurrent`` requests are in flight at once. ``run_dir`` keeps the judgements (a rerun of the
    evaluation judges only what is missing); empty: ``$HF_HOME/cadvi/cadqa-judge``.
    """

    model: str = DEFAULT_JUDGE_MODEL
    api_type: str = "openai"
    num_retries: int = 5
    retry_delay: float = 10.0
    timeout: int = 60
    max_concurrent: int = 32
    invalid_retries: int = 1  # asks again after an unreadable rating (not a failed request)
    run_dir: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LmmsEvalJudgeSettings:
        """Settings from environment variables (:data:`JUDGE_ENV`), the lmms-eval way; unset ones keep the defaults.

        lmms-eval loads ``.env`` from the working directory when its judge package is imported, so the
        variables may live there too: call this after importing ``lmms_eval.llm_judge``.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, variable in JUDGE_ENV.items():
            text = environ.get(variable, "").strip()
            if not text:
                continue
            kind = type(getattr(cls, name))
            try:
                values[name] = kind(text) if kind is not str else text
            except ValueError:
                raise ValueError(f"{variable}={text!r} is not a valid {kind.__name__}") from None
        settings = cls(**values)
        if settings.num_retries < 1 or settings.retry_delay < 0 or settings.invalid_retries < 0:
            raise ValueError(f"bad judge settings {settings}: num_retries >= 1, delay and invalid retries >= 0")
        if settings.max_concurrent < 1:
            raise ValueError(f"{JUDGE_ENV['max_concurrent']} must be >= 1, got {settings.max_concurrent}")
        return settings


class LmmsEvalJudgeBackend(Closing):
    """``get_server(API_TYPE, ServerConfig(...)).evaluate(...)`` behind the backend interface.

    A judge that cannot work at all raises instead of judging: no API key (at construction), or a
    request refused before any succeeded (wrong URL path, unknown model name), so a misconfigured run
    stops rather than reporting every item as invalid.
    """

    name = "lmms-eval"

    def __init__(self, settings: LmmsEvalJudgeSettings | None = None, *, server: Any = None) -> None:
        from lmms_eval.llm_judge import ServerConfig, get_server

        self.settings = settings or LmmsEvalJudgeSettings.from_env()
        self.model = self.settings.model
        self.config = ServerConfig(
            model_name=self.settings.model,
            temperature=JUDGE_SAMPLING.temperature,
            max_tokens=JUDGE_SAMPLING.max_tokens,
            timeout=self.settings.timeout,
            num_retries=self.settings.num_retries,
            retry_delay=self.settings.retry_delay,
            max_concurrent=self.settings.max_concurrent,
        )
        unconfigured = (
            f"the CaD-QA judge ({self.settings.api_type} provider of lmms-eval) is not configured: set "
            "API_TYPE, OPENAI_API_URL and OPENAI_API_KEY (any non-empty key for a local server), in the "
            "environment or in .env in the working directory"
        )
        try:
            self.server = server if server is not None else get_server(self.settings.api_type, self.config)
        except Exception as error:  # the provider's client refuses to start (e.g. the openai client without a key)
            raise RuntimeError(f"{unconfigured} ({type(error).__name__}: {error})") from error
        if not self.server.is_available():
            raise RuntimeError(unconfigured)
        self.answered = False  # has any request succeeded yet (the runner trusts refusals only after one)
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        settings = {k: v for k, v in vars(self.settings).items() if k != "run_dir"}
        return {"backend": self.name, "lmms_eval_judge": settings, "base_url": getattr(self.server, "base_url", None)}

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Up to ``max_concurrent`` blocking ``evaluate`` calls at once; results in completion order.

        Requests are read lazily, a window of ``2 * max_concurrent`` ahead; when the caller stops early,
        the requests not yet started are cancelled.
        """
        done: queue.SimpleQueue[tuple[Future, Result | BaseException]] = queue.SimpleQueue()
        window = 2 * self.settings.max_concurrent
        iterator = iter(requests)
        pending: set[Future] = set()
        pool = ThreadPoolExecutor(max_workers=self.settings.max_concurrent, thread_name_prefix="cadqa-judge")
        try:
            while True:
                while len(pending) < window and (request := next(iterator, None)) is not None:
                    future = pool.submit(self._one, request)
                    future.add_done_callback(lambda f, r=request: done.put((f, _outcome(f, r))))
                    pending.add(future)
                if not pending:
                    return
                future, result = done.get()
                pending.discard(future)
                if isinstance(result, BaseException):
                    raise result
                yield result
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _one(self, request: Request) -> Result:
        from lmms_eval.llm_judge import Request as JudgeRequest

        judge_request = JudgeRequest(messages=[dict(m) for m in request.messages], config=self.config)
        try:
            response = self.server.evaluate(judge_request)
            if not getattr(response, "success", True):
                raise RuntimeError(response.error_message or "the judge server reported a failure")
        except Exception as error:  # lmms-eval re-raises after its own retries
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            transport = is_transport_error(error)
            if not transport and not self.answered:
                where = getattr(self.server, "base_url", self.settings.api_type)
                raise BackendRefusedError(
                    f"the CaD-QA judge ({self.settings.model} at {where}) failed before answering any request, "
                    f"after {self.settings.num_retries} tries: {message}; check API_TYPE, OPENAI_API_URL and "
                    f"{JUDGE_ENV['model']}"
                ) from error
            return Result.failure(request.key, message, TRANSPORT if transport else REQUEST)
        with self._lock:
            self.answered = True
        return Result(request.key, (response.content or "").strip(), 0, 0, "stop")


def _outcome(future: Future, request: Request) -> Result | BaseException:
    """A finished call's result; a cancelled one is a transport failure, a raised refusal is passed on."""
    if future.cancelled():
        return Result.failure(request.key, "cancelled", TRANSPORT)
    error = future.exception()
    return error if error is not None else future.result()
