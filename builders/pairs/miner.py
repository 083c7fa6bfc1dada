"""Mining image pairs "with different levels of similarity" from the nouns of their captions.

CaD-Inst phase 1 pairs Localized Narratives images (873K captions, ~12.5 distinct nouns each) into
278K pairs whose similarity is the number of nouns the two captions share (paper §3.1). The paper
publishes neither the similarity bins, nor how many pairs each bin gets, nor how often an image may
be reused: those are :class:`PairingConfig` parameters here, and their defaults are ours. CaD-QA
(paper §4) uses the same miner with a threshold, ``>= 8`` shared nouns and each image at most 4
times (:func:`mine_threshold_pairs`).

Comparing all pairs is out of the question (3.8e11 at full scale), so candidates come from three
sources, one per kind of bin (see :func:`route_bins`):

* **exact** (high overlap, ``>= exact_min_shared``): a prefix-filtering join on *pairs* of rare
  nouns (:func:`prefix_join`) that finds every pair above the threshold and nothing else;
* **grouped** (middle overlap): the same join, with every bucket sampled down to ``group_cap``
  members, so that the huge buckets of common nouns cost ``cap²/2`` comparisons, not millions;
* **sampled** (low overlap): uniformly random image pairs, kept when their overlap falls in a bin.

The candidates of every source are pooled (a random pair sharing 5 nouns serves the 5-7 bin too),
de-duplicated and binned by their exact overlap. A greedy fill then takes each bin's candidates in
a seeded random order, scarcest bin first (fewest candidates per quota slot), while both images
are under ``max_uses_per_image``. Everything random draws from one ``numpy`` seed, so the same
input and seed give the same pairs.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from builders.pairs import kernels

logger = logging.getLogger(__name__)

EXACT, GROUPED, SAMPLED, ENUMERATED = "exact", "grouped", "sampled", "all"
SAMPLE_CHUNK = 1 << 22  # random pairs verified per kernel call
VERIFY_BUFFER = 1 << 22  # candidate pairs a join kernel call may write before handing back


# ---------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NounSets:
    """One set of nouns per image, as CSR arrays: set ``i`` is ``indices[indptr[i]:indptr[i + 1]]``.

    ``vocabulary[k]`` is the noun of id ``k``. :meth:`from_lists` numbers nouns **rarest first**
    (ascending document frequency, ties by the noun string) and sorts every set's ids, so a set's
    first ids are its rarest nouns: the prefix the join buckets on. Any consistent id order is
    *correct* for the miner; rarest first is what makes the buckets small.
    """

    indptr: np.ndarray
    indices: np.ndarray
    vocabulary: list[str]

    def __post_init__(self) -> None:
        indptr = np.ascontiguousarray(self.indptr, dtype=np.int64)
        indices = np.ascontiguousarray(self.indices, dtype=np.int32)
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "vocabulary", list(self.vocabulary))
        if indptr.ndim != 1 or indptr.size == 0 or indptr[0] != 0 or indptr[-1] != indices.size:
            raise ValueError("indptr must start at 0 and end at len(indices)")
        if np.any(np.diff(indptr) < 0):
            raise ValueError("indptr must be non-decreasing")
        if indices.size and (indices.min() < 0 or indices.max() >= len(self.vocabulary)):
            raise ValueError("noun ids must index the vocabulary")
        ascending = np.diff(indices) > 0
        starts = indptr[1:-1]
        ascending[starts[(starts > 0) & (starts < indices.size)] - 1] = True  # set boundaries
        if not ascending.all():
            raise ValueError("the noun ids of every set must be strictly ascending (sorted, no repeats)")

    @classmethod
    def from_lists(cls, noun_lists: Iterable[Iterable[str]]) -> NounSets:
        """Noun sets from one list of (already lemmatised) nouns per image; repeats are dropped.

        Strings are taken as they are: normalise case and lemmas before. Ids are rarest first,
        ties broken by the string, so the result does not depend on the order of first sight.
        """
        flat: list[str] = []
        sizes: list[int] = []
        for nouns in noun_lists:
            if isinstance(nouns, str):
                raise TypeError("each item must be a list of nouns, not a string")
            before = len(flat)
            flat.extend(nouns)
            sizes.append(len(flat) - before)
        lookup: dict[str, int] = {}
        first_seen = np.fromiter((lookup.setdefault(noun, len(lookup)) for noun in flat), np.int64, len(flat))
        words = list(lookup)
        set_of = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        width = max(len(words), 1)
        packed = _sorted_unique(set_of * width + first_seen)
        frequency = np.bincount(packed % width, minlength=len(words))
        rarest_first = sorted(range(len(words)), key=lambda k: (frequency[k], words[k]))
        new_id = np.empty(len(words), np.int64)
        new_id[rarest_first] = np.arange(len(words))
        packed = np.sort((packed // width) * width + new_id[packed % width])
        indptr = np.zeros(len(sizes) + 1, np.int64)
        np.cumsum(np.bincount(packed // width, minlength=len(sizes)), out=indptr[1:])
        return cls(indptr, (packed % width).astype(np.int32), [words[k] for k in rarest_first])

    def __len__(self) -> int:
        return self.indptr.size - 1

    @property
    def sizes(self) -> np.ndarray:
        """Number of distinct nouns of every set."""
        return np.diff(self.indptr)

    def ids(self, index: int) -> np.ndarray:
        return self.indices[self.indptr[index] : self.indptr[index + 1]]

    def nouns(self, index: int) -> tuple[str, ...]:
        """The nouns of one set, rarest first."""
        return tuple(self.vocabulary[k] for k in self.ids(index))

    def shared(self, first: int, second: int) -> tuple[str, ...]:
        """The nouns two sets share, rarest first."""
        return tuple(self.vocabulary[k] for k in np.intersect1d(self.ids(first), self.ids(second)))

    def document_frequency(self) -> np.ndarray:
        """How many sets hold each noun id (ascending, by construction of :meth:`from_lists`)."""
        return np.bincount(self.indices, minlength=len(self.vocabulary))


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    values = np.sort(values)
    if values.size:
        values = values[np.concatenate(([True], values[1:] != values[:-1]))]
    return values


# ---------------------------------------------------------------------------------------------
# Configuration and output
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Candidate generation
# ---------------------------------------------------------------------------------------------


@dataclass
class Candidates:
    """Candidate pairs (``first < second``) with their exact overlap; may hold repeats until :meth:`unique`.

    ``fraction`` is the share of the qualifying pairs kept when a join hit ``max_candidates``.
    """

    first: np.ndarray
    second: np.ndarray
    shared: np.ndarray
    fraction: float = 1.0

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int32))

    @classmethod
    def concat(cls, parts: Sequence[Candidates]) -> Candidates:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("first", "second", "shared")))

    def __len__(self) -> int:
        return self.first.size

    def select(self, mask_or_index: np.ndarray) -> Candidates:
        return Candidates(self.first[mask_or_index], self.second[mask_or_index], self.shared[mask_or_index])


def merge_unique(parts: list[Candidates], num_sets: int) -> Candidates:
    """The candidates of all ``parts``, one row per unordered pair, sorted by ``(first, second)``.

    ``parts`` is emptied as it is read, so that each source's arrays are freed once packed. Repeats
    of a pair carry the same overlap, so when ``(first, second, shared)`` packs into 64 bits (it
    does at full scale) a plain ``np.sort`` of the packed rows does it: 8 bytes per candidate and
    several times faster than the ``argsort`` of the general case.
    """
    if not parts:
        return Candidates.empty()
    pair_bits = max(1, (num_sets - 1).bit_length())
    shared_bits = max(1, max(int(part.shared.max(initial=0)) for part in parts).bit_length())
    if 2 * pair_bits + shared_bits > 64:
        merged = Candidates.concat(parts)
        parts.clear()
        key = merged.first.astype(np.uint64) * np.uint64(num_sets) + merged.second.astype(np.uint64)
        order = np.argsort(key)
        key = key[order]
        keep = np.ones(key.size, bool)
        keep[1:] = key[1:] != key[:-1]
        return merged.select(order[keep])
    packed_parts = []
    while parts:
        part = parts.pop()
        packed = part.first.astype(np.uint64) << np.uint64(pair_bits + shared_bits)
        packed |= part.second.astype(np.uint64) << np.uint64(shared_bits)
        packed |= part.shared.astype(np.uint64)
        packed_parts.append(packed)
        del part
    packed = _sorted_unique(np.concatenate(packed_parts))
    packed_parts.clear()
    shared = (packed & np.uint64((1 << shared_bits) - 1)).astype(np.int32)
    packed >>= np.uint64(shared_bits)
    second = (packed & np.uint64((1 << pair_bits) - 1)).astype(np.int32)
    return Candidates((packed >> np.uint64(pair_bits)).astype(np.int32), second, shared)


def prefix_join(
    noun_sets: NounSets,
    min_shared: int,
    *,
    group_cap: int | None = None,
    rng: np.random.Generator | None = None,
    chunk_keys: int = 8_000_000,
    workers: int | None = None,
    max_candidates: int | None = None,
) -> Candidates:
    """Pairs of sets sharing at least ``min_shared`` nouns: all of them, or a capped sample.

    Why buckets on *pairs* of prefix nouns find every such pair (``min_shared = t >= 2``): let
    ``c1 < c2 < ... < ck`` (``k >= t``) be the shared ids in the global rarest-first order. In set
    ``x`` the ``k - 2 >= t - 2`` shared ids ``c3..ck`` all come after ``c2``, so ``c2`` sits within
    the first ``|x| - t + 2`` ids of ``x``, and ``c1`` before it; the same holds in ``y``. So
    ``(c1, c2)`` is among the noun pairs of both prefixes and both sets land in its bucket. Every
    pair in every bucket is verified by a merge, which answers only in that canonical bucket of
    the two rarest shared nouns (:func:`kernels.canonical_overlap`), so nothing comes out twice.
    Rarest first keeps buckets small: a prefix holds a set's rarest nouns, and pairs of rare
    nouns are rarer still (the single-noun prefix filter would bucket on one common noun).

    With ``group_cap`` every bucket is cut to ``group_cap`` members, a uniform sample drawn
    through ``rng`` (sets are ranked by a random permutation and buckets sorted by rank). A pair
    then comes out only if both its sets survive in its canonical bucket, so pairs whose two
    rarest shared nouns are common (big buckets) are kept less often: a sample, not the whole.
    Keys are generated and sorted one chunk of first nouns at a time (~``chunk_keys`` keys), and
    the buckets of a chunk are verified by ``workers`` threads (the output does not depend on it).

    Output memory is bounded by ``max_candidates`` (12 bytes each): past it, only pairs whose
    seeded hash falls below a threshold that halves each time the bound is passed again are kept,
    a uniform sample whose share is ``fraction`` of the result (see :func:`_hash_sample`).
    """
    if min_shared < 2:
        raise ValueError("the noun-pair join needs min_shared >= 2")
    num_sets, vocab_size = len(noun_sets), len(noun_sets.vocabulary)
    indptr, indices = noun_sets.indptr, noun_sets.indices
    histogram = kernels.prefix_key_histogram(indptr, indices, min_shared, max(vocab_size, 1))
    if num_sets < 2 or not histogram.any():
        return Candidates.empty()
    id_bits = max(1, (num_sets - 1).bit_length())
    rng = rng or np.random.default_rng(0)
    salt = int(rng.integers(0, 2**63))
    if group_cap is None:
        set_of_rank = np.arange(num_sets, dtype=np.int32)
    else:
        set_of_rank = rng.permutation(num_sets).astype(np.int32)
    rank = np.empty(num_sets, np.int64)
    rank[set_of_rank] = np.arange(num_sets)
    table = kernels.set_table(indptr, indices, set_of_rank, max(vocab_size, 1))
    workers = workers or default_workers()
    parts: list[Candidates] = []
    halvings = 0
    for a_lo, a_hi in _key_chunks(histogram, chunk_keys, max_width=(1 << (64 - id_bits)) // vocab_size):
        keys = np.empty(int(histogram[a_lo:a_hi].sum()), np.uint64)
        kernels.emit_prefix_keys(indptr, indices, rank, min_shared, a_lo, a_hi, vocab_size, id_bits, keys)
        keys.sort()
        starts, ends = kernels.group_bounds(keys, id_bits, group_cap or keys.size)
        found = _verify(keys, starts, ends, id_bits, table, set_of_rank, noun_sets, min_shared, workers)
        parts += [_hash_sample(part, salt, halvings) for part in found]
        while max_candidates is not None and sum(len(part) for part in parts) > max_candidates:
            halvings += 1
            parts = [_hash_sample(part, salt, halvings) for part in parts]
    result = Candidates.concat(parts)
    result.fraction = 0.5**halvings
    return result


def _hash_sample(candidates: Candidates, salt: int, halvings: int) -> Candidates:
    """The candidates whose seeded 64-bit hash is below ``2**(64 - halvings)``: a ``2**-halvings`` sample.

    A hash of the pair, not of the position, so the sample does not depend on the order the
    buckets were verified in, and a second halving keeps a subset of the first one's sample.
    """
    if not halvings:
        return candidates
    z = (candidates.first.astype(np.uint64) << np.uint64(32)) | candidates.second.astype(np.uint64)
    z += np.uint64((salt + 0x9E3779B97F4A7C15) % 2**64)  # splitmix64 finaliser
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return candidates.select(z < np.uint64(1 << (64 - halvings)) if halvings < 64 else np.zeros(z.size, bool))


def default_workers() -> int:
    """Threads for the join: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _key_chunks(histogram: np.ndarray, chunk_keys: int, max_width: int) -> Iterator[tuple[int, int]]:
    """Ranges ``[a_lo, a_hi)`` of first nouns holding about ``chunk_keys`` keys each.

    ``max_width`` keeps ``(a - a_lo) * vocab_size + b`` inside the bits left over by the set rank.
    """
    if max_width < 1:
        raise ValueError("too many nouns and sets to pack a bucket key into 64 bits")
    a_lo, count = -1, 0
    for a in np.flatnonzero(histogram).tolist():
        if a_lo >= 0 and (count + histogram[a] > chunk_keys or a - a_lo >= max_width):
            yield a_lo, a
            a_lo = -1
        if a_lo < 0:
            a_lo, count = a, 0
        count += int(histogram[a])
    if a_lo >= 0:
        yield a_lo, int(np.flatnonzero(histogram)[-1]) + 1


