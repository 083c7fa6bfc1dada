"""What the miner is asked for and what it answers: bins, :class:`PairingConfig`, :class:`Pair` and reports.

Plain data, apart from the algorithms: this is what callers (the CLI, the demo, run manifests,
the pairs stage) build, describe and read, and it changes for other reasons than the join does.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

# Where a bin's candidates come from (``BinReport.source``); see :func:`builders.pairs.miner.route_bins`.
EXACT, GROUPED, SAMPLED, ENUMERATED = "exact", "grouped", "sampled", "all"


@dataclass(frozen=True)
class Bin:
    """Pairs sharing ``min_shared`` to ``max_shared`` nouns (no upper end when None).

    ``quota`` is the bin's share of :attr:`PairingConfig.num_pairs`.
    """

    name: str
    min_shared: int
    max_shared: int | None
    quota: float

    def __post_init__(self) -> None:
        if self.min_shared < 0 or (self.max_shared is not None and self.max_shared < self.min_shared):
            raise ValueError(f"bin {self.name!r}: need 0 <= min_shared <= max_shared")
        if not 0 <= self.quota <= 1:
            raise ValueError(f"bin {self.name!r}: quota is a share of num_pairs, between 0 and 1")

    @property
    def label(self) -> str:
        return f"{self.min_shared}+" if self.max_shared is None else f"{self.min_shared}-{self.max_shared}"


# Ours, not the paper's: four equal bins from "one or two nouns in common" (mostly different scenes)
# to "eight or more" (near-duplicate scenes; CaD-QA's threshold). Pairs sharing nothing are left
# out: with no common object there are no commonalities to summarise.
DEFAULT_BINS: tuple[Bin, ...] = (
    Bin("low", 1, 2, 0.25),
    Bin("medium", 3, 4, 0.25),
    Bin("high", 5, 7, 0.25),
    Bin("very_high", 8, None, 0.25),
)


@dataclass(frozen=True)
class PairingConfig:
    """What :func:`mine_pairs` builds and how hard it looks for candidates; every default is ours.

    * ``num_pairs``: 278,000, the size of the phase-1 release.
    * ``bins``: :data:`DEFAULT_BINS`, quotas summing to 1.
    * ``max_uses_per_image``: 2. 278K pairs need 556K image slots; 873K images at 2 uses give
      1.75M, enough slack for the high bins, whose candidates crowd on a few "generic" images,
      while no image dominates the data.
    * ``exact_min_shared`` (8): bins starting at or above it are mined exactly; at 8 shared nouns the
      join's buckets are small (prefix of ``size - 6`` rare nouns).
    * ``grouped_min_shared`` (3): bins starting between it and ``exact_min_shared`` use the capped
      join; lower bins are served by random sampling, which hits them often (in Zipfian noun data,
      a random pair shares one or two nouns more often than not).
    * ``group_cap`` (4): members verified per bucket of the capped join (``cap(cap-1)/2``
      comparisons per bucket at most). At full scale 4 already yields ~40 middle-bin candidates
      per quota slot (11M); 12 yields 43M, and three times the memory and time.
    * ``random_samples_per_slot`` (32): random pairs drawn per quota slot of the sampled bins.
    * ``backfill`` (True): when bins fall short, top the total up to ``num_pairs`` from the other
      bins' leftover candidates (pairs keep their true bin; the report still shows each bin's
      shortfall against its quota). Users asking for 278K pairs get 278K when the data allows.
      Off: the bins keep their proportions and the total shrinks.
    * ``backfill_rounds`` (3): while the backfill is still short and the low bins were sampled, draw
      four times as many random pairs and fill again, up to this many times (64x the first draw).
    * ``enumerate_max_pairs`` (10M): when the data has at most this many image pairs (~4,500
      images), every pair is checked (about a second): all bins are complete, so the fill works from
      every pair there is, and a small set gets every pair its caps allow.
    * ``max_candidates`` (40M): candidates one join may keep (12 bytes each, ~0.5 GB; the
      de-duplication briefly needs about twice that). Past it a uniform hash sample is kept and
      the bin's report says it is not complete. Full-scale synthetic data need 11M (Zipf 1.0) to
      28M (Zipf 1.15, 8+ shared nouns common); real captions with many shared "frame" nouns
      ("image", "background", ...) could need far more.
    * ``chunk_keys``: bucket keys held in memory at a time (8 bytes each).
    * ``workers``: threads verifying buckets (None: every CPU this process may use). The output
      does not depend on it.
    """

    num_pairs: int = 278_000
    bins: tuple[Bin, ...] = DEFAULT_BINS
    max_uses_per_image: int = 2
    seed: int = 0
    exact_min_shared: int = 8
    grouped_min_shared: int = 3
    group_cap: int = 4
    random_samples_per_slot: float = 32.0
    backfill: bool = True
    backfill_rounds: int = 3
    enumerate_max_pairs: int = 10_000_000
    max_candidates: int = 40_000_000
    chunk_keys: int = 8_000_000
    workers: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bins", tuple(self.bins))
        if self.num_pairs < 0:
            raise ValueError("num_pairs must be >= 0")
        if not self.bins:
            raise ValueError("at least one bin is needed")
        if len({b.name for b in self.bins}) != len(self.bins):
            raise ValueError("bin names must be unique")
        if abs(sum(b.quota for b in self.bins) - 1) > 1e-6:
            raise ValueError("bin quotas are shares of num_pairs and must sum to 1")
        ordered = sorted(self.bins, key=lambda b: b.min_shared)
        for lower, upper in itertools.pairwise(ordered):
            if lower.max_shared is None or lower.max_shared >= upper.min_shared:
                raise ValueError(f"bins {lower.name!r} and {upper.name!r} overlap")
        if self.max_uses_per_image < 1:
            raise ValueError("max_uses_per_image must be >= 1")
        if not 2 <= self.grouped_min_shared <= self.exact_min_shared:
            raise ValueError("need 2 <= grouped_min_shared <= exact_min_shared (the join buckets on noun pairs)")
        if self.group_cap < 2 or self.random_samples_per_slot < 0 or self.chunk_keys < 1 or self.max_candidates < 1:
            raise ValueError("need group_cap >= 2, random_samples_per_slot >= 0, chunk_keys and max_candidates >= 1")
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers must be >= 1 (or None for every CPU)")
        if self.backfill_rounds < 0 or self.enumerate_max_pairs < 0:
            raise ValueError("backfill_rounds and enumerate_max_pairs must be >= 0")

    def quotas(self) -> tuple[int, ...]:
        """Pairs per bin: shares of ``num_pairs`` rounded by largest remainder, so they add up exactly."""
        raw = [b.quota * self.num_pairs for b in self.bins]
        counts = [math.floor(r) for r in raw]
        by_remainder = sorted(range(len(raw)), key=lambda k: (-(raw[k] - counts[k]), k))
        for k in by_remainder[: self.num_pairs - sum(counts)]:
            counts[k] += 1
        return tuple(counts)


@dataclass(frozen=True, slots=True)
class Pair:
    """Two images (indices into the noun sets, ``first < second``), the nouns they share and their bin."""

    first: int
    second: int
    shared: tuple[str, ...]  # rarest first
    bin: str


@dataclass(frozen=True)
class BinReport:
    """One bin's outcome. ``complete`` says its candidates are *all* the pairs in its range."""

    name: str
    label: str
    source: str
    quota: int | None  # None: as many as the image caps allow
    candidates: int
    pairs: int
    complete: bool

    @property
    def shortfall(self) -> int:
        return 0 if self.quota is None else max(0, self.quota - self.pairs)


