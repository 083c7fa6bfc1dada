"""The "pairs" stage of the phase-1 pipeline: which images to compare (paper §3.1, §4).

Images are paired by the nouns their captions share. :func:`mine_pairs` builds the stratified
phase-1 pairs (bins of shared nouns with quotas, per-image caps); :func:`mine_threshold_pairs`
the CaD-QA pairs (>= 8 shared nouns, each image at most 4 times); both return ``(pairs, report)``.
Input is :class:`NounSets`, one set of lemmatised nouns per image (``NounSets.from_lists``).

The modules, in the order the data goes through them: :mod:`~builders.pairs.sets` (the input),
:mod:`~builders.pairs.config` (bins, configuration, pairs and reports: no numba),
:mod:`~builders.pairs.candidates` (the join, sampling and merge, over the numba
:mod:`~builders.pairs.kernels`) and :mod:`~builders.pairs.miner` (routing and the greedy fill).
"""

from builders.pairs.config import DEFAULT_BINS, Bin, BinReport, Pair, PairingConfig, PairingReport, describe
from builders.pairs.miner import mine_pairs, mine_threshold_pairs
from builders.pairs.sets import NounSets

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
    "mine_threshold_pairs",
]
