"""Benchmark: the phase-1 pair miner at full scale (873K noun sets -> 278K stratified pairs).

What: 873,000 synthetic noun sets, one per "Localized Narratives caption", are drawn from a
Zipfian vocabulary of 30,000 nouns (~12.5 distinct nouns per set, seeded), handed to
``NounSets.from_lists`` as lists of strings (what the noun-extraction stage produces) and mined
into 278,000 pairs with the default :class:`builders.pairs.PairingConfig`. Timed phases: building
the noun sets, the candidates of every source (exact join, capped join, random sampling), the
greedy fill and the ``Pair`` objects.

Why: all-pairs comparison is 3.8e11 merges at this size; the miner must stay within a minute and
a half and 3 GB on a 2-core machine. Goals checked: build + mining <= 90 s, peak RSS <= 3 GB, the
same output when mining again with the same seed, and every pair valid (no self pairs, no
repeats, per-image cap kept, shared nouns equal to the true intersection, overlap inside its bin).
For context it also times the brute-force all-pairs merge (same numba merge, no index) on a
sample and *extrapolates* it to the full size.

Peak RSS is ``VmHWM`` of ``/proc/self/status`` (the synthetic input lists included). Exit status 1
when a goal fails. Run ``python benchmarks/bench_pairs.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builders.pairs import NounSets, Pair, PairingConfig, kernels, mine_pairs

FULL_SETS = 873_000
FULL_PAIRS = 278_000
SECONDS_GOAL = 90.0
PEAK_GOAL_BYTES = 3 * 1024**3


def peak_rss() -> int:
    """``VmHWM`` in bytes: this process's resident high-water mark."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def zipf_sets(
    num_sets: int, vocab_size: int, mean_nouns: float, exponent: float, seed: int, topics: int = 0
) -> list[list[str]]:
    """Noun lists of Zipf-distributed nouns: ``1 + Poisson(lam)`` draws per set, repeats dropped.

    ``lam`` is calibrated on a sample so that sets hold ``mean_nouns`` distinct nouns on average.
    With ``topics``, every set also has a topic (a "scene": kitchen, beach, ...) and half of its
    draws come from that topic's own 200 nouns (Zipfian among themselves), so sets of one topic
    share more nouns than independent draws would: closer to real captions.
    """
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, vocab_size + 1) ** exponent)
    cdf /= cdf[-1]
    topic_size = min(200, vocab_size)
    topic_cdf = np.cumsum(1.0 / np.arange(1, topic_size + 1) ** exponent)
    topic_cdf /= topic_cdf[-1]
    topic_nouns = (
        np.stack([rng.choice(vocab_size, topic_size, replace=False) for _ in range(topics)]) if topics else None
    )

    def draw(n: int, lam: float) -> tuple[np.ndarray, np.ndarray]:
        draws = 1 + rng.poisson(lam, n)
        set_of = np.repeat(np.arange(n, dtype=np.int64), draws)
        nouns = np.minimum(np.searchsorted(cdf, rng.random(set_of.size)), vocab_size - 1)
        if topic_nouns is not None:
            from_topic = rng.random(set_of.size) < 0.5
            topic = rng.integers(0, topics, n)[set_of[from_topic]]
            rank = np.minimum(np.searchsorted(topic_cdf, rng.random(topic.size)), topic_size - 1)
            nouns[from_topic] = topic_nouns[topic, rank]
        packed = np.sort(set_of * vocab_size + nouns)
        packed = packed[np.concatenate(([True], packed[1:] != packed[:-1]))]
        return np.bincount(packed // vocab_size, minlength=n), packed % vocab_size

    lam = mean_nouns
    for _ in range(3):
        lam *= mean_nouns / draw(20_000, lam)[0].mean()
    sizes, nouns = draw(num_sets, lam)
    words = [f"noun{k}" for k in range(vocab_size)]
    flat = [words[k] for k in nouns.tolist()]
    bounds = np.concatenate(([0], np.cumsum(sizes))).tolist()
    return [flat[bounds[i] : bounds[i + 1]] for i in range(num_sets)]


def output_hash(pairs: list[Pair]) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(f"{pair.first},{pair.second},{pair.bin},{'|'.join(pair.shared)}\n".encode())
    return digest.hexdigest()


def check_pairs(pairs: list[Pair], noun_sets: NounSets, config: PairingConfig, sample: int = 20_000) -> list[str]:
    """Problems with the output (empty when valid); shared nouns are checked on a random sample."""
    problems = []
    first = np.array([p.first for p in pairs], np.int64)
    second = np.array([p.second for p in pairs], np.int64)
    if np.any(first >= second):
        problems.append("a pair is not first < second (self pair or unordered)")
    if np.unique(first * len(noun_sets) + second).size != len(pairs):
        problems.append("repeated pairs")
    if len(pairs) and np.bincount(np.concatenate([first, second])).max() > config.max_uses_per_image:
        problems.append("an image is used more than max_uses_per_image times")
    bins = {b.name: b for b in config.bins}
    for k in np.random.default_rng(0).choice(len(pairs), min(sample, len(pairs)), replace=False).tolist():
        pair = pairs[k]
        truth = set(noun_sets.nouns(pair.first)) & set(noun_sets.nouns(pair.second))
        b = bins[pair.bin]
        if set(pair.shared) != truth or len(pair.shared) != len(truth):
            problems.append(f"pair {k}: shared nouns differ from the true intersection")
            break
        if len(truth) < b.min_shared or (b.max_shared is not None and len(truth) > b.max_shared):
            problems.append(f"pair {k}: overlap {len(truth)} outside bin {b.name}")
            break
    return problems


def brute_force_rate(noun_sets: NounSets, sample: int, seed: int) -> tuple[int, float]:
    """All pairs of ``sample`` random sets merged with the same numba kernel: (pairs, seconds)."""
    chosen = np.sort(np.random.default_rng(seed).choice(len(noun_sets), sample, replace=False))
    sub_indptr = np.concatenate(([0], np.cumsum(noun_sets.sizes[chosen])))
    sub_indices = np.concatenate([noun_sets.ids(i) for i in chosen.tolist()])
    first, second = np.triu_indices(sample, 1)
    first, second = first.astype(np.int32), second.astype(np.int32)
    kernels.pair_overlaps(first[:10], second[:10], sub_indptr, sub_indices)  # compile outside the timing
    started = time.perf_counter()
    kernels.pair_overlaps(first, second, sub_indptr, sub_indices)
    return first.size, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, default=FULL_SETS, help="noun sets (images); default 873,000")
    parser.add_argument("--pairs", type=int, default=FULL_PAIRS, help="pairs to mine; default 278,000")
    parser.add_argument("--vocab", type=int, default=30_000, help="vocabulary size")
    parser.add_argument("--mean-nouns", type=float, default=12.5, help="mean distinct nouns per set")
    parser.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of noun frequencies")
    parser.add_argument("--topics", type=int, default=0, help="scene topics of correlated nouns (0: independent)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and of the miner")
    parser.add_argument("--baseline-sample", type=int, default=4_000, help="sets in the brute-force sample")
    args = parser.parse_args()

    started = time.perf_counter()
    lists = zipf_sets(args.sets, args.vocab, args.mean_nouns, args.zipf, args.seed, args.topics)
    print(
        f"synthetic input: {len(lists):,} noun lists, vocabulary {args.vocab:,}, Zipf exponent {args.zipf}, "
        f"topics {args.topics or 'none'}, seed {args.seed}: {time.perf_counter() - started:.1f} s (not timed below)"
    )

    started = time.perf_counter()
    noun_sets = NounSets.from_lists(lists)
    build_seconds = time.perf_counter() - started
    sizes = noun_sets.sizes
    print(
        f"noun sets: {len(noun_sets):,} sets, {len(noun_sets.vocabulary):,} nouns, "
        f"{sizes.mean():.2f} nouns per set (p50 {np.median(sizes):.0f}, max {sizes.max()})"
    )

    config = PairingConfig(num_pairs=args.pairs, seed=args.seed)
    started = time.perf_counter()
    pairs, report = mine_pairs(noun_sets, config)
    mine_seconds = time.perf_counter() - started
    total = build_seconds + mine_seconds
    rss_after_first = peak_rss()

    print("\nphase                       seconds")
    print(f"{'build NounSets':<26}{build_seconds:>9.2f}")
    for phase, seconds in report.seconds.items():
        print(f"{phase:<26}{seconds:>9.2f}")
    print(f"{'mining total':<26}{mine_seconds:>9.2f}")
    print(f"{'TOTAL (build + mining)':<26}{total:>9.2f}")
    print(f"\ncandidates by source (before de-duplication): {report.candidates_by_source}")
    print(f"random pairs checked: {report.random_pairs_checked:,}\n")
    print(report.format())

    started = time.perf_counter()
    again, _ = mine_pairs(noun_sets, config)
    second_seconds = time.perf_counter() - started
    first_hash, again_hash = output_hash(pairs), output_hash(again)
    same = first_hash == again_hash
    print(f"\nsecond run, same seed: {second_seconds:.2f} s, output sha256 {first_hash[:16]} vs {again_hash[:16]}")
    problems = check_pairs(pairs, noun_sets, config)
    print("validity: " + ("every check passed" if not problems else "; ".join(problems)))

    pairs_checked, seconds = brute_force_rate(noun_sets, min(args.baseline_sample, len(noun_sets)), args.seed)
    rate = pairs_checked / seconds
    all_pairs = len(noun_sets) * (len(noun_sets) - 1) // 2
    print(
        f"\nbaseline, brute-force all pairs (numba merge, 1 thread): {pairs_checked:,} pairs of a "
        f"{args.baseline_sample:,}-set sample in {seconds:.2f} s = {rate / 1e6:.1f} M pairs/s;\n"
        f"  EXTRAPOLATED to all {all_pairs:.3g} pairs of {len(noun_sets):,} sets: {all_pairs / rate / 3600:.1f} h "
        f"({all_pairs / rate / total:,.0f}x the miner's total)"
    )

    peak = max(peak_rss(), rss_after_first)
    goals = [
        (f"build + mining <= {SECONDS_GOAL:.0f} s", total <= SECONDS_GOAL, f"{total:.1f} s"),
        (f"peak RSS <= {PEAK_GOAL_BYTES / 1024**3:.0f} GB", peak <= PEAK_GOAL_BYTES, f"{peak / 1024**3:.2f} GB"),
        ("same output for the same seed", same, "identical" if same else "DIFFERENT"),
        ("valid pairs", not problems, "ok" if not problems else "problems"),
        (f"{args.pairs:,} pairs delivered", len(pairs) == args.pairs, f"{len(pairs):,}"),
    ]
    print()
    for name, ok, value in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<34}{value}")
    return 0 if all(ok for _, ok, _ in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
