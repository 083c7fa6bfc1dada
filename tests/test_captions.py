"""Caption readers: Localized Narratives, COCO caption files, plain JSONL; one caption per image."""

from __future__ import annotations

import json

import pytest

from builders.captions import localized_narratives_file_name, read_captions
from builders.release.validate import ReleaseValidationError
from tests.conftest import COCO_CAPTIONS

REAL = COCO_CAPTIONS


@pytest.mark.parametrize(
    ("dataset_id", "image_id", "name"),
    [
        ("open_images", "0000a1b2c3d4e5f6", "0000a1b2c3d4e5f6.jpg"),
        ("mscoco_train2017", "139", "000000000139.jpg"),
        ("coco_val2017", "292416", "000000292416.jpg"),
        ("flickr30k", "1000092795", "1000092795.jpg"),
        ("ADE20k", "ADE_train_00009414", "ADE_train_00009414.jpg"),
        ("ade20k", "9414", "ADE_train_00009414.jpg"),
    ],
)
def test_localized_narratives_file_names(dataset_id, image_id, name):
    assert localized_narratives_file_name(dataset_id, image_id) == name


def test_localized_narratives_are_grouped_per_image(tmp_path):
    path = tmp_path / "coco_train_captions.jsonl"
    rows = [
        {"dataset_id": "mscoco", "image_id": "139", "annotator_id": 1, "caption": "In this picture I can see a TV."},
        {
            "dataset_id": "mscoco",
            "image_id": "139",
            "annotator_id": 2,
            "caption": "In this image there is a room with a television,  chairs and a plant.",
        },
        {"dataset_id": "open_images", "image_id": "7df2bc41b2093a4e", "caption": "I can see a dog."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = read_captions(path)
    assert [(c.image, c.source) for c in first] == [
        ("000000000139.jpg", "coco"),
        ("7df2bc41b2093a4e.jpg", "open_images"),
    ]
    assert first[0].caption == "In this picture I can see a TV."
    longest = read_captions(path, choose="longest")
    assert longest[0].caption == "In this image there is a room with a television, chairs and a plant."


def test_coco_caption_file(tmp_path):
    path = tmp_path / "captions_train2017.json"
    path.write_text(
        json.dumps(
            {
                "images": [{"id": 9, "file_name": "000000000009.jpg"}, {"id": 25, "file_name": "000000000025.jpg"}],
                "annotations": [
                    {"image_id": 25, "caption": "A giraffe eating leaves."},
                    {"image_id": 9, "caption": "A lunch box."},
                    {"image_id": 9, "caption": "Food in a tray."},
                ],
            }
        )
    )
    captions = read_captions(path)
    assert [(c.image, c.caption) for c in captions] == [
        ("000000000025.jpg", "A giraffe eating leaves."),
        ("000000000009.jpg", "A lunch box."),
    ]


def test_real_captions_file_with_caption_lists():
    captions = read_captions(REAL)
    assert len(captions) == 80
    assert captions[0].image == "000000296284.jpg"
    assert captions[0].caption == "A donut shop is full of different flavors of donuts."


def test_bad_rows_are_all_reported(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        '{"image": "a.jpg", "caption": "ok"}\n{"image": "../b.jpg", "caption": "x"}\n'
        '{"caption": "no image"}\n{"image": "c.jpg", "caption": "  "}\nnot json\n'
    )
    with pytest.raises(ReleaseValidationError) as caught:
        read_captions(path)
    text = str(caught.value)
    assert text.startswith("4 problem(s)")
    for row, reason in [(2, "'..'"), (3, "needs 'image'"), (4, "empty caption"), (5, "not valid JSON")]:
        assert f"{path}:{row}: " in text and reason in text
