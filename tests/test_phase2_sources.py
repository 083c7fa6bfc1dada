"""Phase-2 sources read from fixtures written here in their real formats: MIMIC-IT CGD (instructions JSON with
COCO JPEGs or CGD.json base64 PNGs), the_cauldron ``mimic_cgd`` parquet, and plain JSONL pairs."""

from __future__ import annotations

import base64
import io
import json
import random
import re
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from builders.phase2 import sources
from builders.phase2.cauldron import read_cauldron
from builders.phase2.cgd import read_cgd
from builders.phase2.items import Phase2Item
from builders.phase2.sources import read_pairs_jsonl, read_phase2_source
from builders.release.validate import ReleaseValidationError

STEMS = ("000000000009", "000000000025", "000000000030", "000000000034", "000000000042", "000000000049")
PAIR_A, PAIR_B, PAIR_C = (STEMS[0], STEMS[1]), (STEMS[2], STEMS[3]), (STEMS[4], STEMS[5])
# Four instructions over three pairs; pair A has two (not adjacent), so its context joins two answers in file order.
INSTRUCTIONS = [
    ("CGD_INS_00001", PAIR_A, "The first image has a dog."),
    ("CGD_INS_00002", PAIR_B, "The second image is darker."),
    ("CGD_INS_00003", PAIR_A, " Only one has a frisbee. "),
    ("CGD_INS_00004", PAIR_C, "There are more people in the second image."),
]


