"""Numba kernels of the pair miner: the loops that numpy cannot vectorise.

Every kernel works on the CSR arrays of :class:`builders.pairs.sets.NounSets`: ``indptr`` (int64,
one more than the number of sets) and ``indices`` (int32 noun ids, strictly ascending inside each
set; ids are ranked rarest first, so a set's first nouns are its rarest). Kernels are compiled on
first use and cached on disk (``cache=True``), so only the first run on a machine pays the compile.

Bucket keys pack a pair of prefix nouns ``(a, b)`` and a set's rank into one uint64::

    key = (((a - a_lo) * vocab_size + b) << id_bits) | rank

so a plain ``np.sort`` groups the sets of one noun pair together (the high bits) and, inside a
group, orders them by rank (the low bits). With ``rank`` a seeded permutation of the sets, the
first ``cap`` members of a group are a uniform random sample of it: that is how groups are capped
without a Python dict or a second sort. All arithmetic on keys is done in uint64 on purpose: numba
turns mixed int64/uint64 arithmetic into float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def prefix_length(size: int, min_shared: int) -> int:
    """How many of a set's rarest nouns go into its bucket keys for threshold ``min_shared``.

    ``size - min_shared + 2`` (see :func:`builders.pairs.candidates.prefix_join` for why); sets smaller
    than the threshold can never reach it and get no keys.
    """
    if size < min_shared:
        return 0
    return min(size, size - min_shared + 2)


@njit(cache=True, nogil=True)
def prefix_key_histogram(indptr: np.ndarray, indices: np.ndarray, min_shared: int, vocab_size: int) -> np.ndarray:
    """Number of bucket keys whose first noun is ``a``, for every noun id ``a``.

    The miner splits the key space into chunks of first nouns with it, so that the keys of one
    chunk (not of the whole corpus) are in memory at a time.
    """
    hist = np.zeros(vocab_size, np.int64)
    for s in range(indptr.shape[0] - 1):
        start = indptr[s]
        p = prefix_length(indptr[s + 1] - start, min_shared)
        for i in range(p - 1):
            hist[indices[start + i]] += p - 1 - i
    return hist


@njit(cache=True, nogil=True)
def emit_prefix_keys(
    indptr: np.ndarray,
    indices: np.ndarray,
    rank: np.ndarray,
    min_shared: int,
    a_lo: int,
    a_hi: int,
    vocab_size: int,
    id_bits: int,
    out: np.ndarray,
) -> int:
    """Write the packed key of every prefix noun pair ``(a, b)``, ``a_lo <= a < a_hi``, of every set.

    ``out`` must hold the exact count (``prefix_key_histogram(...)[a_lo:a_hi].sum()``); returns the
    number written. Ids are ascending inside a set, so ``a < b`` and each pair is emitted once.
    """
    n = 0
    shift = np.uint64(id_bits)
    width = np.uint64(vocab_size)
    lo = np.uint64(a_lo)
    for s in range(indptr.shape[0] - 1):
        start = indptr[s]
        p = prefix_length(indptr[s + 1] - start, min_shared)
        low_bits = np.uint64(rank[s])
        for i in range(p - 1):
            a = indices[start + i]
            if a >= a_hi:
                break
            if a < a_lo:
                continue
            high = (np.uint64(a) - lo) * width
            for j in range(i + 1, p):
                out[n] = ((high + np.uint64(indices[start + j])) << shift) | low_bits
                n += 1
    return n


@njit(cache=True, nogil=True)
def group_bounds(keys: np.ndarray, id_bits: int, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of every run of sorted ``keys`` with the same noun pair and at least two members.

    Ends are cut to ``start + cap``: the capped join verifies only a group's first ``cap`` members,
    which are a random sample of it since members are ordered by a random rank.
    """
    starts = np.empty(keys.shape[0] // 2 + 1, np.int64)
    ends = np.empty(keys.shape[0] // 2 + 1, np.int64)
    shift = np.uint64(id_bits)
    n = 0
    start = 0
    for k in range(1, keys.shape[0] + 1):
        if k == keys.shape[0] or (keys[k] >> shift) != (keys[start] >> shift):
            if k - start >= 2:
                starts[n] = start
                ends[n] = min(k, start + cap)
                n += 1
            start = k
    return starts[:n].copy(), ends[:n].copy()


@njit(cache=True, nogil=True, inline="always")
def canonical_overlap(indices: np.ndarray, x0: int, x1: int, y0: int, y1: int, b: int, min_shared: int) -> int:
    """``|x ∩ y|`` when ``b`` is the second-rarest shared noun and the overlap is ``>= min_shared``; else -1.

    Called on two members of the bucket of ``(a, b)``, which both hold ``a < b``: the bucket is
    the pair's canonical one, that of its two *rarest* shared nouns, exactly when one shared noun
    (``a``) is below ``b``. A pair sits in the bucket of every pair of shared prefix nouns;
    answering only in the canonical one makes each pair come out once, with no global
    de-duplication. The merge is branch-free (its compares are data, not jumps) and stops as soon
    as a second shared noun below ``b`` turns up or the nouns left cannot reach ``min_shared``.
    """
    i = x0
    j = y0
    shared = 0
    below_b = 0
    while i < x1 and j < y1:
        if below_b > 1 or shared + min(x1 - i, y1 - j) < min_shared:
            return -1
        u = indices[i]
        v = indices[j]
        same = np.int64(u == v)
        shared += same
        below_b += same & np.int64(u < b)
        i += np.int64(u <= v)
        j += np.int64(v <= u)
    return shared if shared >= min_shared and below_b == 1 else -1


FINGERPRINT_BITS = 256
ROW_WORDS = 8  # start, end, 4 fingerprint words, 2 spare: 64 bytes, one cache line


@njit(cache=True, nogil=True)
def set_table(indptr: np.ndarray, indices: np.ndarray, order: np.ndarray, vocab_size: int) -> np.ndarray:
    """One 64-byte row per set, in the given ``order``: its start, its end and a 256-bit fingerprint.

    Noun id ``k`` sets fingerprint bit ``(vocab_size - 1 - k) % 256``. Ids are rarest first, so
    the 256 most common nouns get a bit each and only rare nouns share bits; the miner's
    candidates overlap through common nouns, so that is where the bits must be exact. The join
    reads one row per bucket member, and members are scattered over the corpus: keeping what it
    needs in one cache line, and the rows in the order the keys refer to them, saves misses.
    """
    table = np.zeros((order.shape[0], ROW_WORDS), np.uint64)
    for r in range(order.shape[0]):
        s = order[r]
        table[r, 0] = indptr[s]
        table[r, 1] = indptr[s + 1]
        for k in range(indptr[s], indptr[s + 1]):
            bit = (vocab_size - 1 - indices[k]) % FINGERPRINT_BITS
            table[r, 2 + (bit >> 6)] |= np.uint64(1) << np.uint64(bit & 63)
    return table


@njit(cache=True, nogil=True, inline="always")
def missing_bits(table: np.ndarray, r: int, q: int) -> int:
    """Fingerprint bits of row ``r`` absent from row ``q``: a lower bound on the nouns of ``r`` not in ``q``.

    Each such bit stands for at least one noun of ``r`` that ``q`` lacks, so
    ``|x ∩ y| <= |x| - missing_bits(x, y)``.
    """
    n = 0
    for w in range(2, 2 + FINGERPRINT_BITS // 64):
        n += np.int64(popcount(table[r, w] & ~table[q, w]))
    return n


@njit(cache=True, nogil=True, inline="always")
def popcount(v: np.uint64) -> np.uint64:
    """Set bits of a uint64 (the classic SWAR sum; LLVM turns it into one ``popcnt``)."""
    v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (v * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True, nogil=True)
def verify_groups(
    keys: np.ndarray,
    group_start: np.ndarray,
    group_end: np.ndarray,
    id_bits: int,
    table: np.ndarray,
    set_of_rank: np.ndarray,
    indices: np.ndarray,
    vocab_size: int,
    min_shared: int,
    g: int,
    i: int,
    out_first: np.ndarray,
    out_second: np.ndarray,
    out_shared: np.ndarray,
) -> tuple[int, int, int]:
    """Verify every pair of members inside each group ``keys[group_start[g]:group_end[g]]``.

    Writes the pairs that pass :func:`canonical_overlap` (``first < second``) and returns
    ``(written, g, i)``: where to resume when the output buffers filled up (``g`` equal to the
    number of groups when everything is done). One member's row of comparisons is written whole,
    so the buffers must hold at least ``max group size - 1`` pairs.

    Key ranks index ``table`` (:func:`set_table` in rank order) and ``set_of_rank`` maps them back
    to set numbers. The fingerprint bound (:func:`missing_bits`) rejects most pairs without
    touching their nouns: a merge costs a cache miss or two, a fingerprint test does not.
    """
    n = 0
    room = out_first.shape[0]
    shift = np.uint64(id_bits)
    id_mask = (np.uint64(1) << shift) - np.uint64(1)
    width = np.uint64(vocab_size)
    largest = 0
    for k in range(group_start.shape[0]):
        largest = max(largest, group_end[k] - group_start[k])
    rows = np.empty(largest, np.int64)
    while g < group_start.shape[0]:
        start = group_start[g]
        size = group_end[g] - start
        b = np.int64((keys[start] >> shift) % width)
        for m in range(size):
            rows[m] = np.int64(keys[start + m] & id_mask)
        if i < start:
            i = start
        while i < start + size - 1:
            u = i - start
            if room - n < size - u - 1:
                return n, g, i
            ru = rows[u]
            x0 = np.int64(table[ru, 0])
            x1 = np.int64(table[ru, 1])
            for v in range(u + 1, size):
                rv = rows[v]
                y0 = np.int64(table[rv, 0])
                y1 = np.int64(table[rv, 1])
                if (
                    missing_bits(table, ru, rv) > x1 - x0 - min_shared
                    or missing_bits(table, rv, ru) > y1 - y0 - min_shared
                ):
                    continue
                shared = canonical_overlap(indices, x0, x1, y0, y1, b, min_shared)
                if shared >= 0:
                    x = set_of_rank[ru]
                    y = set_of_rank[rv]
                    out_first[n] = min(x, y)
                    out_second[n] = max(x, y)
                    out_shared[n] = shared
                    n += 1
            i += 1
        g += 1
        i = 0
    return n, g, i


@njit(cache=True, nogil=True)
def pair_overlaps(first: np.ndarray, second: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``|x ∩ y|`` of every given pair, by merging the two sorted id lists (the random-sampling path)."""
    out = np.empty(first.shape[0], np.int32)
    for k in range(first.shape[0]):
        i = indptr[first[k]]
        x1 = indptr[first[k] + 1]
        j = indptr[second[k]]
        y1 = indptr[second[k] + 1]
        shared = 0
        while i < x1 and j < y1:
            u = indices[i]
            v = indices[j]
            if u == v:
                shared += 1
                i += 1
                j += 1
            elif u < v:
                i += 1
            else:
                j += 1
        out[k] = shared
    return out


@njit(cache=True, nogil=True)
def intersections(
    first: np.ndarray, second: np.ndarray, indptr: np.ndarray, indices: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """The shared noun ids of every pair, flattened; pair ``k`` owns ``out[offsets[k]:offsets[k + 1]]``."""
    out = np.empty(offsets[-1], np.int32)
    for k in range(first.shape[0]):
        n = offsets[k]
        i = indptr[first[k]]
        x1 = indptr[first[k] + 1]
        j = indptr[second[k]]
        y1 = indptr[second[k] + 1]
        while i < x1 and j < y1:
            u = indices[i]
            v = indices[j]
            if u == v:
                out[n] = u
                n += 1
                i += 1
                j += 1
            elif u < v:
                i += 1
            else:
                j += 1
    return out


@njit(cache=True, nogil=True)
def greedy_fill(
    first: np.ndarray,
    second: np.ndarray,
    order: np.ndarray,
    start: int,
    uses: np.ndarray,
    max_uses: int,
    quota: int,
    accepted: np.ndarray,
) -> tuple[int, int]:
    """Take candidates in ``order`` from position ``start`` while both images have uses left.

    Stops after ``quota`` acceptances; returns ``(accepted count, position to resume from)``. The
    resume position is exact: a candidate skipped once stays unacceptable, because uses only grow.
    ``accepted`` receives candidate indices and must hold ``min(quota, len(order) - start)``.
    """
    n = 0
    k = start
    while k < order.shape[0] and n < quota:
        c = order[k]
        k += 1
        x = first[c]
        y = second[c]
        if uses[x] < max_uses and uses[y] < max_uses:
            uses[x] += 1
            uses[y] += 1
            accepted[n] = c
            n += 1
    return n, k
