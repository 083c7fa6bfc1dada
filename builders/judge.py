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
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from builders.confidence import CONFIDENCE, mean_with_ci
from builders.llm.base import Backend, Request, Sampling
from prompts import load_template

logger = logging.getLogger(__name__)

JUDGE_TEMPLATE = "judge_cadqa.jinja"
DEFAULT_JUDGE_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
# The paper: max 20 new tokens. Greedy so that the same answer always gets the same rating.
JUDGE_SAMPLING = Sampling(max_tokens=20, temperature=0.0)
RATINGS: tuple[int, ...] = (0, 1, 2, 3, 4, 5)

# ----- reading a rating -----

# The scale echoed back ("Rating (0-5): 4", "on a scale from 0 to 5") is not a candidate rating.
_SCALE_ECHO = re.compile(r"\b0\s*(?:-|–|—|to)\s*5\b", re.IGNORECASE)
# A number, with an optional sign, fraction and denominator ("4", "-1", "4.0", "4/5", "4 (out of 5)").
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-−]\s?)?(?P<int>\d+)(?:\.(?P<frac>\d+))?(?![\w])"
    r"(?:\s*\(?\s*(?:/|out\s+of)\s*(?P<den>\d+)(?:\.\d+)?\)?)?",
    re.IGNORECASE,
)
# Numbers that name an image ("Image 2 shows ...") are not ratings.
_IMAGE_REFERENCE = re.compile(r"\bimages?\s*#?\s*$", re.IGNORECASE)
# The number follows a label: "Rating: 4", "The rating is 4", "score of 4", "**Rating:** 4".
_LABELLED = re.compile(
    r"\b(?:rating|score|grade)\b[\s*_]*(?:[:=]|is|of|would\s+be|should\s+be)?[\s*_\[(]*$", re.IGNORECASE
)
# Where a sentence or line ends: the verdict is read from the first one that holds a number.
_SEGMENT_END = re.compile(r"(?<=[.!?])\s+|\n")


@dataclass(frozen=True)
class _Candidate:
    segment: int  # which sentence or line it is in
    value: int | None  # None: not a rating on the 0-5 scale (negative, fractional, too large, another scale)
    labelled: bool  # right after "rating", "score" or "grade"


