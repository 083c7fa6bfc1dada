"""The "pairs" stage of the phase-1 pipeline: which images to compare (paper §3.1, §4).

Images are paired by the nouns their captions share. :func:`mine_pairs` builds the stratified
phase-1 pairs (bins of shared nouns with quotas, per-image caps); :func:`mine_threshold_pairs`
the CaD-QA pairs (>= 8 shared nouns, each image at most 4 times). Input is :class:`NounSets`,
one set of lemmatised nouns per image (``NounSets.from_lists``).
"""

from builders.pairs.miner import (
    DEFAULT_BINS,
    Bin,
    BinReport,
    NounSets,
    Pair,
    PairingConfig,
    PairingReport,
    describe,
    mine_pairs,
    mine_pairs_with_report,
    mine_threshold_pairs,
    mine_threshold_pairs_with_report,
)

__all__ = [
    "DEFAULT_BINS",
    "Bin",
    "BinReport",
    "NounSets",
    "Pair",
    "PairingConfig",
    "PairingReport",
    "describe",
    "mine_pairs",
    "mine_pairs_with_report",
    "mine_threshold_pairs",
    "mine_threshold_pairs_with_report",
]
