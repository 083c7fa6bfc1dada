"""The phase-1 pair miner (``builders.pairs``): exactness against brute force, and its guarantees.

Real noun sets come from the 80 COCO images of ``shared/data/captions`` (five captions each),
with a tiny word tokenizer restricted to a fixed noun list (no spaCy here); synthetic Zipfian
sets exercise the higher overlaps that short COCO captions never reach.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import re
from collections import Counter

import numpy as np
import pytest

from builders.pairs import (
    DEFAULT_BINS,
    Bin,
    NounSets,
    Pair,
    PairingConfig,
    mine_pairs,
    mine_threshold_pairs,
)
from builders.pairs.candidates import Candidates, merge_unique, prefix_join, sample_pairs
from tests.conftest import COCO_CAPTIONS, shared_file

CAPTIONS = COCO_CAPTIONS

NOUNS = frozenset(
    re.findall(
        r"[a-z]+",
        """man woman person people child boy girl player dog cat horse bird cow sheep elephant giraffe zebra bear
    car bus truck train bicycle bike motorcycle boat plane airplane street road sidewalk building house city field
    grass tree water beach ocean sky snow table chair couch bed room kitchen bathroom toilet sink window door wall
    floor plate food pizza sandwich cake donut doughnut banana apple orange broccoli bowl cup glass bottle laptop
    computer keyboard phone screen tv television book clock umbrella bag kite frisbee ball bat racket skateboard
    surfboard board wave shirt hat side front area park fence sign light pole track ground hill mountain picture
    group couple display case shop store counter desk bench background lot vase flower""",
    )
)
WORD = re.compile(r"[a-z]+")


def caption_nouns(text: str) -> set[str]:
    """Words of the noun list, plurals folded onto it by stripping ``s``/``es``."""
    found = set()
    for word in WORD.findall(text.lower()):
        for stem in (word, word[:-1] if word.endswith("s") else "", word[:-2] if word.endswith("es") else ""):
            if stem in NOUNS:
                found.add(stem)
                break
    return found


@pytest.fixture(scope="module")
def coco_lists() -> list[list[str]]:
    rows = [json.loads(line) for line in shared_file(CAPTIONS).read_text().splitlines() if line.strip()]
    return [sorted(set().union(*(caption_nouns(c) for c in row["captions"]))) for row in rows]


def zipf_lists(num_sets: int, vocab_size: int, seed: int, low: int = 3, high: int = 22) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, vocab_size + 1)
    weights /= weights.sum()
    return [
        [f"w{k}" for k in rng.choice(vocab_size, size=int(rng.integers(low, high)), replace=False, p=weights)]
        for _ in range(num_sets)
    ]


@pytest.fixture(scope="module")
def synthetic_lists() -> list[list[str]]:
    return zipf_lists(400, 70, seed=3)


def as_dict(found) -> dict[tuple[int, int], int]:
    """Candidates as ``{(first, second): overlap}``."""
    pairs = zip(found.first.tolist(), found.second.tolist(), strict=True)
    return dict(zip(pairs, found.shared.tolist(), strict=True))


def brute_force(lists: list[list[str]]) -> dict[tuple[int, int], int]:
    """Overlap of every pair that shares anything."""
    sets = [set(nouns) for nouns in lists]
    overlaps = {}
    for i, j in itertools.combinations(range(len(sets)), 2):
        shared = len(sets[i] & sets[j])
        if shared:
            overlaps[i, j] = shared
    return overlaps


def assert_valid(pairs: list[Pair], lists: list[list[str]], bins: tuple[Bin, ...], max_uses: int) -> None:
    """Every guarantee of the miner's output."""
    by_name = {b.name: b for b in bins}
    seen = set()
    uses: Counter[int] = Counter()
    for pair in pairs:
        assert 0 <= pair.first < pair.second < len(lists)
        assert (pair.first, pair.second) not in seen
        seen.add((pair.first, pair.second))
        uses.update((pair.first, pair.second))
        truth = set(lists[pair.first]) & set(lists[pair.second])
        assert set(pair.shared) == truth and len(pair.shared) == len(truth)
        b = by_name[pair.bin]
        assert b.min_shared <= len(truth) and (b.max_shared is None or len(truth) <= b.max_shared)
    assert max(uses.values(), default=0) <= max_uses


