"""The public calls of the nouns stage: extraction in chunks over worker processes, and through the cache.

Kept apart from :mod:`builders.nouns.fast` because the processes, the chunking and the cache are
plumbing around one extractor per process, and callers (the stage, the benchmark) need only these.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

from builders.nouns.cache import NounCache, noun_key
from builders.nouns.fast import FastNouns
from builders.nouns.model import DEFAULT_BATCH_SIZE, DEFAULT_MODEL, model_version, normalize_stop_nouns


@functools.lru_cache(maxsize=2)
def _extractor(model: str) -> FastNouns:
    """One extractor per process and model: loading the model takes longer than a chunk."""
    return FastNouns(model)


def _work(task: tuple[str, frozenset[str], int, list[str]]) -> list[list[str]]:
    model, stop, batch_size, captions = task
    return [sorted(nouns - stop) for nouns in _extractor(model)(captions, batch_size)]


def _chunks(captions: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(captions), size):
        yield list(captions[start : start + size])


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork on Linux, spawn elsewhere.

    Forked workers inherit the model this process has just loaded and start at once; spawned ones
    import spaCy (and torch, through thinc) and load the model again, ~2.5 s of CPU each, which is a
    sixth of the run on 20K captions. This module starts no threads before it forks (and fork is
    what Pool used on Linux up to Python 3.13 anyway).
    """
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


def iter_noun_chunks(
    captions: Sequence[str],
    *,
    model: str = DEFAULT_MODEL,
    stop_nouns: Iterable[str] = (),
    processes: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[list[list[str]]]:
    """The nouns of ``captions``, a chunk of ``batch_size`` captions at a time, in order.

    With ``processes > 1`` the chunks go to that many worker processes (~0.4 GB each) and come back
    in order. The default batch of 256 (also en_core_web_sm's own) is the tagger's fastest: larger
    ones fall out of the CPU caches (1,000 is ~30% slower).
    """
    if processes < 1 or batch_size < 1:
        raise ValueError(f"processes and batch_size must be at least 1, got {processes} and {batch_size}")
    if not captions:
        return
    stop = normalize_stop_nouns(stop_nouns)
    _extractor(model)  # here, so that a missing model fails once and forked workers inherit it
    if processes == 1 or len(captions) <= batch_size:
        for chunk in _chunks(captions, batch_size):
            yield _work((model, stop, batch_size, chunk))
        return
    tasks = ((model, stop, batch_size, chunk) for chunk in _chunks(captions, batch_size))
    with _pool_context().Pool(processes) as pool:
        yield from pool.imap(_work, tasks)


def extract_nouns(
    captions: Sequence[str],
    *,
    model: str = DEFAULT_MODEL,
    stop_nouns: Iterable[str] = (),
    processes: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> list[list[str]]:
    """Per caption, the sorted unique lower-case lemmas of its nouns, minus ``stop_nouns``.

    The same lists as :func:`reference_nouns`, computed with the tagger only (see the module
    docstring). ``progress`` is called with the number of captions of each finished chunk.
    """
    results: list[list[str]] = []
    for chunk in iter_noun_chunks(
        captions, model=model, stop_nouns=stop_nouns, processes=processes, batch_size=batch_size
    ):
        results.extend(chunk)
        if progress is not None:
            progress(len(chunk))
    return results


def cached_extract_nouns(
    captions: Sequence[str],
    cache_dir: str | os.PathLike[str],
    *,
    model: str = DEFAULT_MODEL,
    stop_nouns: Iterable[str] = (),
    processes: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> list[list[str]]:
    """:func:`extract_nouns` through a :class:`NounCache` in ``cache_dir``.

    Only captions whose key is not cached are computed, each distinct one once; every chunk is
    appended to the cache as it finishes, so a crash loses at most one chunk. ``progress`` counts
    computed captions only. The model version is read before anything is loaded: a missing model
    fails here, at once.
    """
    stop = normalize_stop_nouns(stop_nouns)
    version = model_version(model)
    keys = [noun_key(caption, model, version, stop) for caption in captions]
    with NounCache(cache_dir) as cache:
        missing: dict[str, str] = {}
        for key, caption in zip(keys, captions, strict=True):
            if key not in cache and key not in missing:
                missing[key] = caption
        missing_keys = list(missing)
        done = 0
        for chunk in iter_noun_chunks(
            list(missing.values()), model=model, stop_nouns=stop, processes=processes, batch_size=batch_size
        ):
            cache.add(zip(missing_keys[done : done + len(chunk)], chunk, strict=True))
            done += len(chunk)
            if progress is not None:
                progress(len(chunk))
        return [cache[key] for key in keys]