def encoded(color: tuple[int, int, int], fmt: str = "PNG", size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def noisy_jpeg(size: int = 64) -> bytes:
    rng = random.Random(0)
    image = Image.frombytes("RGB", (size, size), bytes(rng.randrange(256) for _ in range(size * size * 3)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def color(stem: str) -> tuple[int, int, int]:
    return (int(stem) * 5 % 256, 40, 200)


def cgd_record(pair: tuple[str, ...], answer: Any, index: int) -> dict[str, Any]:
    return {
        "instruction": f"What is different? ({index})",
        "answer": answer,
        "image_ids": [f"CGD_IMG_{stem}" for stem in pair],
        "rel_ins_ids": [],
    }


def write_cgd(folder: Path, extra: list[tuple[str, tuple[str, ...], Any]] = ()) -> Path:
    """A ``CGD_instructions.json`` in the MIMIC-IT layout (``meta`` + ``data``)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {ins: cgd_record(pair, answer, i) for i, (ins, pair, answer) in enumerate([*INSTRUCTIONS, *extra])}
    path = folder / "CGD_instructions.json"
    path.write_text(json.dumps({"meta": {"version": "0.0.1", "time": "2023-06", "author": "ntu"}, "data": data}))
    return path


def write_coco(folder: Path, stems: tuple[str, ...] = STEMS) -> Path:
    """A COCO train2017-like folder of small JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        (folder / f"{stem}.jpg").write_bytes(encoded(color(stem), "JPEG"))
    return folder


def write_cgd_images(path: Path, overrides: dict[str, str] | None = None) -> Path:
    """A ``CGD.json``: one flat object of base64 PNGs (what the MIMIC-IT convert tool writes)."""
    images = {f"CGD_IMG_{stem}": base64.b64encode(encoded(color(stem))).decode() for stem in STEMS}
    images.update(overrides or {})
    path.write_text(json.dumps(images))
    return path


def problems_of(error: pytest.ExceptionInfo[ReleaseValidationError]) -> list[str]:
    return [str(problem) for problem in error.value.problems]


# ----- MIMIC-IT CGD -----


def test_cgd_groups_instructions_by_pair_with_coco_images(tmp_path: Path) -> None:
    path, coco = write_cgd(tmp_path / "cgd"), write_coco(tmp_path / "train2017")
    items = read_cgd(path, coco_root=coco)
    assert [item.pair_id for item in items] == [
        "cgd_000000000009_000000000025",
        "cgd_000000000030_000000000034",
        "cgd_000000000042_000000000049",
    ]
    first = items[0]
    assert first.context == "The first image has a dog. Only one has a frisbee."  # both answers, file order
    assert first.images == (str(coco.absolute() / "000000000009.jpg"), str(coco.absolute() / "000000000025.jpg"))
    assert first.image_names == ("000000000009.jpg", "000000000025.jpg")
    assert first.origin == f"{path}:1"
    assert (items[1].context, items[1].origin) == ("The second image is darker.", f"{path}:2")
    assert items[2].origin == f"{path}:4"
    assert all(isinstance(item, Phase2Item) for item in items)


def test_cgd_with_base64_images_gives_png_data_uris(tmp_path: Path) -> None:
    path, images = write_cgd(tmp_path / "cgd"), write_cgd_images(tmp_path / "CGD.json")
    items = read_cgd(path, images=images)
    assert len(items) == 3
    uri = items[0].images[0]
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.partition(",")[2]) == encoded(color(STEMS[0]))
    assert items[0].image_names == ("000000000009.jpg", "000000000025.jpg")  # the COCO names, whichever copy
    assert items[0].context == "The first image has a dog. Only one has a frisbee."


def test_cgd_prefers_coco_root_and_falls_back_to_cgd_json(tmp_path: Path) -> None:
    path, images = write_cgd(tmp_path / "cgd"), write_cgd_images(tmp_path / "CGD.json")
    coco = write_coco(tmp_path / "train2017")
    items = read_cgd(path, images=images, coco_root=coco)
    assert all(not source.startswith("data:") for item in items for source in item.images)
    (coco / "000000000049.jpg").unlink()
    items = read_cgd(path, images=images, coco_root=coco)
    assert items[2].images[0] == str(coco.absolute() / "000000000042.jpg")
    assert items[2].images[1].startswith("data:image/png;base64,")
    # CGD.json (gigabytes in the real release) is not even read while coco_root has every image
    write_coco(coco)
    (tmp_path / "broken.json").write_text("{ not json")
    assert read_cgd(path, images=tmp_path / "broken.json", coco_root=coco) == read_cgd(path, coco_root=coco)


def test_cgd_image_without_any_copy_is_reported_at_its_instruction(tmp_path: Path) -> None:
    path = write_cgd(tmp_path / "cgd", [("CGD_INS_00005", (STEMS[0], "000000000777"), "A cat.")])
    images, coco = write_cgd_images(tmp_path / "CGD.json"), write_coco(tmp_path / "train2017")
    with pytest.raises(ReleaseValidationError) as error:
        read_cgd(path, images=images, coco_root=coco)
    [problem] = problems_of(error)
    assert problem.startswith(f"{path}:5: CGD_INS_00005: image 'CGD_IMG_000000000777'")
    assert "has no image: in neither coco_root" in problem and str(images) in problem
    with pytest.raises(ReleaseValidationError, match=re.escape("no images file (CGD.json) was given")):
        read_cgd(path, coco_root=coco)


def test_cgd_corrupt_base64_and_bytes_are_reported_once_per_image(tmp_path: Path) -> None:
    path = write_cgd(tmp_path / "cgd")
    truncated = base64.b64encode(encoded(color(STEMS[4]), size=(64, 64))[:-20]).decode()
    images = write_cgd_images(
        tmp_path / "CGD.json",
        {
            f"CGD_IMG_{STEMS[0]}": "this is not base64!",  # pair A: used by two instructions
            f"CGD_IMG_{STEMS[2]}": base64.b64encode(b"plain text, not an image").decode(),
            f"CGD_IMG_{STEMS[4]}": truncated,
        },
    )
    with pytest.raises(ReleaseValidationError) as error:
        read_cgd(path, images=images)
    problems = problems_of(error)
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"{path}:1: CGD_INS_00001: image 'CGD_IMG_000000000009' (used by 2 instruction(s))")
    assert "base64 does not decode" in problems[0]
    assert problems[1].startswith(f"{path}:2: CGD_INS_00002: image 'CGD_IMG_000000000030'")
    assert "bytes are not an image" in problems[1]
    assert problems[2].startswith(f"{path}:4: CGD_INS_00004: image 'CGD_IMG_000000000042'")
    assert "image bytes are corrupt" in problems[2]


def test_cgd_bad_records_are_all_reported(tmp_path: Path) -> None:
    path = write_cgd(
        tmp_path / "cgd",
        [
            ("CGD_INS_00005", PAIR_B, ""),
            ("CGD_INS_00006", (*PAIR_C, STEMS[0]), "Three images."),
            ("CGD_INS_00007", ("000000000001",), "One image."),
        ],
    )
    document = json.loads(path.read_text())
    del document["data"]["CGD_INS_00002"]["answer"]
    document["data"]["CGD_INS_00008"] = {"instruction": "?", "answer": "x", "image_ids": ["COCO_1", "CGD_IMG_2"]}
    path.write_text(json.dumps(document))
    with pytest.raises(ReleaseValidationError) as error:
        read_cgd(path, coco_root=write_coco(tmp_path / "train2017"))
    assert problems_of(error) == [
        f"{path}:2: CGD_INS_00002: missing key(s) 'answer'",
        f"{path}:5: CGD_INS_00005: 'answer' must be a non-empty string, got str ''",
        f"{path}:6: CGD_INS_00006: 'image_ids' must hold exactly two image ids (one pair), got 3",
        f"{path}:7: CGD_INS_00007: 'image_ids' must hold exactly two image ids (one pair), got 1",
        f"{path}:8: CGD_INS_00008: 'image_ids' must look like 'CGD_IMG_<coco id>', got ['COCO_1']",
    ]
    assert "nothing was written" in str(error.value)


def test_cgd_file_that_is_not_an_instructions_file(tmp_path: Path) -> None:
    path = tmp_path / "CGD_instructions.json"
    path.write_text(json.dumps({"meta": {}}))
    with pytest.raises(ReleaseValidationError, match="expected an object with a 'data' object"):
        read_cgd(path, coco_root=write_coco(tmp_path / "coco"))
    with pytest.raises(ValueError, match="needs coco_root"):
        read_cgd(path)


# ----- the_cauldron mimic_cgd -----


def cauldron_rows() -> list[dict[str, Any]]:
    """Row 1 stores the COCO file names with the bytes; row 2 stores none (PNG + JPEG bytes)."""
    return [
        {
            "images": [
                {"bytes": encoded(color(STEMS[0])), "path": f"{STEMS[0]}.jpg"},
                {"bytes": encoded(color(STEMS[1])), "path": f"/home/someone/coco/{STEMS[1]}.jpg"},
            ],
            "texts": [
                {"user": "What differs?", "assistant": "A dog is only in the first.", "source": "mimic_cgd"},
                {"user": "Anything else?", "assistant": " The sky is grey. ", "source": "mimic_cgd"},
            ],
        },
        {
            "images": [{"bytes": encoded(color(STEMS[2])), "path": None}, {"bytes": noisy_jpeg(), "path": None}],
            "texts": [{"user": "Differences?", "assistant": "The second is noisier.", "source": "mimic_cgd"}],
        },
    ]


CAULDRON_SCHEMA = pa.schema(
    [
        ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
        ("texts", pa.list_(pa.struct([("user", pa.string()), ("assistant", pa.string()), ("source", pa.string())]))),
    ]
)


def write_cauldron(path: Path, rows: list[dict[str, Any]], writer: str = "datasets") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if writer == "datasets":  # the Hub's own layout: a list of datasets.Image, stored as {bytes, path} structs
        columns = {key: [row[key] for row in rows] for key in ("images", "texts")}
        dataset = datasets.Dataset.from_dict(columns).cast_column("images", datasets.List(datasets.Image()))
        dataset.to_parquet(str(path))
    else:
        pq.write_table(pa.Table.from_pylist(rows, schema=CAULDRON_SCHEMA), path)
    assert pq.read_schema(path).field("images").type == CAULDRON_SCHEMA.field("images").type
    return path


@pytest.mark.parametrize("writer", ["datasets", "pyarrow"])
def test_cauldron_rows_become_items_with_data_uris(tmp_path: Path, writer: str) -> None:
    path = write_cauldron(tmp_path / "mimic_cgd" / "train-00000-of-00001.parquet", cauldron_rows(), writer)
    first, second = read_cauldron(path)
    assert first.pair_id == "cgd_000000000009_000000000025"
    assert first.image_names == ("000000000009.jpg", "000000000025.jpg")
    assert first.context == "A dog is only in the first. The sky is grey."
    assert base64.b64decode(first.images[0].partition(",")[2]) == encoded(color(STEMS[0]))
    assert first.origin == f"{path}:1"
    assert second.pair_id == "cauldron_2"
    assert second.image_names == ("cauldron_2_1.png", "cauldron_2_2.jpg")
    assert second.images[0].startswith("data:image/png;base64,")
    assert second.images[1].startswith("data:image/jpeg;base64,")
    assert second.context == "The second is noisier."


def test_cauldron_folder_reads_its_files_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "mimic_cgd"
    rows = cauldron_rows()
    write_cauldron(folder / "train-00001-of-00002.parquet", [rows[1]])
    write_cauldron(folder / "train-00000-of-00002.parquet", rows)
    items = read_cauldron(folder)
    assert [item.pair_id for item in items] == ["cgd_000000000009_000000000025", "cauldron_2", "cauldron_3"]
    assert items[2].origin == f"{folder / 'train-00001-of-00002.parquet'}:1"


def test_cauldron_bad_rows_are_all_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as importing lmms-eval leaves it
    good, pathless = cauldron_rows()
    jpeg = noisy_jpeg()
    three = {**pathless, "images": [*pathless["images"], pathless["images"][0]]}
    corrupt = {
        **pathless,
        "images": [{"bytes": b"\x89PNG not really", "path": None}, {"bytes": jpeg[:-200], "path": None}],
    }
    empty = {**pathless, "texts": []}
    blank = {**pathless, "texts": [{"user": "?", "assistant": "  ", "source": "mimic_cgd"}]}
    path = write_cauldron(tmp_path / "cauldron.parquet", [good, three, corrupt, empty, blank, good, pathless])
    with pytest.raises(ReleaseValidationError) as error:
        read_cauldron(path)
    problems = problems_of(error)
    assert problems[0] == f"{path}:2: 'images' must hold exactly two images (one pair), got 3"
    assert problems[1].startswith(f"{path}:3: image 1: bytes are not an image")
    assert problems[2].startswith(f"{path}:3: image 2: image bytes are corrupt")
    assert problems[3] == f"{path}:4: 'texts' is empty: no question/answer pairs to use as context"
    assert problems[4] == f"{path}:5: texts[1]: 'assistant' must be a non-empty string"
    assert problems[5] == f"{path}:6: duplicate pair id 'cgd_000000000009_000000000025' (first seen at {path}:1)"
    assert len(problems) == 6


# ----- plain JSONL -----


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_pairs_jsonl(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "images" / "coco").parent
    path = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"images": [f"coco/{STEMS[0]}.jpg", f"coco/{STEMS[1]}.jpg"], "annotation": " A dog only in one. "},
            {"id": "mine", "images": [f"coco/{STEMS[2]}.jpg", f"coco/{STEMS[3]}.jpg"], "annotation": "Darker."},
        ],
    )
    first, second = read_pairs_jsonl(path, image_root=root)
    assert first == Phase2Item(
        pair_id="000000000009_000000000025",
        images=(str(root.absolute() / "coco" / f"{STEMS[0]}.jpg"), str(root.absolute() / "coco" / f"{STEMS[1]}.jpg")),
        image_names=(f"coco/{STEMS[0]}.jpg", f"coco/{STEMS[1]}.jpg"),
        context="A dog only in one.",
        origin=f"{path}:1",
    )
    assert (second.pair_id, second.context, second.origin) == ("mine", "Darker.", f"{path}:2")


