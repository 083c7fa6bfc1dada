"""Nouns of captions: what phase-1 pairing counts the overlap of (paper §3.1).

Two captions are similar when they share nouns, so every Localized Narratives caption (873K of
them) is reduced to the sorted, unique, lower-case lemmas of its nouns: what spaCy's full English
pipeline gives as ``[t.lemma_.lower() for t in doc if t.pos_ == "NOUN"]`` (see
:func:`reference_nouns`).

:func:`extract_nouns` gets the same answer 7-8x faster on 2 cores (~1,400 vs ~190 captions/s,
``benchmarks/bench_nouns.py``; 873K captions in ~10 minutes): it runs only the tagger, with the
model's attribute ruler compiled per (word, tag), and spreads chunks over worker processes.
:func:`cached_extract_nouns` adds a content-hash cache (:class:`NounCache`), so that re-running the
stage only computes captions it has not seen.

The modules: :mod:`~builders.nouns.model` (loading the model, stop nouns),
:mod:`~builders.nouns.reference` (the full pipeline, the definition), :mod:`~builders.nouns.fast`
(the tagger path and why it is exact), :mod:`~builders.nouns.cache` (the cache) and
:mod:`~builders.nouns.extract` (the public calls: processes, chunks, the cache).
"""

from builders.nouns.cache import CACHE_VERSION, NounCache, noun_key
from builders.nouns.extract import _extractor as _extractor  # one per process and model; tests read its rules
from builders.nouns.extract import cached_extract_nouns, extract_nouns, iter_noun_chunks
from builders.nouns.fast import UNDECIDED, FastNouns, NounRules
from builders.nouns.model import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MODEL,
    DEFAULT_STOP_NOUNS,
    INSTALL_MODEL,
    INSTALL_SPACY,
    ModelNotInstalledError,
    load_model,
    missing_model_message,
    model_version,
    normalize_stop_nouns,
)
from builders.nouns.reference import doc_nouns, reference_nouns

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MODEL",
    "DEFAULT_STOP_NOUNS",
    "INSTALL_MODEL",
    "INSTALL_SPACY",
    "UNDECIDED",
    "FastNouns",
    "ModelNotInstalledError",
    "NounCache",
    "NounRules",
    "cached_extract_nouns",
    "doc_nouns",
    "extract_nouns",
    "iter_noun_chunks",
    "load_model",
    "missing_model_message",
    "model_version",
    "normalize_stop_nouns",
    "noun_key",
    "reference_nouns",
]
