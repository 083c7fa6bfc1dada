"""The CaD-QA judge (paper §4): an LLM rates a predicted answer against the reference answer, 0-5.

What is known of the original: Mixtral-8x7B-Instruct gets the question, the reference answer and the
predicted answer and returns a rating from 0 to 5 (max 20 new tokens, greedy); the metric is the mean
rating (CaD-VI 7B 3.29, LLaVA-1.5 7B 2.54). Its prompt and code were never released, so the wording
(``prompts/templates/judge_cadqa.jinja``) and the parser here are ours; the template's sha256 goes into
every judgement record so ratings from different wordings are never mixed unknowingly.

One core, :func:`judge`, serves every caller: it takes ``ask``, a callable turning a batch of prompts
into texts, so the lmms-eval task (through lmms-eval's own judge server, :class:`LmmsEvalAsk`) and the
``cadvi judge`` command (through a :mod:`builders.llm` backend, :class:`BackendAsk`) rate with the same
template, parser and retry policy.

A judgement that cannot be read as a single rating is asked again (once by default), then recorded as
*invalid*: it is excluded from the mean and counted, never scored 0. Scoring it 0 would make a broken or
misconfigured judge look like a bad model; excluding it silently would hide the breakage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from builders.confidence import CONFIDENCE, mean_with_ci
from builders.llm.base import (
    Backend,
    BackendRefusedError,
    BackendUnavailableError,
    CircuitBreaker,
    Request,
    Sampling,
)
from prompts import load_template

logger = logging.getLogger(__name__)

JUDGE_TEMPLATE = "judge_cadqa.jinja"
DEFAULT_JUDGE_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
# The paper: max 20 new tokens. Greedy so that the same answer always gets the same rating.
JUDGE_SAMPLING = Sampling(max_tokens=20, temperature=0.0)
RATINGS: tuple[int, ...] = (0, 1, 2, 3, 4, 5)

# ----- reading a rating -----

# The scale echoed back ("Rating (0-5): 4", "on a scale from 0 to 5") is not a candidate rating.
_SCALE_ECHO = re.compile(r"\(?\s*(?:from\s+)?\b0\s*(?:-|–|—|to)\s*5\b\s*\)?", re.IGNORECASE)
# One rating: "4", "4.0", "[3]", "4/5", "4 (out of 5)"; sign and fraction are read so they can be refused.
_RATING = (
    r"[\[(]?\s*(?P<sign>[-−]\s?)?(?P<int>\d+)(?:\.(?P<frac>\d+))?"
    r"(?:\s*\(?\s*(?:/|out\s+of)\s*(?P<den>\d+)(?:\.\d+)?\s*\)?)?\s*[\])]?(?![\w.]*\d)"
)
_LABEL = r"(?:(?:the|my|final)\s+)*\b(?:rating|score|grade)\b"
# A first line that is a rating and nothing else: "4", "4.", "**4**", "Rating: 4", "The rating is 4.", "4/5".
_RATING_LINE = re.compile(rf"(?:{_LABEL}\s*(?:[:=]|is)?\s*)?{_RATING}\s*[.!]?", re.IGNORECASE)
# A rating stated anywhere: "Rating: 2", "The score is 4", "score of 4", "I rate it 3 (out of 5)".
_LABELLED = re.compile(
    rf"(?:{_LABEL}\s*(?:[:=]|is|of|would\s+be|should\s+be)|\brate\s+(?:it|this(?:\s+answer)?|the\s+(?:predicted\s+)?"
    rf"answer)?\s*(?:a|as|at)?)\s*{_RATING}",
    re.IGNORECASE,
)
# A number opening the first line ("4. Rating: 3", "1. The answer..."): not a verdict by itself, but a
# rating stated elsewhere must agree with it.
_LEADING_NUMBER = re.compile(_RATING)


def parse_rating(text: str | None) -> int | None:
    """The 0-5 rating of a judge's reply, or None unless the reply is a rating in an accepted form.

    Accepted: a first line that is a rating and nothing else (``4``, ``4.``, ``**4**``, ``[3]``, ``4/5``,
    ``Rating: 4``, ``Score: 4.0``, ``The rating is 4.``), optionally followed by an explanation on the
    next lines; or a rating stated with its label (``... Rating: 2``, ``I would rate it 3 (out of 5).``).
    Every rating the reply states must be the same, in range, on the 0-5 scale, and agree with a number
    that opens the reply. Rejected (None): no such form (``Commonalities:\nDifferences:\n1.``, where
    ``1.`` is a list number, or ``1. The answer ...``); out of range (``6``, ``-1``); another scale
    (``7/10``); a fraction (``3.5``); disagreement (``3 or 4``, ``4. Rating: 3``). The scale repeated
    back ("0-5", "0 to 5") is ignored.
    """
    if not text:
        return None
    text = _SCALE_ECHO.sub(" ", text.replace("**", "").replace("__", "").replace("`", ""))
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    verdicts = [match for match in _LABELLED.finditer(text)]
    whole_line = _RATING_LINE.fullmatch(lines[0])
    if whole_line:
        verdicts.append(whole_line)
    if not verdicts:
        return None
    values = {_rating_value(match) for match in verdicts}
    leading = _LEADING_NUMBER.match(lines[0])
    if leading and not whole_line:
        values.add(_rating_value(leading))
    if len(values) != 1 or None in values:
        return None
    return values.pop()


def _rating_value(match: re.Match[str]) -> int | None:
    if match["sign"] or (match["frac"] and int(match["frac"]) != 0):
        return None
    if match["den"] is not None and int(match["den"]) != RATINGS[-1]:
        return None
    value = int(match["int"])
    return value if value in RATINGS else None


# ----- asking the judge -----


@dataclass(frozen=True)
class Failed:
    """What ``ask`` gives for a prompt whose request failed (no text came back).

    A request the judge refused counts as an attempt. A ``transport`` failure (the judge server did not
    answer: refused, timed out, 5xx after retries) is no attempt: the item is asked again, and a judge
    that answers nothing for ``transport_rounds`` rounds stops the run (:class:`BackendUnavailableError`).
    """

    error: str
    transport: bool = False


Answer = str | Failed


class Ask(Protocol):
    """Turns a batch of judge prompts into the judge's answers, one per prompt, in order.

    Implementations may carry ``model`` (the judge model's name), which goes into the records.
    """

    def __call__(self, prompts: Sequence[str]) -> Sequence[Answer]: ...


@dataclass(frozen=True)
class JudgeItem:
    """One answer to rate. ``id`` is the CaD-QA ``question_id``."""

    id: str
    question: str
    reference: str
    prediction: str


@dataclass(frozen=True)
class Judgement:
    """The outcome for one item: ``rating`` None means invalid (excluded from the mean)."""

    item: JudgeItem
    rating: int | None
    raw: tuple[str, ...]  # the judge's text of every attempt ("" for a failed request)
    errors: tuple[str, ...] = ()  # the failed requests' errors, if any
    template: str = JUDGE_TEMPLATE
    template_sha256: str = ""
    model: str | None = None

    @property
    def attempts(self) -> int:
        return len(self.raw)

    @property
    def valid(self) -> bool:
        return self.rating is not None

    def to_record(self) -> dict[str, Any]:
        """The JSON line written per item (``cadvi judge --out``, lmms-eval's logged samples)."""
        return {
            "question_id": self.item.id,
            "rating": self.rating,
            "valid": self.valid,
            "attempts": self.attempts,
            "raw": list(self.raw),
            "errors": list(self.errors),
            "question": self.item.question,
            "reference": self.item.reference,
            "prediction": self.item.prediction,
            "judge_model": self.model,
            "template": self.template,
            "template_sha256": self.template_sha256,
        }


def read_predictions(path: str | os.PathLike) -> dict[str, str]:
    """``{question_id: prediction}`` from a JSONL file of ``{"question_id", "prediction"}`` objects.

    ``text`` is read when ``prediction`` is absent: LLaVA's ``model_vqa`` writes its answers there, so
    the original evaluation's answer files work unchanged. Every bad line is reported at once.
    """
    path = Path(path)
    predictions: dict[str, str] = {}
    problems: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                problems.append(f"{path}:{number}: not JSON ({error.msg})")
                continue
            if not isinstance(record, dict):
                problems.append(f"{path}:{number}: a line must be an object, got {type(record).__name__}")
                continue
            question_id = record.get("question_id")
            prediction = record.get("prediction", record.get("text"))
            if not isinstance(question_id, str | int) or isinstance(question_id, bool) or str(question_id) == "":
                problems.append(f"{path}:{number}: 'question_id' must be a non-empty string, got {question_id!r}")
            elif not isinstance(prediction, str):
                problems.append(f"{path}:{number}: 'prediction' must be a string, got {prediction!r}")
            elif str(question_id) in predictions:
                problems.append(f"{path}:{number}: duplicate question_id {question_id!r}")
            else:
                predictions[str(question_id)] = prediction
    if problems:
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{len(problems)} problem(s) in {path}:\n  " + "\n  ".join(problems[:20]) + more)
    if not predictions:
        raise ValueError(f"no predictions in {path}")
    return predictions


# ----- statistics -----


@dataclass(frozen=True)
class RatingSummary:
    """Mean rating over the valid items with its CI, the 0-5 histogram and how many were invalid."""

    n: int
    invalid: int
    mean: float | None  # None when no rating was valid
    ci_low: float | None
    ci_high: float | None
    histogram: dict[int, int]  # every rating 0..5, zeros included
    confidence: float = CONFIDENCE

    @property
    def valid(self) -> int:
        return self.n - self.invalid

    @classmethod
    def of(cls, ratings: Iterable[int | None], *, confidence: float = CONFIDENCE) -> RatingSummary:
        ratings = list(ratings)
        valid = [r for r in ratings if r is not None]
        if any(r not in RATINGS for r in valid):
            raise ValueError(f"ratings must be None or one of {RATINGS}, got {sorted(set(valid) - set(RATINGS))}")
        histogram = {rating: 0 for rating in RATINGS}
        for rating in valid:
            histogram[rating] += 1
        mean = low = high = None
        if valid:
            summary = mean_with_ci(valid, confidence=confidence)
            mean, low, high = summary["value"], summary["ci_low"], summary["ci_high"]
        return cls(len(ratings), len(ratings) - len(valid), mean, low, high, histogram, confidence)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "valid": self.valid,
            "invalid": self.invalid,
            "mean_rating": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": self.confidence,
            "histogram": {str(k): v for k, v in self.histogram.items()},
        }

    def line(self) -> str:
        """One line for people, e.g. ``mean rating 3.29 ± 0.03 (95% CI 3.26-3.32) over 7,500 valid ...``."""
        excluded = f"{self.invalid:,} invalid (excluded from the mean, not scored 0)"
        if self.mean is None:
            return f"no valid rating: {excluded} of {self.n:,} judged"
        assert self.ci_low is not None and self.ci_high is not None
        half = (self.ci_high - self.ci_low) / 2
        return (
            f"mean rating {self.mean:.2f} ± {half:.2f} ({self.confidence:.0%} CI {self.ci_low:.2f}-{self.ci_high:.2f}) "
            f"over {self.valid:,} valid of {self.n:,}; {excluded}"
        )


@dataclass(frozen=True)
class JudgeReport:
    """Every item's judgement and the summary over them."""

    records: tuple[Judgement, ...]
    summary: RatingSummary
    template: str
    template_sha256: str
    model: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.summary.n

    @property
    def mean(self) -> float | None:
        return self.summary.mean

    @property
    def ci(self) -> tuple[float, float] | None:
        low, high = self.summary.ci_low, self.summary.ci_high
        return None if low is None or high is None else (low, high)

    @property
    def histogram(self) -> dict[int, int]:
        return self.summary.histogram

    @property
    def invalid(self) -> int:
        return self.summary.invalid

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary.as_dict(),
            "judge_model": self.model,
            "template": self.template,
            "template_sha256": self.template_sha256,
            **self.settings,
        }


