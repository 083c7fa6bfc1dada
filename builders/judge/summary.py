"""The mean rating with its bootstrap CI, the 0-5 histogram, and the count of invalid judgements."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from builders.confidence import CONFIDENCE, mean_with_ci
from builders.judge.rating import RATINGS

if TYPE_CHECKING:
    from builders.judge.task import Judgement


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
