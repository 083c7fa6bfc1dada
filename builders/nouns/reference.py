"""The reference: nouns by their definition, from spaCy's full English pipeline.

Slow, and kept for two reasons: :func:`doc_nouns` is *the* definition (the fast path falls back
to it for the captions it cannot decide from the tags), and :func:`reference_nouns` is what the
tests and ``benchmarks/bench_nouns.py`` compare the fast path with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from builders.nouns.model import DEFAULT_MODEL, load_model, normalize_stop_nouns

if TYPE_CHECKING:
    from spacy.tokens import Doc


def doc_nouns(doc: Doc) -> set[str]:
    """The definition: lower-cased lemmas of the tokens whose coarse POS is NOUN."""
    return {token.lemma_.lower() for token in doc if token.pos_ == "NOUN"}


def reference_nouns(
    captions: Sequence[str], model: str = DEFAULT_MODEL, *, stop_nouns: Iterable[str] = ()
) -> list[list[str]]:
    """Nouns by the straightforward definition: the default pipeline, every component, one process.

    Slow (160 Localized Narratives captions/s on one core); it exists to prove that
    :func:`extract_nouns` gives the same answer.
    """
    nlp = load_model(model)
    stop = normalize_stop_nouns(stop_nouns)
    return [sorted(doc_nouns(doc) - stop) for doc in nlp.pipe(captions)]
