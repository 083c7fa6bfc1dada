"""Two-turn conversations, summary checks and the phase-1 export."""

from __future__ import annotations

import pytest

from builders.conversations import phase1_conversation, retrieval_choice
from builders.release.validate import cadinst_row_problems
from builders.summary import SummaryBounds, check_summary, structured

# The three shapes real phase-1 summaries take (facts §2): a paragraph of commonalities with
# labelled numbered differences; numbered labelled commonalities; unlabelled bullets.
PARAGRAPH = """Commonalities:
Both images show a person outdoors on a sunny day, with trees and a road in the background.

Differences:
1. Object types: Image 1 shows a man with a bicycle, while Image 2 shows a woman with a dog.
2. Counting the objects: Image 1 has one person and one bicycle; Image 2 has two people and a dog.
3. Object actions: In Image 1 the man is riding; in Image 2 the woman is walking the dog.
4. Relative positions between objects: In Image 2 the dog walks in front of the woman."""
NUMBERED = """Commonalities:
1. Object types: Both images contain a table with food on it.
2. Object locations: Both scenes are indoors, in a kitchen.

Differences:
1. Object attributes: The table in Image 1 is wooden and brown, while the table in Image 2 is white.
2. Counting the objects: Image 1 has three plates, whereas Image 2 has a single bowl.
3. Object locations: In Image 1 the table stands near a window; in Image 2 it is next to a fridge."""
UNLABELLED = """Commonalities: Both images depict animals grazing on green grass in an open field.

Differences:
- Image 1 shows two brown horses standing close together near a wooden fence.
- Image 2 shows a single black and white cow lying down under a large tree."""


@pytest.mark.parametrize(
    ("text", "axes"),
    [
        (PARAGRAPH, ["object types", "counting the objects", "object actions", "relative positions between objects"]),
        (NUMBERED, ["object attributes", "counting the objects", "object locations"]),
        (UNLABELLED, [None, None]),
    ],
)
def test_real_summary_shapes_are_accepted(text, axes):
    summary, reason = check_summary(text, SummaryBounds(min_words=20))
    assert reason is None
    record = structured(summary)
    assert [d["axis"] for d in record["differences"]] == axes
    assert record["commonalities"]


@pytest.mark.parametrize(
    ("text", "finish", "reason"),
    [
        (PARAGRAPH, "length", "truncated"),
        ("Commonalities:\nBoth.\n\nDifferences:\n1. Image 1 vs Image 2.", "stop", "too short"),
        (PARAGRAPH.replace("Differences:", "Other things:"), "stop", "missing a 'Commonalities:'"),
        (PARAGRAPH.replace("Image 2", "the other picture"), "stop", "does not refer to both images"),
        ("word " * 700, "stop", "too long"),
    ],
)
def test_bad_summaries_are_rejected_with_a_reason(text, finish, reason):
    summary, why = check_summary(text, SummaryBounds(min_words=20), finish_reason=finish)
    assert summary is None and reason in why


def test_conversation_is_a_valid_release_row_and_seeded():
    row = phase1_conversation("a_b", ("a.jpg", "b.jpg"), ("a man on a bike", "a woman and a dog"), PARAGRAPH)
    assert cadinst_row_problems(row) == []
    assert row["conversations"][0]["value"].startswith("Image 1: <image>\nImage 2: <image>\nSummarize")
    which = retrieval_choice("a_b", 0)
    assert row["conversations"][3]["value"] == "AB"[which]
    assert f'"{("a man on a bike", "a woman and a dog")[which]}"' in row["conversations"][2]["value"]
    choices = {retrieval_choice(f"pair{i}", 0) for i in range(50)}
    assert choices == {0, 1}, "both captions get asked about"
    assert [retrieval_choice(f"pair{i}", 0) for i in range(20)] == [retrieval_choice(f"pair{i}", 0) for i in range(20)]
