"""Mining image pairs "with different levels of similarity" from the nouns of their captions.

CaD-Inst phase 1 pairs Localized Narratives images (873K captions, ~12.5 distinct nouns each) into
278K pairs whose similarity is the number of nouns the two captions share (paper §3.1). The paper
publishes neither the similarity bins, nor how many pairs each bin gets, nor how often an image may
be reused: those are :class:`~builders.pairs.config.PairingConfig` parameters here, and their
defaults are ours. CaD-QA (paper §4) uses the same miner with a threshold, ``>= 8`` shared nouns
and each image at most 4 times (:func:`mine_threshold_pairs`). Both entry points return
``(pairs, report)``: the report says how many candidates and pairs every bin had, and whether the
candidates were all the pairs in range, which callers need to tell a short input from a sample.

Comparing all pairs is out of the question (3.8e11 at full scale), so candidates come from three
sources, one per kind of bin (see :func:`route_bins`; the generators are in
:mod:`builders.pairs.candidates`):

* **exact** (high overlap, ``>= exact_min_shared``): a prefix-filtering join on *pairs* of rare
  nouns (:func:`~builders.pairs.candidates.prefix_join`) that finds every pair above the threshold
  and nothing else;
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

import logging
import math
import time
from collections.abc import Sequence

import numpy as np

from builders.pairs import kernels
from builders.pairs.candidates import Candidates, merge_unique, prefix_join, sample_pairs
from builders.pairs.config import (
    ENUMERATED,
    EXACT,
    GROUPED,
    SAMPLED,
    Bin,
    BinReport,
    Pair,
    PairingConfig,
    PairingReport,
)
from builders.pairs.sets import NounSets

logger = logging.getLogger(__name__)  # "builders.pairs.miner": the CLI's -v output and its tests name it


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


def mine_pairs(noun_sets: NounSets, config: PairingConfig | None = None) -> tuple[list[Pair], PairingReport]:
    """``config.num_pairs`` pairs, stratified by shared nouns into ``config.bins`` (see the module doc).

    Returns ``(pairs, report)``: the :class:`PairingReport` has the candidates, pairs and shortfall
    of every bin. Short bins are also logged, as a warning when the total is short too.
    """
    config = config or PairingConfig()
    return _mine(noun_sets, config, list(config.quotas()))


def mine_threshold_pairs(
    noun_sets: NounSets,
    min_shared: int = 8,
    max_uses_per_image: int = 4,
    max_pairs: int | None = None,
    seed: int = 0,
) -> tuple[list[Pair], PairingReport]:
    """Pairs sharing at least ``min_shared`` nouns, each image in at most ``max_uses_per_image`` of them.

    The CaD-QA recipe (>= 8 nouns, at most 4 uses; paper §4 and the release). Every qualifying
    pair is found; they are taken in a seeded random order while the image caps allow, up to
    ``max_pairs`` (all that fit when None). The bin is called ``"<min_shared>+"``. Returns
    ``(pairs, report)``, as :func:`mine_pairs` does.
    """
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
    if all_pairs <= config.enumerate_max_pairs:
        sources = [ENUMERATED] * len(config.bins)
    pools: dict[str, Candidates] = {}
    found: dict[str, int] = {}
    kept_share: dict[str, float] = {}
    checked = 0
    keep_from = min((config.bins[k].min_shared for k in active), default=1)
    for source, seed in ((ENUMERATED, sample_seed), (EXACT, exact_seed), (GROUPED, grouped_seed)):
        routed = [k for k in active if sources[k] == source]
        if not routed:
            continue
        started = time.perf_counter()
        if source == ENUMERATED:
            pools[source], checked = sample_pairs(noun_sets, all_pairs, np.random.default_rng(seed), keep_from)
        else:
            min_shared = min(config.bins[k].min_shared for k in routed)
            pools[source] = _join(noun_sets, config, source, min_shared, np.random.default_rng(seed))
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
        num_sets=num_sets,
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


def _join(
    noun_sets: NounSets, config: PairingConfig, source: str, min_shared: int, rng: np.random.Generator
) -> Candidates:
    """The candidates of the exact join (every pair) or of the grouped one (buckets capped at ``group_cap``)."""
    found = prefix_join(
        noun_sets,
        min_shared,
        group_cap=None if source == EXACT else config.group_cap,
        rng=rng,
        chunk_keys=config.chunk_keys,
        workers=config.workers,
        max_candidates=config.max_candidates,
    )
    if found.fraction < 1:
        logger.warning(
            "pairs: the %s join found more than max_candidates=%d pairs; kept a uniform %.3g share",
            source,
            config.max_candidates,
            found.fraction,
        )
    return found


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