def _verify(
    keys: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    id_bits: int,
    table: np.ndarray,
    set_of_rank: np.ndarray,
    noun_sets: NounSets,
    min_shared: int,
    workers: int,
) -> list[Candidates]:
    """Run :func:`kernels.verify_groups` over all groups, ``workers`` slices of them in parallel threads.

    The kernel releases the GIL. Slices are cut so that each holds about the same number of
    comparisons, and their results are concatenated in slice order: the output does not depend
    on the number of workers or on thread timing.
    """
    if not starts.size:
        return []
    sizes = (ends - starts).astype(np.float64)
    cost = np.cumsum(sizes * (sizes - 1) / 2)
    logger.debug("pairs: %d buckets, largest %d, %.3g comparisons", starts.size, sizes.max(), cost[-1])
    cuts = np.searchsorted(cost, cost[-1] * np.arange(1, workers) / workers)
    bounds = [0, *sorted(set(cuts.tolist()) - {0, starts.size}), starts.size]
    slices = list(itertools.pairwise(bounds))

    def run(bound: tuple[int, int]) -> list[Candidates]:
        group_start, group_end = starts[bound[0] : bound[1]], ends[bound[0] : bound[1]]
        room = max(VERIFY_BUFFER, int((group_end - group_start).max()))
        out = Candidates(np.empty(room, np.int32), np.empty(room, np.int32), np.empty(room, np.int32))
        parts, g, i = [], 0, 0
        while g < group_start.size:
            n, g, i = kernels.verify_groups(
                keys, group_start, group_end, id_bits, table, set_of_rank, noun_sets.indices,
                len(noun_sets.vocabulary), min_shared, g, i, out.first, out.second, out.shared,
            )  # fmt: skip
            parts.append(Candidates(out.first[:n].copy(), out.second[:n].copy(), out.shared[:n].copy()))
        return parts

    if len(slices) == 1:
        return run(slices[0])
    with ThreadPoolExecutor(max_workers=len(slices)) as pool:
        return [part for parts in pool.map(run, slices) for part in parts]


