"""The miner's input: one set of nouns per image, as CSR arrays numbered rarest noun first.

Kept apart from the miner because it is the contract between the nouns stage and the pairing
stage (``NounSets.from_lists`` takes what ``builders.nouns`` produces), and because the numba
kernels read these arrays directly: their dtypes and order are checked here, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


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
        packed = sorted_unique(set_of * width + first_seen)
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


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending: one sort and one mask, for the packed int64/uint64 keys of the miner."""
    values = np.sort(values)
    if values.size:
        values = values[np.concatenate(([True], values[1:] != values[:-1]))]
    return values