@dataclass(frozen=True)
class PairingReport:
    """What the miner found and took, bin by bin, and where the time went."""

    bins: tuple[BinReport, ...]
    num_sets: int
    max_uses_per_image: int
    images_used: int
    candidates_by_source: dict[str, int]
    kept_share_by_source: dict[str, float]  # below 1 where a join hit max_candidates
    random_pairs_checked: int
    seconds: dict[str, float] = field(default_factory=dict)
    requested: int | None = None  # num_pairs asked for (None: as many as the caps allow)

    @property
    def total_pairs(self) -> int:
        return sum(b.pairs for b in self.bins)

    @property
    def complete(self) -> bool:
        """Every bin's candidates are every pair in its range (nothing was sampled)."""
        return all(b.complete for b in self.bins)

    @property
    def short(self) -> int:
        """Pairs missing from the requested total (0 when it was reached or nothing was requested)."""
        return max(0, (self.requested or 0) - self.total_pairs)

    def shortfall_line(self) -> str | None:
        """A plain sentence when fewer pairs than requested were found, saying whether more could exist."""
        if not self.short:
            return None
        if self.complete:
            why = (
                f"every image pair was considered: no more pairs fit under the cap of {self.max_uses_per_image} "
                "uses per image (raise --max-uses-per-image, or give more captions)"
            )
        else:
            why = "the candidates were a sample; more captions, or more samples, may find more"
        return f"asked for {self.requested:,} pairs, found {self.total_pairs:,}: {why}"

    @property
    def shortfalls(self) -> dict[str, int]:
        """Missing pairs of every bin that did not reach its quota."""
        return {b.name: b.shortfall for b in self.bins if b.shortfall}

    @property
    def ok(self) -> bool:
        return not self.shortfalls

    def format(self) -> str:
        """A plain-text table, one line per bin, then the totals."""
        return "\n".join(self.lines())

    def lines(self) -> list[str]:
        """The lines of :meth:`format`, for printing one by one (a console, a log)."""
        lines = [f"{'bin':<12}{'shared':>8}{'source':>9}{'candidates':>13}{'quota':>10}{'pairs':>10}{'short':>8}"]
        for b in self.bins:
            quota = "all" if b.quota is None else str(b.quota)
            exact = "" if b.complete else "~"
            lines.append(
                f"{b.name:<12}{b.label:>8}{b.source:>9}{exact + str(b.candidates):>13}{quota:>10}{b.pairs:>10}"
                f"{b.shortfall:>8}"
            )
        legend = "" if self.complete else "; ~ = a sample, not every pair in range"
        lines.append(
            f"{self.total_pairs} pairs over {self.images_used} of {self.num_sets} images "
            f"(at most {self.max_uses_per_image} uses each){legend}"
        )
        if self.shortfall_line():
            lines.append(str(self.shortfall_line()))
        return lines


def describe(config: PairingConfig) -> dict[str, Any]:
    """The config as plain data (bins as dicts), for logs and run manifests."""
    return {
        **{name: getattr(config, name) for name in config.__dataclass_fields__ if name != "bins"},
        "bins": [
            {"name": b.name, "min_shared": b.min_shared, "max_shared": b.max_shared, "quota": b.quota}
            for b in config.bins
        ],
    }
