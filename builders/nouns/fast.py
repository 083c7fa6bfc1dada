"""The fast path: the tagger alone, with the model's attribute ruler compiled per (word, tag).

The full pipeline runs a parser and an entity recogniser that the nouns need nothing of, and its
attribute ruler and lemmatiser visit every token. :class:`FastNouns` runs only the tagger (and the
tok2vec layer under it), compiles the model's own attribute-ruler patterns into a per-(word, tag)
decision made once and cached (:class:`NounRules`), and lemmatises only the nouns with the model's
own rule lemmatiser.

Exactness: every ruler pattern that depends on the tag, the word or whether it is whitespace is
evaluated exactly. A pattern that depends on a neighbouring token, on an operator this module does
not evaluate, or on the parse *and* names a word, sends the caption through parser, ruler and
lemmatiser (the full path, exact) when one of its noun-tagged words could be affected. Patterns
that depend on the parse alone would need the parser on every caption; they are assumed not to
match. In en_core_web_sm 3.8 that is one rule (a token the parser labels ``aux``/``auxpass``
becomes AUX), which the parser does not give to noun-tagged words in captions: no difference with
the full pipeline on 20,000 synthetic Localized Narratives captions, the 401 COCO captions of the
tests and 14,669 texts of the CaD-VI evaluation files (captions, CaD-QA questions and answers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from builders.nouns.model import DEFAULT_BATCH_SIZE, DEFAULT_MODEL, load_model
from builders.nouns.reference import doc_nouns

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

# The noun tags, decisions and lemmas are the tagger's and attribute ruler's; these components are
# the ones the fast path knows how to stand in for or skip. Anything else could set POS or LEMMA.
_TAGGING = frozenset({"tok2vec", "transformer", "tagger"})
_SKIPPED = frozenset({"parser", "senter", "ner", "attribute_ruler", "lemmatizer"})
_FULL_PATH = ("parser", "attribute_ruler", "lemmatizer")
_WORD_KEYS = frozenset({"LOWER", "ORTH", "TEXT", "NORM"})


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
