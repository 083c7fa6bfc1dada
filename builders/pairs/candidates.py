"""Candidate pairs for the miner: the prefix-filtering join, random sampling, and their merge.

Comparing every image pair is out of the question at full scale (3.8e11 pairs), so candidates
come from two generators: :func:`prefix_join` (every pair above a threshold, or a capped sample of
them) and :func:`sample_pairs` (uniformly random pairs, or all of them when there are few).
:func:`merge_unique` pools what the sources found into one row per pair. None of this knows about
bins or quotas: that is :mod:`builders.pairs.miner`'s job.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from builders.pairs import kernels
from builders.pairs.sets import NounSets, sorted_unique

logger = logging.getLogger(__name__)

SAMPLE_CHUNK = 1 << 22  # random pairs verified per kernel call
VERIFY_BUFFER = 1 << 22  # candidate pairs a join kernel call may write before handing back


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
    packed = sorted_unique(np.concatenate(packed_parts))
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