# ---------------------------------------------------------------------------------------------
# NounSets
# ---------------------------------------------------------------------------------------------


def test_from_lists_numbers_nouns_rarest_first_and_sorts_each_set():
    noun_sets = NounSets.from_lists([["dog", "sky", "tree", "sky"], ["sky", "cat"], ["tree", "sky"], []])
    # frequencies: cat 1, dog 1, tree 2, sky 3; ties broken by the string
    assert noun_sets.vocabulary == ["cat", "dog", "tree", "sky"]
    assert noun_sets.indptr.tolist() == [0, 3, 5, 7, 7]
    assert noun_sets.indices.tolist() == [1, 2, 3, 0, 3, 2, 3]
    assert noun_sets.indices.dtype == np.int32
    assert noun_sets.nouns(0) == ("dog", "tree", "sky")
    assert noun_sets.shared(0, 2) == ("tree", "sky")
    assert noun_sets.document_frequency().tolist() == [1, 1, 2, 3]
    assert len(noun_sets) == 4 and noun_sets.sizes.tolist() == [3, 2, 2, 0]


def test_from_lists_does_not_depend_on_first_sight(coco_lists):
    forward = NounSets.from_lists(coco_lists)
    backward = NounSets.from_lists([list(reversed(nouns)) for nouns in coco_lists])
    assert forward.vocabulary == backward.vocabulary
    assert np.array_equal(forward.indices, backward.indices)
    frequency = forward.document_frequency()
    assert np.all(np.diff(frequency) >= 0)


def test_noun_sets_reject_bad_input():
    with pytest.raises(TypeError):
        NounSets.from_lists(["dog cat"])
    with pytest.raises(ValueError, match="ascending"):
        NounSets(np.array([0, 2]), np.array([1, 0]), ["a", "b"])
    with pytest.raises(ValueError, match="vocabulary"):
        NounSets(np.array([0, 1]), np.array([5]), ["a"])


# ---------------------------------------------------------------------------------------------
# The join against brute force
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("min_shared", [2, 3, 5, 8, 12])
def test_exact_join_finds_exactly_the_brute_force_pairs(synthetic_lists, min_shared):
    noun_sets = NounSets.from_lists(synthetic_lists)
    truth = {pair: n for pair, n in brute_force(synthetic_lists).items() if n >= min_shared}
    found = prefix_join(noun_sets, min_shared, chunk_keys=500)  # tiny chunks: many key ranges
    got = as_dict(found)
    assert len(got) == len(found)  # each pair once, without de-duplication
    assert got == truth
    assert truth  # the data do reach the threshold


def test_exact_join_on_coco_captions(coco_lists):
    noun_sets = NounSets.from_lists(coco_lists)
    for min_shared in (2, 3):
        truth = {pair: n for pair, n in brute_force(coco_lists).items() if n >= min_shared}
        found = prefix_join(noun_sets, min_shared)
        assert as_dict(found) == truth


def test_capped_join_is_a_sample_of_the_exact_one(synthetic_lists):
    noun_sets = NounSets.from_lists(synthetic_lists)
    truth = brute_force(synthetic_lists)
    exact = prefix_join(noun_sets, 3)
    capped = prefix_join(noun_sets, 3, group_cap=3, rng=np.random.default_rng(1))
    got = as_dict(capped)
    assert 0 < len(got) < len(exact) and len(got) == len(capped)
    assert all(truth[pair] == n for pair, n in got.items())
    assert got.keys() <= as_dict(exact).keys()
    assert as_dict(prefix_join(noun_sets, 3, group_cap=3, rng=np.random.default_rng(2))) != got
    uncapped = prefix_join(noun_sets, 3, group_cap=10_000, rng=np.random.default_rng(1))
    assert len(uncapped) == len(exact)


