"""The CaD summary parser on the shapes the release and Mixtral produce."""

from __future__ import annotations

import pytest

from builders.summary import AXES, OTHER, normalize_axis, opening_words, parse_summary, word_count

LABELLED = """Commonalities:
1. Object types: Both images contain a dog.
2. Object locations: Both are in a park.

Differences:
1. Object attributes: The dog in Image 1 is brown, the dog in Image 2 is white.
2. Counting the objects: Image 1 has one dog; Image 2 has three.
3. **Relative positions between objects**: In Image 1 the dog is left of the bench.
4. Lighting: Image 2 is darker."""

PARAGRAPH = """Commonalities: Both images show a kitchen with cabinets.

Differences:
- Image 1 has a red kettle.
- Image 2 shows a person cooking."""


def test_labelled_items_map_to_the_six_axes():
    summary = parse_summary(LABELLED)
    assert summary is not None
    assert [i.axis for i in summary.common_items] == ["object types", "object locations"]
    assert [i.axis for i in summary.difference_items] == [
        "object attributes",
        "counting the objects",
        "relative positions between objects",
        OTHER,
    ]
    assert summary.difference_items[2].text == "In Image 1 the dog is left of the bench."
    assert summary.axes.count(OTHER) == 1


def test_paragraph_and_bullets():
    summary = parse_summary(PARAGRAPH)
    assert summary.commonalities == "Both images show a kitchen with cabinets."
    assert [i.axis for i in summary.difference_items] == [None, None]
    assert summary.difference_items[1].text == "Image 2 shows a person cooking."


@pytest.mark.parametrize(
    "text", ["Differences:\n1. a", "Commonalities:\nBoth.", "no headers", "Differences:\nx\n\nCommonalities:\ny"]
)
def test_missing_or_misordered_sections(text):
    assert parse_summary(text) is None


@pytest.mark.parametrize(
    ("label", "axis"),
    [
        ("Object types", "object types"),
        ("Types of objects", "object types"),
        ("Object attributes", "object attributes"),
        ("Colors", "object attributes"),
        ("Counting the objects", "counting the objects"),
        ("Number of people", "counting the objects"),
        ("Object actions", "object actions"),
        ("Object locations", "object locations"),
        ("Relative positions between objects", "relative positions between objects"),
        ("Weather", OTHER),
    ],
)
def test_axis_normalisation(label, axis):
    assert normalize_axis(label) == axis
    assert axis in (*AXES, OTHER)


def test_words():
    assert word_count("Image 1's dog,\n and  2 cats.") == 6
    assert opening_words("  Both images show", 2) == "both images"
