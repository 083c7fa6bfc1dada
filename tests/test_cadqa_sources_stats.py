"""CaD-QA sources (SVIT captions of Visual Genome images) and the statistics of a CaD-QA file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builders.cadqa_sources import read_svit_captions, vg_image_name, write_caption_jsonl
from builders.cadqa_stats import (
    is_single_image_question,
    is_single_image_question_broad,
    official_statistics,
    qa_statistics,
    read_cadqa_rows,
    statistics_table,
)
from builders.captions import ImageCaption, read_captions
from builders.release.validate import ReleaseValidationError
from tests.conftest import CADQA_OFFICIAL, cadqa_row, shared_file

# The single-image rule ("names exactly one of Image 1 / Image 2") on the official file, and the paper's count.
OFFICIAL_SINGLE_IMAGE = 2916
OFFICIAL_SINGLE_IMAGE_BROAD = 3372
PAPER_SINGLE_IMAGE = 2916
SINGLE_IMAGE_TOLERANCE = 0.05  # of the paper's count


def svit_row(image_id: Any, description: Any) -> dict[str, Any]:
    """One row of SVIT detail_description.json, in the released shape."""
    return {
        "image_id": image_id,
        "conversations": [
            {
                "content": [
                    {"from": "user", "value": "Describe the image in detail."},
                    {"from": "gpt", "value": description},
                ]
            }
        ],
    }


def vg_row(image_id: Any, folder: str = "VG_100K", url: str | None = None) -> dict[str, Any]:
    """One row of Visual Genome image_data.json, in the released shape."""
    return {
        "image_id": image_id,
        "url": url if url is not None else f"https://cs.stanford.edu/people/rak248/{folder}/{image_id}.jpg",
        "width": 800,
        "height": 600,
        "coco_id": None,
        "flickr_id": None,
    }


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def vg_files(tmp_path: Path) -> tuple[Path, Path]:
    svit = write_json(
        tmp_path / "detail_description.json",
        [
            svit_row(2550, "The image shows a busy street\n with cars,  a bus and trees."),
            svit_row(1, "A living room with a couch, a lamp and a window."),
            svit_row(2550, "A much longer second description of the same busy street, with cars and a bus."),
        ],
    )
    vg = write_json(
        tmp_path / "image_data.json",
        [vg_row(1, "VG_100K_2"), vg_row(2550, "VG_100K"), vg_row(7, "VG_100K_2")],
    )
    return svit, vg


def test_svit_captions_join_visual_genome_image_names(vg_files):
    captions = read_svit_captions(*vg_files)
    assert captions == [
        ImageCaption("VG_100K/2550.jpg", "The image shows a busy street with cars, a bus and trees.", "visual_genome"),
        ImageCaption("VG_100K_2/1.jpg", "A living room with a couch, a lamp and a window.", "visual_genome"),
    ]
    longest = read_svit_captions(*vg_files, choose="longest")
    assert longest[0].caption.startswith("A much longer second description")


def test_svit_captions_feed_the_phase1_caption_reader(vg_files, tmp_path):
    captions = read_svit_captions(*vg_files)
    path = write_caption_jsonl(captions, tmp_path / "svit_captions.jsonl")
    assert read_captions(path) == [ImageCaption(c.image, c.caption, "svit_captions") for c in captions]


def test_vg_image_name_is_the_last_two_url_parts():
    assert vg_image_name("https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg") == "VG_100K_2/1.jpg"
    assert vg_image_name("http://cs.stanford.edu/people/rak248/VG_100K/2349307.jpg") == "VG_100K/2349307.jpg"
    with pytest.raises(ValueError, match="Visual Genome image folder"):
        vg_image_name("https://example.org/images/1.jpg")


def test_bad_svit_and_image_data_rows_are_reported_together(tmp_path):
    svit = write_json(
        tmp_path / "detail_description.json",
        [
            svit_row(1, "A fine caption."),
            svit_row(99, "No image entry for this id."),
            svit_row(1, "   "),
            svit_row("3", "An id given as a string."),
            {"image_id": 1, "conversations": [{"content": [{"from": "user", "value": "Describe it."}]}]},
            "not an object",
            svit_row(5, "Its image_data row has a bad URL."),
        ],
    )
    vg = write_json(
        tmp_path / "image_data.json",
        [vg_row(1), vg_row(True), vg_row(5, url="https://example.org/5.jpg"), [1, 2]],
    )
    with pytest.raises(ReleaseValidationError) as caught:
        read_svit_captions(svit, vg)
    found = {str(p) for p in caught.value.problems}
    assert found == {
        f"{svit}:2: image_id 99 has no entry in image_data.json",
        f"{svit}:3: empty caption",
        f"{svit}:4: 'image_id' must be an integer (a Visual Genome id), got str '3'",
        f"{svit}:5: no 'gpt' turn (the description) in 'conversations'",
        f"{svit}:6: an SVIT row must be an object, got str 'not an object'",
        f"{svit}:7: image_id 5 has no entry in image_data.json",
        f"{vg}:2: 'image_id' must be an integer, got bool True",
        f"{vg}:3: 'url' 'https://example.org/5.jpg' is not in a Visual Genome image folder (VG_100K or VG_100K_2)",
        f"{vg}:4: an image_data row must be an object, got list [1, 2]",
    }


def test_non_list_and_missing_files_are_reported(tmp_path):
    svit = write_json(tmp_path / "detail_description.json", {"image_id": 1, "conversations": []})
    missing = tmp_path / "image_data.json"
    with pytest.raises(ReleaseValidationError) as caught:
        read_svit_captions(svit, missing)
    reasons = [str(p) for p in caught.value.problems]
    assert len(reasons) == 2
    assert reasons[0].startswith(f"{svit}: the SVIT detail_description.json file must be a JSON list of objects")
    assert reasons[1] == f"{missing}: no such file (expected the Visual Genome image_data.json file)"


def test_long_svit_captions_follow_the_length_policy(tmp_path):
    svit = write_json(tmp_path / "detail_description.json", [svit_row(1, "word " * 50)])
    vg = write_json(tmp_path / "image_data.json", [vg_row(1)])
    with pytest.raises(ReleaseValidationError, match=r"detail_description.json:1: caption of 249 characters"):
        read_svit_captions(svit, vg, max_chars=100)
    assert len(read_svit_captions(svit, vg, max_chars=100, long_captions="truncate")[0].caption) <= 100
    assert read_svit_captions(svit, vg, max_chars=100, long_captions="skip") == []


@pytest.mark.parametrize(
    ("question", "single", "broad"),
    [
        ("What is the main object in Image 2?", True, True),
        ("Are there any people in image 1?", True, True),
        ("What is the atmosphere like in the second image?", False, True),
        ("What objects are present in Image 1 but not in Image 2?", False, False),
        ("How would you describe the lighting in the two images?", False, False),
        ("Both images have trees. Can you describe the tree in Image 2?", True, False),
        ("What is the woman in Image 1 doing relative to the other people?", True, True),
        ("Which image has more people?", False, False),
    ],
)
def test_single_image_rules(question, single, broad):
    assert is_single_image_question(question) is single
    assert is_single_image_question_broad(question) is broad


def test_statistics_of_small_rows():
    rows = [cadqa_row(i) for i in range(4)]
    rows[1]["answer"] = "Yes, Image 1 has two apples."
    rows[2] = {**rows[2], "text": rows[2]["text"].replace("What differs in picture 2?", "Is Image 2 bright?")}
    rows[3] = {"question": "No prefix here, what is in the first image?", "image": rows[3]["image"], "answer": "No."}
    stats = qa_statistics(rows)
    assert stats["rows"] == 4
    assert stats["openings"]["first_word"][0] == {"text": "What", "count": 2, "share": 0.5}
    assert stats["openings"]["first_two_words"][0]["text"] == "What differs"
    assert stats["question_words"] == pytest.approx({"mean": 5.75, "median": 5.0, "p10": 4.3, "p90": 7.8})  # 4 5 5 9
    assert stats["single_image"]["count"] == 1
    assert stats["single_image_broad"]["count"] == 2
    assert stats["answers_yes"]["count"] == 1 and stats["answers_no"]["count"] == 1
    assert stats["answers_naming_image_1_2"]["count"] == 3
    assert stats["distinct_images"] == 8 and stats["max_uses_per_image"] == 1


def test_bad_question_file_rows_are_reported_with_file_and_row(tmp_path):
    path = tmp_path / "CaD_QA_mine.jsonl"
    good, bad = cadqa_row(1), {**cadqa_row(2), "answer": ""}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n{not json\n")
    with pytest.raises(ReleaseValidationError) as caught:
        read_cadqa_rows(path)
    assert [p.row for p in caught.value.problems] == [2, 3]
    assert all(p.file == str(path) for p in caught.value.problems)


@pytest.fixture(scope="module")
def official() -> dict[str, Any]:
    return official_statistics(shared_file(CADQA_OFFICIAL))


def test_official_file_statistics(official):
    assert official["rows"] == 7520
    assert official["distinct_images"] == 14138
    assert official["max_uses_per_image"] == 4
    assert official["distinct_pairs"] == 7520
    single = official["single_image"]["count"]
    assert single == OFFICIAL_SINGLE_IMAGE
    assert abs(single - PAPER_SINGLE_IMAGE) <= SINGLE_IMAGE_TOLERANCE * PAPER_SINGLE_IMAGE
    assert official["single_image_broad"]["count"] == OFFICIAL_SINGLE_IMAGE_BROAD
    openings = {o["text"]: o["count"] for o in official["openings"]["first_word"]}
    assert {k: openings[k] for k in ("What", "Are", "How", "Can", "Is", "Do")} == {
        "What": 3869,
        "Are": 1726,
        "How": 1226,
        "Can": 351,
        "Is": 95,
        "Do": 84,
    }
    assert round(official["question_words"]["mean"], 1) == 10.2
    assert round(official["answer_words"]["mean"], 1) == 26.0
    assert round(official["answers_naming_image_1_2"]["share"], 2) == 0.88
    assert round(official["answers_yes"]["share"], 2) == 0.18


def test_statistics_table_has_both_columns(official):
    ours = qa_statistics([cadqa_row(i) for i in range(3)])
    table = statistics_table(ours, official, ours_label="generated", official_label="CaD_QA_eval")
    lines = table.splitlines()
    assert lines[0] == "| metric | generated | CaD_QA_eval |"
    assert all(line.count(" | ") == 2 and line.endswith(" |") for line in lines[2:])
    assert "| questions | 3 | 7,520 |" in lines
    assert "| distinct images | 6 | 14,138 |" in lines
    assert "| single-image questions (names one of Image 1/Image 2) | 0 (0.0%) | 2,916 (38.8%) |" in lines
    assert any(line.startswith("| opening word “What” | 3 (100.0%) | 3,869 (51.4%)") for line in lines)
    assert any(line.startswith("| opening words “What differs” | 3 (100.0%) | – |") for line in lines)