def judge(
    items: Iterable[JudgeItem],
    ask: Ask | Callable[[Sequence[str]], Sequence[Answer]],
    *,
    retries: int = 1,
    template: str = JUDGE_TEMPLATE,
    progress: Callable[[int], None] | None = None,
    on_settled: Callable[[Judgement], None] | None = None,
    transport_rounds: int = 3,
    warn_invalid: bool = True,
) -> JudgeReport:
    """Rate every item; items whose answer has no valid rating are asked again up to ``retries`` times.

    All first attempts go to ``ask`` as one batch, then the invalid ones as the next batch, so a backend
    can run each round concurrently. ``progress`` is called with the number of items settled per round,
    ``on_settled`` with each item's :class:`Judgement` as soon as it is final (so a caller can keep it
    before the run ends). Items whose request failed in transport are asked again without using up an
    attempt; when ``transport_rounds`` rounds in a row settle nothing because every request failed that
    way, :class:`BackendUnavailableError` stops the run (``.settled`` holds the judgements made so far).
    ``warn_invalid=False`` leaves the warning about invalid judgements to the caller (the lmms-eval task
    judges one item per call and warns once, in its aggregation).
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if transport_rounds < 1:
        raise ValueError(f"transport_rounds must be >= 1, got {transport_rounds}")
    loaded = load_template(template)
    items = list(items)
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)[:5]
        raise ValueError(f"duplicate item ids: {', '.join(map(repr, duplicates))}")
    prompts = [
        loaded.render(question=item.question, reference=item.reference, prediction=item.prediction) for item in items
    ]
    model = getattr(ask, "model", None)
    raw: list[list[str]] = [[] for _ in items]
    errors: list[list[str]] = [[] for _ in items]
    ratings: list[int | None] = [None] * len(items)
    settled: dict[int, Judgement] = {}
    pending = list(range(len(items)))
    idle_rounds = 0  # rounds in a row in which every request failed in transport
    while pending:
        try:
            answers = list(ask([prompts[i] for i in pending]))
        except (BackendUnavailableError, BackendRefusedError) as error:  # keep what was judged before it stopped
            error.settled = [settled[i] for i in sorted(settled)]  # type: ignore[attr-defined]
            raise
        if len(answers) != len(pending):
            raise RuntimeError(f"ask returned {len(answers)} answers for {len(pending)} prompts")
        still = []
        for index, answer in zip(pending, answers, strict=True):
            if isinstance(answer, Failed):
                errors[index].append(answer.error)
                if answer.transport:  # the server failed, not the item: ask again, no attempt used
                    still.append(index)
                    continue
                raw[index].append("")
            else:
                raw[index].append(answer or "")
                ratings[index] = parse_rating(answer)
            if ratings[index] is None and len(raw[index]) <= retries:
                still.append(index)
                continue
            settled[index] = Judgement(
                items[index], ratings[index], tuple(raw[index]), tuple(errors[index]), template, loaded.sha256, model
            )
            if on_settled is not None:
                on_settled(settled[index])
        done = len(pending) - len(still)
        if progress is not None and done:
            progress(done)
        transported = all(isinstance(a, Failed) and a.transport for a in answers)
        idle_rounds = idle_rounds + 1 if transported else 0
        if idle_rounds >= transport_rounds:
            error = BackendUnavailableError(
                f"the judge server failed every request for {idle_rounds} rounds (last: {errors[still[0]][-1]}); "
                f"{len(settled):,} of {len(items):,} items judged, {len(still):,} left to do"
            )
            error.settled = [settled[i] for i in sorted(settled)]  # type: ignore[attr-defined]
            raise error
        pending = still
    records = tuple(settled[i] for i in range(len(items)))
    summary = RatingSummary.of(ratings)
    if summary.invalid and warn_invalid:
        failed = sum(1 for record in records if record.errors and not record.valid)
        logger.warning(
            "judge: %d of %d judgements invalid after %d attempt(s) each (%d with failed requests); "
            "they are excluded from the mean",
            summary.invalid,
            summary.n,
            retries + 1,
            failed,
        )
    settings = {"retries": retries, "asked": getattr(ask, "describe", lambda: {})()}
    return JudgeReport(records, summary, template, loaded.sha256, model, settings)


# ----- adapters: where the answers come from -----


class BackendAsk:
    """``ask`` over a :mod:`builders.llm` backend (vLLM, an OpenAI-compatible server, transformers).

    Each prompt is one user turn (no system prompt: Mixtral's original template has no system role);
    the backend runs the batch with its own concurrency and retries. The server is checked before the
    first batch (and again after an outage); ``max_failures_in_a_row`` transport failures in a row stop
    the batch, its unsent prompts coming back as transport failures. A request the judge refused comes
    back as :class:`Failed`, unless no request has ever succeeded: a judge that refuses everything is
    misconfigured, and raises rather than reporting every item as invalid.
    """

    def __init__(
        self, backend: Backend, *, sampling: Sampling = JUDGE_SAMPLING, max_failures_in_a_row: int = 8
    ) -> None:
        self.backend = backend
        self.sampling = sampling
        self.model = backend.model
        self.max_failures_in_a_row = max_failures_in_a_row
        self._answered = False  # has any request succeeded yet
        self._checked = False  # has the server passed its health check since the last outage

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend.describe(), "sampling": dataclasses.asdict(self.sampling)}

    def __call__(self, prompts: Sequence[str]) -> list[Answer]:
        if not self._checked:
            self.backend.check()
            self._checked = True
        requests = [
            Request(key=str(i), messages=({"role": "user", "content": p},), sampling=self.sampling)
            for i, p in enumerate(prompts)
        ]
        breaker = CircuitBreaker(self.max_failures_in_a_row)
        results: dict[str, Any] = {}
        stream = self.backend.generate(requests)
        try:
            for result in stream:
                results[result.key] = result
                if breaker.record(result):
                    self._checked = False
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        unsent = f"not sent: the judge server failed {breaker.in_a_row} requests in a row"
        answers: list[Answer] = []
        for request in requests:
            result = results.get(request.key)
            if result is None:
                answers.append(Failed(unsent if breaker.tripped else "the backend returned no result", transport=True))
            elif not result.ok:
                answers.append(Failed(result.error or "failed", transport=result.transport_failed))
            else:
                answers.append(result.text)
        refused = [a for a in answers if isinstance(a, Failed) and not a.transport]
        if not self._answered and answers and len(refused) == len(answers):
            raise BackendRefusedError(
                f"the judge ({self.model} on the {self.backend.name} backend) failed every request before answering "
                f"any, e.g. {refused[0].error}; check the server address, model name and key"
            )
        self._answered = self._answered or any(isinstance(answer, str) for answer in answers)
        return answers


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
}


@dataclass(frozen=True)
class LmmsEvalJudgeSettings:
    """How to reach lmms-eval's judge server (``lmms_eval.llm_judge``); see :meth:`from_env`.

    ``api_type`` is lmms-eval's provider name (``openai``: any OpenAI-compatible server, configured by
    ``OPENAI_API_URL`` and ``OPENAI_API_KEY``, read by lmms-eval itself). lmms-eval retries a failed
    request ``num_retries`` times ``retry_delay`` seconds apart (its defaults: 5 and 10 s).
    """

    model: str = DEFAULT_JUDGE_MODEL
    api_type: str = "openai"
    num_retries: int = 5
    retry_delay: float = 10.0
    timeout: int = 60
    max_concurrent: int = 8
    invalid_retries: int = 1  # asks again after an unreadable rating (not a failed request)

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
        return settings


class LmmsEvalAsk:
    """``ask`` over lmms-eval's judge server: ``get_server(API_TYPE, ServerConfig(...)).evaluate(...)``.

    lmms-eval is imported here, lazily, so the rest of this module works without it. A request that
    still fails after lmms-eval's own retries comes back as :class:`Failed` once the judge has answered
    at least once: refused by the judge (a 4xx), the item becomes invalid; failed in transport (server
    away, timeouts, 5xx), it is no attempt. After ``max_failures_in_a_row`` transport failures in a row
    the next ``cooldown`` prompts fail at once, without a request (each failure already cost lmms-eval's
    retries, 5 x 10 s by default), then one request probes the server again. A judge that cannot work at
    all raises instead, so a misconfigured run stops rather than reporting every item as invalid: no API
    key (at construction), or a failure before any request succeeded (wrong URL, unknown model, down).
    """

    def __init__(
        self,
        settings: LmmsEvalJudgeSettings | None = None,
        *,
        server: Any = None,
        max_failures_in_a_row: int = 3,
        cooldown: int = 50,
    ) -> None:
        from lmms_eval.llm_judge import ServerConfig, get_server

        self.max_failures_in_a_row = max_failures_in_a_row
        self.cooldown = cooldown
        self._failures_in_a_row = 0
        self._skip = 0  # prompts still to fail at once after the breaker tripped
        self._lock = threading.Lock()

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
        self._answered = False  # has any request succeeded yet

    def describe(self) -> dict[str, Any]:
        settings = {k: v for k, v in vars(self.settings).items()}
        return {"lmms_eval_judge": settings, "base_url": getattr(self.server, "base_url", None)}

    def _one(self, prompt: str) -> Answer:
        from lmms_eval.llm_judge import Request as JudgeRequest

        from builders.llm.openai_backend import is_transport_error

        with self._lock:
            if self._skip > 0:
                self._skip -= 1
                return Failed(f"not sent: the judge server failed {self._failures_in_a_row} requests in a row", True)
        request = JudgeRequest(messages=[{"role": "user", "content": prompt}], config=self.config)
        try:
            response = self.server.evaluate(request)
            if not getattr(response, "success", True):
                raise RuntimeError(response.error_message or "the judge server reported a failure")
        except Exception as error:  # lmms-eval re-raises after its own retries
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            if not self._answered:
                where = getattr(self.server, "base_url", self.settings.api_type)
                raise RuntimeError(
                    f"the CaD-QA judge ({self.settings.model} at {where}) failed before answering any request, "
                    f"after {self.settings.num_retries} tries: {message}; check API_TYPE, OPENAI_API_URL and "
                    f"{JUDGE_ENV['model']}"
                ) from error
            transport = is_transport_error(error)
            with self._lock:
                self._failures_in_a_row = self._failures_in_a_row + 1 if transport else 0
                if self._failures_in_a_row >= self.max_failures_in_a_row:
                    self._skip = self.cooldown
            return Failed(message, transport=transport)
        with self._lock:
            self._failures_in_a_row = 0
        self._answered = True
        return response.content or ""

    def __call__(self, prompts: Sequence[str]) -> list[Answer]:
        if len(prompts) <= 1:
            return [self._one(p) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(len(prompts), self.settings.max_concurrent)) as pool:
            return list(pool.map(self._one, prompts))