def test_pairs_jsonl_bad_rows_are_all_reported(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "images")
    a, b, c = (f"{stem}.jpg" for stem in STEMS[:3])
    path = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"images": [a, b], "annotation": "fine"},
            {"images": [a, c], "annotation": ""},
            {"images": [a, b, c], "annotation": "three"},
            {"images": [a, c], "annotation": "x", "caption": "y"},
            {"images": [a, "missing.jpg"], "annotation": "x"},
            {"images": [a, "../outside.jpg"], "annotation": "x"},
            {"images": [a, b], "annotation": "again"},
            "{not json",
            {"images": [b, c]},
        ],
    )
    with pytest.raises(ReleaseValidationError) as error:
        read_pairs_jsonl(path, image_root=root)
    problems = problems_of(error)
    assert problems[0] == f"{path}:2: 'annotation' must be a non-empty string, got str ''"
    assert problems[1] == f"{path}:3: 'images' must hold exactly two file names, got 3"
    assert problems[2] == f"{path}:4: unexpected key(s) 'caption'"
    assert problems[3] == f"{path}:5: image 'missing.jpg' is not under image_root ({root.absolute() / 'missing.jpg'})"
    assert problems[4].startswith(f"{path}:6: image name '../outside.jpg' contains '..'")
    assert problems[5] == f"{path}:7: duplicate pair id '000000000009_000000000025' (first seen at {path}:1)"
    assert problems[6].startswith(f"{path}:8: not valid JSON")
    assert problems[7] == f"{path}:9: missing key(s) 'annotation'"
    assert len(problems) == 8