def test_join_output_does_not_depend_on_threads_or_chunks(synthetic_lists):
    noun_sets = NounSets.from_lists(synthetic_lists)
    one = prefix_join(noun_sets, 3, group_cap=4, rng=np.random.default_rng(7), workers=1)
    two = prefix_join(noun_sets, 3, group_cap=4, rng=np.random.default_rng(7), workers=2)
    for name in ("first", "second", "shared"):
        assert np.array_equal(getattr(one, name), getattr(two, name))
    chunked = prefix_join(noun_sets, 3, group_cap=4, rng=np.random.default_rng(7), chunk_keys=300, workers=2)
    assert as_dict(chunked) == as_dict(one)


def test_join_keeps_a_uniform_hash_sample_past_max_candidates(synthetic_lists):
    noun_sets = NounSets.from_lists(synthetic_lists)
    exact = as_dict(prefix_join(noun_sets, 5))
    limited = prefix_join(noun_sets, 5, max_candidates=len(exact) // 5, rng=np.random.default_rng(4))
    assert limited.fraction in (1 / 8, 1 / 16, 1 / 32) and 0 < len(limited) <= len(exact) // 5
    assert as_dict(limited).items() <= exact.items()
    chunked = prefix_join(noun_sets, 5, max_candidates=len(exact) // 5, rng=np.random.default_rng(4), chunk_keys=200)
    assert as_dict(chunked) == as_dict(limited)  # the same sample, however the buckets are cut

    config = PairingConfig(num_pairs=40, max_candidates=len(exact) // 5, exact_min_shared=5, enumerate_max_pairs=0)
    pairs, report = mine_pairs(noun_sets, config)
    assert report.kept_share_by_source["exact"] == limited.fraction
    assert not report.bins[2].complete and not report.bins[3].complete
    assert_valid(pairs, synthetic_lists, config.bins, config.max_uses_per_image)


@pytest.mark.parametrize("num_sets", [10, 2**40])  # packed sort, and the argsort when 64 bits are too few
def test_merge_unique_keeps_one_row_per_pair(num_sets):
    def part(rows):
        first, second, shared = (np.array(column, np.int32) for column in zip(*rows, strict=True))
        return Candidates(first, second, shared)

    parts = [part([(3, 7, 2), (0, 9, 5), (1, 2, 1)]), part([(0, 9, 5), (3, 7, 2)]), part([(0, 1, 300)])]
    merged = merge_unique(parts, num_sets)
    assert parts == []
    assert as_dict(merged) == {(0, 1): 300, (0, 9): 5, (1, 2): 1, (3, 7): 2}
    assert merged.first.tolist() == [0, 0, 1, 3] and merged.second.tolist() == [1, 9, 2, 7]


def test_sampling_checks_every_pair_when_there_are_few(coco_lists):
    noun_sets = NounSets.from_lists(coco_lists)
    found, checked = sample_pairs(noun_sets, 10**6, np.random.default_rng(0))
    assert checked == 80 * 79 // 2
    assert as_dict(found) == brute_force(coco_lists)


# ---------------------------------------------------------------------------------------------
# mine_pairs
# ---------------------------------------------------------------------------------------------

COCO_BINS = (Bin("one", 1, 1, 0.5), Bin("two", 2, 2, 0.3), Bin("three_plus", 3, None, 0.2))


def coco_config(**overrides) -> PairingConfig:
    settings = {"num_pairs": 30, "bins": COCO_BINS, "max_uses_per_image": 2, "exact_min_shared": 3, "backfill": False}
    return PairingConfig(**{**settings, **overrides})


def test_coco_pairs_keep_every_guarantee_and_fill_the_quotas(coco_lists):
    config = coco_config(enumerate_max_pairs=0)  # the join of large inputs, on the real captions
    pairs, report = mine_pairs(NounSets.from_lists(coco_lists), config)
    assert_valid(pairs, coco_lists, config.bins, config.max_uses_per_image)
    assert report.ok and len(pairs) == 30
    assert Counter(p.bin for p in pairs) == {"one": 15, "two": 9, "three_plus": 6}
    assert [b.pairs for b in report.bins] == list(config.quotas())
    # the exact bin's candidates are all the brute-force pairs sharing 3+ nouns
    assert report.bins[2].candidates == sum(n >= 3 for n in brute_force(coco_lists).values())
    assert report.bins[2].complete and report.bins[2].source == "exact"


def test_synthetic_pairs_with_the_default_bins(synthetic_lists):
    # The routing of large inputs (join and sampling), forced on this small one: no exhaustive pass.
    config = PairingConfig(num_pairs=120, max_uses_per_image=3, seed=5, enumerate_max_pairs=0)
    pairs, report = mine_pairs(NounSets.from_lists(synthetic_lists), config)
    assert_valid(pairs, synthetic_lists, DEFAULT_BINS, 3)
    assert report.ok and Counter(p.bin for p in pairs) == dict.fromkeys(("low", "medium", "high", "very_high"), 30)
    assert [b.source for b in report.bins] == ["sampled", "grouped", "grouped", "exact"]
    assert report.bins[3].candidates == sum(n >= 8 for n in brute_force(synthetic_lists).values())
    assert report.random_pairs_checked == 32 * 30  # sampled, not exhaustive: 400 sets have 79,800 pairs
    assert not report.bins[0].complete


def test_same_seed_same_pairs_other_seed_other_pairs(synthetic_lists):
    noun_sets = NounSets.from_lists(synthetic_lists)
    config = PairingConfig(num_pairs=100, seed=11)
    first, _ = mine_pairs(noun_sets, config)
    assert mine_pairs(NounSets.from_lists(synthetic_lists), config)[0] == first
    other, _ = mine_pairs(noun_sets, PairingConfig(num_pairs=100, seed=12))
    assert {(p.first, p.second) for p in other} != {(p.first, p.second) for p in first}


def test_scarcest_bin_is_filled_first():
    """Two "high" pairs need images 0-3; filling the plentiful "low" bin first would use them up."""
    high = [f"h{k}" for k in range(8)]
    other = [f"g{k}" for k in range(8)]
    lists = [["common", *high], ["common", *high], ["common", *other], ["common", *other]]
    lists += [["common", f"own{k}"] for k in range(6)]
    config = PairingConfig(num_pairs=5, bins=(Bin("low", 1, 2, 0.6), Bin("high", 8, None, 0.4)), max_uses_per_image=1)
    for seed in range(20):
        pairs, report = mine_pairs(NounSets.from_lists(lists), dataclasses.replace(config, seed=seed))
        assert report.ok, report.format()
        assert {(p.first, p.second) for p in pairs if p.bin == "high"} == {(0, 1), (2, 3)}
        assert_valid(pairs, lists, config.bins, 1)


def test_shortfall_is_reported_and_logged(coco_lists, caplog):
    config = coco_config(num_pairs=400)  # 80 images at 2 uses cannot give more than 80 pairs
    with caplog.at_level(logging.WARNING, logger="builders.pairs.miner"):
        pairs, report = mine_pairs(NounSets.from_lists(coco_lists), config)
    assert_valid(pairs, coco_lists, config.bins, 2)
    three = report.bins[2]
    assert three.quota == 80 and three.candidates == sum(n >= 3 for n in brute_force(coco_lists).values())
    assert three.pairs <= three.candidates < 80
    assert report.shortfalls["three_plus"] == 80 - three.pairs and not report.ok
    assert report.bins[0].complete  # 3,160 pairs: fewer than the sampling budget, so all were checked
    assert "three_plus" in caplog.text
    table = report.format()
    assert "three_plus" in table and "candidates" in table and table.splitlines() == report.lines()


def test_backfill_tops_up_from_other_bins(coco_lists):
    noun_sets = NounSets.from_lists(coco_lists)
    config = coco_config(num_pairs=60, bins=(Bin("one", 1, 1, 0.5), Bin("three_plus", 3, None, 0.5)))
    plain, plain_report = mine_pairs(noun_sets, config)
    assert len(plain) < 60 and plain_report.shortfalls
    filled, _ = mine_pairs(noun_sets, dataclasses.replace(config, backfill=True))
    assert len(filled) == 60
    assert_valid(filled, coco_lists, config.bins, 2)


def test_config_validation_and_quotas():
    assert PairingConfig().quotas() == (69_500,) * 4
    assert PairingConfig(num_pairs=10, bins=(Bin("a", 1, 1, 1 / 3), Bin("b", 2, None, 2 / 3))).quotas() == (3, 7)
    with pytest.raises(ValueError, match="overlap"):
        PairingConfig(bins=(Bin("a", 1, 3, 0.5), Bin("b", 3, None, 0.5)))
    with pytest.raises(ValueError, match="sum to 1"):
        PairingConfig(bins=(Bin("a", 1, 3, 0.5),))
    with pytest.raises(ValueError):
        PairingConfig(grouped_min_shared=1)
    with pytest.raises(ValueError):
        Bin("bad", 4, 2, 0.5)


def test_empty_and_tiny_inputs():
    assert mine_pairs(NounSets.from_lists([]), PairingConfig(num_pairs=5))[0] == []
    pairs, report = mine_pairs(NounSets.from_lists([["a"], ["a"]]), PairingConfig(num_pairs=4))
    assert pairs == [Pair(0, 1, ("a",), "low")]
    assert report.shortfalls == {"medium": 1, "high": 1, "very_high": 1}


# ---------------------------------------------------------------------------------------------
# mine_threshold_pairs (CaD-QA)
# ---------------------------------------------------------------------------------------------


def test_threshold_pairs_min_shared_8(synthetic_lists):
    noun_sets = NounSets.from_lists(synthetic_lists)
    pairs, report = mine_threshold_pairs(noun_sets, min_shared=8, max_uses_per_image=4)
    assert_valid(pairs, synthetic_lists, (Bin("8+", 8, None, 1.0),), 4)
    qualifying = [pair for pair, n in brute_force(synthetic_lists).items() if n >= 8]
    assert report.bins[0].candidates == len(qualifying) and report.bins[0].complete
    # the greedy fill is maximal: every qualifying pair left out has an image already used 4 times
    uses = Counter(i for p in pairs for i in (p.first, p.second))
    chosen = {(p.first, p.second) for p in pairs}
    assert all(uses[i] == 4 or uses[j] == 4 for i, j in qualifying if (i, j) not in chosen)
    assert mine_threshold_pairs(noun_sets)[0] == pairs  # the defaults are 8 and 4
    assert {(p.first, p.second) for p in mine_threshold_pairs(noun_sets, seed=1)[0]} != chosen
    assert len(mine_threshold_pairs(noun_sets, max_pairs=7)[0]) == 7


def test_threshold_pairs_on_coco(coco_lists):
    noun_sets = NounSets.from_lists(coco_lists)
    assert mine_threshold_pairs(noun_sets)[0] == []  # five COCO captions never share 8 of these nouns
    pairs, _ = mine_threshold_pairs(noun_sets, min_shared=3, max_uses_per_image=1)
    assert_valid(pairs, coco_lists, (Bin("3+", 3, None, 1.0),), 1)
    assert pairs and all(p.bin == "3+" for p in pairs)
    with pytest.raises(ValueError):
        mine_threshold_pairs(noun_sets, min_shared=1)