def parse_rating(text: str | None) -> int | None:
    """The 0-5 rating in a judge's answer, or None when there is no single, in-range one.

    Accepted: ``4``, ``Rating: 4``, ``4/5``, ``**4**``, ``4.``, ``The rating is 4.``, ``4 out of 5``.
    Rejected (None): no number; a number outside 0-5 (``6``, ``-1``); another scale (``7/10``); a
    fraction (``3.5``); several different candidates (``3 or 4``, ``Rating: 4. Rating: 3``).

    The verdict is the first sentence or line that holds a number: every number in it, and every
    labelled number ("Rating: 3") anywhere, must be the same in-range rating. So ``4. The answer
    names 2 dogs.`` is 4, while ``3 or 4`` is ambiguous. ``Image 2`` is never a candidate, and
    neither is the scale ("0-5", "0 to 5") when the judge repeats it.
    """
    if not text:
        return None
    text = _SCALE_ECHO.sub(" ", text)
    ends = [match.end() for match in _SEGMENT_END.finditer(text)]
    candidates = []
    for match in _NUMBER.finditer(text):
        before = text[: match.start()]
        if _IMAGE_REFERENCE.search(before[-12:]):
            continue
        segment = sum(1 for end in ends if end <= match.start())
        candidates.append(_Candidate(segment, _rating_value(match), bool(_LABELLED.search(before[-40:]))))
    if not candidates:
        return None
    first = candidates[0].segment
    values = {c.value for c in candidates if c.segment == first or c.labelled}
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
    """What ``ask`` gives for a prompt whose request failed (no text came back); counts as an attempt."""

    error: str


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
    warn_invalid: bool = True,
) -> JudgeReport:
    """Rate every item; items whose answer has no valid rating are asked again up to ``retries`` times.

    All first attempts go to ``ask`` as one batch, then the invalid ones as the next batch, so a backend
    can run each round concurrently. ``progress`` is called with the number of items settled per round.
    ``warn_invalid=False`` leaves the warning about invalid judgements to the caller (the lmms-eval task
    judges one item per call and warns once, in its aggregation).
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    loaded = load_template(template)
    items = list(items)
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)[:5]
        raise ValueError(f"duplicate item ids: {', '.join(map(repr, duplicates))}")
    prompts = [
        loaded.render(question=item.question, reference=item.reference, prediction=item.prediction) for item in items
    ]
    raw: list[list[str]] = [[] for _ in items]
    errors: list[list[str]] = [[] for _ in items]
    ratings: list[int | None] = [None] * len(items)
    pending = list(range(len(items)))
    for round_number in range(retries + 1):
        if not pending:
            break
        answers = list(ask([prompts[i] for i in pending]))
        if len(answers) != len(pending):
            raise RuntimeError(f"ask returned {len(answers)} answers for {len(pending)} prompts")
        for index, answer in zip(pending, answers, strict=True):
            if isinstance(answer, Failed):
                raw[index].append("")
                errors[index].append(answer.error)
            else:
                raw[index].append(answer or "")
                ratings[index] = parse_rating(answer)
        still = [i for i in pending if ratings[i] is None]
        settled = len(pending) - len(still) if round_number < retries else len(pending)
        if progress is not None and settled:
            progress(settled)
        pending = still
    model = getattr(ask, "model", None)
    records = tuple(
        Judgement(item, ratings[i], tuple(raw[i]), tuple(errors[i]), template, loaded.sha256, model)
        for i, item in enumerate(items)
    )
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
    the backend runs the batch with its own concurrency and retries, and a request that still fails
    comes back as :class:`Failed`, unless no request has ever succeeded: a judge that never answered is
    misconfigured or away, and raises rather than reporting every item as invalid.
    """

    def __init__(self, backend: Backend, *, sampling: Sampling = JUDGE_SAMPLING) -> None:
        self.backend = backend
        self.sampling = sampling
        self.model = backend.model
        self._answered = False  # has any request succeeded yet

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend.describe(), "sampling": dataclasses.asdict(self.sampling)}

    def __call__(self, prompts: Sequence[str]) -> list[Answer]:
        requests = [
            Request(key=str(i), messages=({"role": "user", "content": p},), sampling=self.sampling)
            for i, p in enumerate(prompts)
        ]
        results = {result.key: result for result in self.backend.generate(requests)}
        answers: list[Answer] = []
        for request in requests:
            result = results.get(request.key)
            if result is None:
                answers.append(Failed("the backend returned no result"))
            elif not result.ok:
                answers.append(Failed(result.error or "failed"))
            else:
                answers.append(result.text)
        if not self._answered and answers and all(isinstance(answer, Failed) for answer in answers):
            raise RuntimeError(
                f"the judge ({self.model} on the {self.backend.name} backend) failed every request before answering "
                f"any, e.g. {answers[0].error}; check the server address, model name and key"
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
    still fails after lmms-eval's own retries comes back as :class:`Failed` (the item becomes invalid)
    once the judge has answered at least once. A judge that cannot work at all raises instead, so a
    misconfigured run stops rather than reporting every item as invalid: no API key (at construction),
    or a failure before any request succeeded (wrong URL, unknown model name, server down).
    """

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
        self._answered = False  # has any request succeeded yet

    def describe(self) -> dict[str, Any]:
        settings = {k: v for k, v in vars(self.settings).items()}
        return {"lmms_eval_judge": settings, "base_url": getattr(self.server, "base_url", None)}

    def _one(self, prompt: str) -> Answer:
        from lmms_eval.llm_judge import Request as JudgeRequest

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
            return Failed(message)
        self._answered = True
        return response.content or ""

    def __call__(self, prompts: Sequence[str]) -> list[Answer]:
        if len(prompts) <= 1:
            return [self._one(p) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(len(prompts), self.settings.max_concurrent)) as pool:
            return list(pool.map(self._one, prompts))