# ----- dispatch -----


def test_read_phase2_source_detects_each_kind(tmp_path: Path) -> None:
    coco = write_coco(tmp_path / "train2017")
    cgd = write_cgd(tmp_path / "cgd")
    assert read_phase2_source(cgd, coco_root=coco) == read_cgd(cgd, coco_root=coco)
    parquet = write_cauldron(tmp_path / "mimic_cgd" / "train" / "0000.parquet", cauldron_rows())
    assert read_phase2_source(parquet) == read_cauldron(parquet)
    assert read_phase2_source(tmp_path / "mimic_cgd") == read_cauldron(parquet)  # the Hub's train/ subfolder
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl", [{"images": [f"{STEMS[0]}.jpg", f"{STEMS[1]}.jpg"], "annotation": "x"}]
    )
    assert read_phase2_source(pairs, image_root=coco) == read_pairs_jsonl(pairs, image_root=coco)
    renamed = tmp_path / "pairs.txt"
    renamed.write_text(pairs.read_text())
    assert read_phase2_source(renamed, kind="jsonl", image_root=coco) != []


def test_read_phase2_source_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    coco = write_coco(tmp_path / "train2017")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"meta": {}, "rows": []}))
    images = write_cgd_images(tmp_path / "CGD.json")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    (tmp_path / "empty").mkdir()
    for path in (other, text, tmp_path / "empty"):
        with pytest.raises(ValueError, match=re.escape(str(path))):
            read_phase2_source(path, coco_root=coco)
    with pytest.raises(ValueError, match="CGD image file"):
        read_phase2_source(images)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"images": ["a.jpg", "b.jpg"], "annotation": "x"}])
    with pytest.raises(ValueError, match="needs image_root"):
        read_phase2_source(pairs)
    with pytest.raises(ValueError, match="coco_root do not apply"):
        read_phase2_source(pairs, coco_root=coco, image_root=coco)
    with pytest.raises(ValueError, match="kind must be one of"):
        read_phase2_source(pairs, kind="csv")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        read_phase2_source(tmp_path / "absent.jsonl", image_root=coco)


def test_sources_still_exports_the_readers_it_used_to_define() -> None:
    """Callers import these from ``builders.phase2.sources``; they now live in items/cgd/cauldron."""
    assert sources.Phase2Item is Phase2Item
    assert sources.read_cgd is read_cgd
    assert sources.read_cauldron is read_cauldron
    assert {"Phase2Item", "read_cgd", "read_cauldron", "read_pairs_jsonl", "read_phase2_source", "detect_kind"} <= set(
        sources.__all__
    )