def sample_pairs(
    noun_sets: NounSets, num_samples: int, rng: np.random.Generator, min_shared: int = 1
) -> tuple[Candidates, int]:
    """Uniformly random distinct image pairs sharing at least ``min_shared`` nouns.

    Returns the candidates and the number of pairs checked. When there are no more pairs than
    ``num_samples``, every pair is checked instead (then the result is complete).
    """
    num_sets = len(noun_sets)
    total = num_sets * (num_sets - 1) // 2
    parts, checked = [], 0
    for first, second in _all_pairs(num_sets) if total <= num_samples else _random_pairs(num_sets, num_samples, rng):
        shared = kernels.pair_overlaps(first, second, noun_sets.indptr, noun_sets.indices)
        keep = shared >= min_shared
        parts.append(Candidates(first[keep], second[keep], shared[keep]))
        checked += first.size
    return Candidates.concat(parts), checked


def _random_pairs(num_sets: int, num_samples: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for done in range(0, num_samples, SAMPLE_CHUNK):
        size = min(SAMPLE_CHUNK, num_samples - done)
        first = rng.integers(0, num_sets, size)
        second = rng.integers(0, num_sets - 1, size)
        second += second >= first  # uniform over the other sets
        yield np.minimum(first, second).astype(np.int32), np.maximum(first, second).astype(np.int32)


def _all_pairs(num_sets: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every pair ``i < j``, a block of rows ``i`` at a time."""
    rows_per_block = max(1, SAMPLE_CHUNK // max(num_sets, 1))
    for lo in range(0, max(num_sets - 1, 0), rows_per_block):
        rows = np.arange(lo, min(lo + rows_per_block, num_sets - 1))
        counts = num_sets - 1 - rows
        first = np.repeat(rows, counts)
        row_start = np.repeat(np.cumsum(counts) - counts, counts)
        second = np.arange(first.size) - row_start + first + 1
        yield first.astype(np.int32), second.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Mining
# ---------------------------------------------------------------------------------------------


def route_bins(config: PairingConfig) -> list[str]:
    """The candidate source of every bin: exact join, capped join or random sampling."""
    sources = []
    for b in config.bins:
        if b.min_shared >= config.exact_min_shared:
            sources.append(EXACT)
        elif b.min_shared >= config.grouped_min_shared:
            sources.append(GROUPED)
        else:
            sources.append(SAMPLED)
    return sources


def mine_pairs(noun_sets: NounSets, config: PairingConfig | None = None) -> list[Pair]:
    """``config.num_pairs`` pairs, stratified by shared nouns into ``config.bins`` (see the module doc).

    Short bins are logged as a warning; :func:`mine_pairs_with_report` also returns the numbers.
    """
    return mine_pairs_with_report(noun_sets, config)[0]


def mine_pairs_with_report(
    noun_sets: NounSets, config: PairingConfig | None = None
) -> tuple[list[Pair], PairingReport]:
    """:func:`mine_pairs` and its :class:`PairingReport` (candidates, pairs and shortfall per bin)."""
    config = config or PairingConfig()
    return _mine(noun_sets, config, list(config.quotas()))


def mine_threshold_pairs(
    noun_sets: NounSets,
    min_shared: int = 8,
    max_uses_per_image: int = 4,
    max_pairs: int | None = None,
    seed: int = 0,
) -> list[Pair]:
    """Pairs sharing at least ``min_shared`` nouns, each image in at most ``max_uses_per_image`` of them.

    The CaD-QA recipe (>= 8 nouns, at most 4 uses; paper §4 and the release). Every qualifying
    pair is found; they are taken in a seeded random order while the image caps allow, up to
    ``max_pairs`` (all that fit when None). The bin is called ``"<min_shared>+"``.
    """
    return mine_threshold_pairs_with_report(noun_sets, min_shared, max_uses_per_image, max_pairs, seed)[0]


def mine_threshold_pairs_with_report(
    noun_sets: NounSets,
    min_shared: int = 8,
    max_uses_per_image: int = 4,
    max_pairs: int | None = None,
    seed: int = 0,
) -> tuple[list[Pair], PairingReport]:
    """:func:`mine_threshold_pairs` and its :class:`PairingReport`."""
    if min_shared < 2:
        raise ValueError("min_shared must be >= 2: lower thresholds admit nearly every pair")
    config = PairingConfig(
        num_pairs=max_pairs or 0,
        bins=(Bin(f"{min_shared}+", min_shared, None, 1.0),),
        max_uses_per_image=max_uses_per_image,
        seed=seed,
        exact_min_shared=min_shared,
        grouped_min_shared=min_shared,
    )
    return _mine(noun_sets, config, [max_pairs])


def _mine(noun_sets: NounSets, config: PairingConfig, quotas: list[int | None]) -> tuple[list[Pair], PairingReport]:
    """Candidates, then the quota fill; more random samples while the backfill is short of ``num_pairs``.

    When every image pair can be checked (at most ``config.enumerate_max_pairs``), all of them are: every
    bin is then complete and the fill works from every pair there is.
    """
    seconds: dict[str, float] = {}
    exact_seed, grouped_seed, sample_seed, fill_seed, order_seed = np.random.SeedSequence(config.seed).spawn(5)
    sources = route_bins(config)
    active = [k for k, quota in enumerate(quotas) if quota != 0]
    num_sets = len(noun_sets)
    all_pairs = num_sets * (num_sets - 1) // 2
    enumerated = all_pairs <= config.enumerate_max_pairs
    if enumerated:
        sources = [ENUMERATED] * len(config.bins)
    pools: dict[str, Candidates] = {}
    found: dict[str, int] = {}
    kept_share: dict[str, float] = {}
    checked = 0
    keep_from = min((config.bins[k].min_shared for k in active), default=1)
    for source in (ENUMERATED, EXACT, GROUPED):
        routed = [k for k in active if sources[k] == source]
        if not routed:
            continue
        started = time.perf_counter()
        if source == ENUMERATED:
            pools[source], checked = sample_pairs(noun_sets, all_pairs, np.random.default_rng(sample_seed), keep_from)
        else:
            cap, seed = (None, exact_seed) if source == EXACT else (config.group_cap, grouped_seed)
            pools[source] = prefix_join(
                noun_sets,
                min(config.bins[k].min_shared for k in routed),
                group_cap=cap,
                rng=np.random.default_rng(seed),
                chunk_keys=config.chunk_keys,
                workers=config.workers,
                max_candidates=config.max_candidates,
            )
            if pools[source].fraction < 1:
                logger.warning(
                    "pairs: the %s join found more than max_candidates=%d pairs; kept a uniform %.3g share",
                    source,
                    config.max_candidates,
                    pools[source].fraction,
                )
        seconds[f"candidates_{source}"] = time.perf_counter() - started
        found[source] = len(pools[source])
        kept_share[source] = pools[source].fraction
        logger.info("pairs: %s candidates: %d in %.1f s", source, found[source], seconds[f"candidates_{source}"])

    sampled = [k for k in active if sources[k] == SAMPLED]
    samples = math.ceil(config.random_samples_per_slot * sum(quotas[k] or 0 for k in sampled))
    rounds = 0
    while True:
        if sampled:  # the random pairs of the low bins; each backfill round draws four times as many
            started = time.perf_counter()
            rng = np.random.default_rng(sample_seed)
            pools[SAMPLED], checked = sample_pairs(noun_sets, samples, rng, keep_from)
            seconds[f"candidates_{SAMPLED}"] = seconds.get(f"candidates_{SAMPLED}", 0.0) + time.perf_counter() - started
            found[SAMPLED], kept_share[SAMPLED] = len(pools[SAMPLED]), 1.0
            logger.info("pairs: %s candidates: %d of %d random pairs", SAMPLED, found[SAMPLED], checked)
        started = time.perf_counter()
        candidates = merge_unique(list(pools.values()), num_sets)
        bin_of = _bin_lookup(config.bins, int(candidates.shared.max(initial=0)))
        candidate_bin = bin_of[candidates.shared]
        members = [np.flatnonzero(candidate_bin == k) for k in range(len(config.bins))]
        counts = [int(m.size) for m in members]
        del candidate_bin
        seconds["deduplicate"] = seconds.get("deduplicate", 0.0) + time.perf_counter() - started

        started = time.perf_counter()
        chosen = _fill(candidates, members, quotas, active, config, np.random.default_rng(fill_seed), num_sets)
        seconds["fill"] = seconds.get("fill", 0.0) + time.perf_counter() - started
        short = config.backfill and sum(len(c) for c in chosen) < config.num_pairs
        if not (short and sampled and checked < all_pairs and rounds < config.backfill_rounds):
            break
        rounds += 1
        samples *= 4
        logger.info("pairs: %d pairs short of %d; drawing %d random pairs", config.num_pairs - sum(map(len, chosen)),
                    config.num_pairs, samples)  # fmt: skip
    pools.clear()

    started = time.perf_counter()
    order = np.random.default_rng(order_seed).permutation(sum(len(c) for c in chosen))
    pairs = _make_pairs(noun_sets, candidates, chosen, [b.name for b in config.bins])
    pairs = [pairs[k] for k in order]
    seconds["pairs"] = time.perf_counter() - started

    uses = np.bincount(np.concatenate([candidates.first[c] for c in chosen] + [candidates.second[c] for c in chosen]))
    complete_sampled = checked >= all_pairs
    report = PairingReport(
        bins=tuple(
            BinReport(
                name=b.name,
                label=b.label,
                source=sources[k],
                quota=quotas[k],
                candidates=counts[k],
                pairs=len(chosen[k]),
                complete=(sources[k] == EXACT and kept_share[EXACT] == 1) or complete_sampled,
            )
            for k, b in enumerate(config.bins)
        ),
        requested=config.num_pairs or None,
        num_sets=len(noun_sets),
        max_uses_per_image=config.max_uses_per_image,
        images_used=int(np.count_nonzero(uses)),
        candidates_by_source=found,
        kept_share_by_source=kept_share,
        random_pairs_checked=checked,
        seconds=seconds,
    )
    if not report.ok:  # a warning only when the total is short too (else the backfill made up for it)
        level = logging.WARNING if report.short else logging.INFO
        logger.log(level, "pairs: bins short of their quota (missing pairs): %s", report.shortfalls)
    return pairs, report


def _bin_lookup(bins: Sequence[Bin], max_shared: int) -> np.ndarray:
    """Bin index of every overlap ``0..max_shared`` (-1 where no bin covers it)."""
    lookup = np.full(max_shared + 1, -1, np.int64)
    for k, b in enumerate(bins):
        top = max_shared if b.max_shared is None else min(b.max_shared, max_shared)
        if b.min_shared <= top:
            lookup[b.min_shared : top + 1] = k
    return lookup


def _fill(
    candidates: Candidates,
    members: list[np.ndarray],
    quotas: list[int | None],
    active: list[int],
    config: PairingConfig,
    rng: np.random.Generator,
    num_sets: int,
) -> list[np.ndarray]:
    """Greedy quota fill, scarcest bin first; returns the chosen candidate indices of every bin.

    The bin with the fewest candidates per quota slot goes first, since it has the least room to
    route around images that are already used up; ties keep the bins' order. Within a bin the
    candidates are taken in a seeded random order: ``members`` is shuffled in place (no copy).
    """
    uses = np.zeros(num_sets, np.int32)
    for k in active:
        members[k] = members[k][rng.permutation(members[k].size)]
    orders = {k: members[k] for k in active}
    wanted = {k: members[k].size if quotas[k] is None else quotas[k] for k in active}
    scarcity = sorted(active, key=lambda k: (members[k].size / max(wanted[k], 1), k))
    chosen: list[list[np.ndarray]] = [[] for _ in quotas]
    resume = dict.fromkeys(active, 0)

    def take(k: int, quota: int) -> int:
        accepted = np.empty(max(0, min(quota, orders[k].size - resume[k])), np.int64)
        n, resume[k] = kernels.greedy_fill(
            candidates.first, candidates.second, orders[k], resume[k], uses, config.max_uses_per_image, quota, accepted
        )
        chosen[k].append(accepted[:n])
        return n

    for k in scarcity:
        take(k, wanted[k])
    if config.backfill:
        missing = config.num_pairs - sum(sum(len(c) for c in chosen[k]) for k in active)
        for k in scarcity:
            if missing <= 0:
                break
            missing -= take(k, missing)
    return [np.concatenate(parts) if parts else np.empty(0, np.int64) for parts in chosen]


def _make_pairs(noun_sets: NounSets, candidates: Candidates, chosen: list[np.ndarray], names: list[str]) -> list[Pair]:
    """:class:`Pair` objects of the chosen candidates, bin by bin, with their shared nouns spelled out."""
    index = np.concatenate(chosen) if chosen else np.empty(0, np.int64)
    first, second = candidates.first[index], candidates.second[index]
    offsets = np.zeros(index.size + 1, np.int64)
    np.cumsum(candidates.shared[index], out=offsets[1:])
    shared_ids = kernels.intersections(first, second, noun_sets.indptr, noun_sets.indices, offsets).tolist()
    bin_names = np.repeat(np.arange(len(chosen)), [c.size for c in chosen]).tolist()
    vocabulary = noun_sets.vocabulary
    bounds = offsets.tolist()
    return [
        Pair(x, y, tuple(vocabulary[w] for w in shared_ids[bounds[k] : bounds[k + 1]]), names[bin_names[k]])
        for k, (x, y) in enumerate(zip(first.tolist(), second.tolist(), strict=True))
    ]


def describe(config: PairingConfig) -> dict[str, Any]:
    """The config as plain data (bins as dicts), for logs and run manifests."""
    return {
        **{name: getattr(config, name) for name in config.__dataclass_fields__ if name != "bins"},
        "bins": [
            {"name": b.name, "min_shared": b.min_shared, "max_shared": b.max_shared, "quota": b.quota}
            for b in config.bins
        ],
    }
