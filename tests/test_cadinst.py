"""CaD-Inst from every release shape: same rows, images, streaming, cache and the LLaVA writer."""

from __future__ import annotations

import json
import shutil

import datasets
import pytest

import cadinst
from builders.release.images import ImageResolver, MissingImagesError, UnsafeImageNameError
from builders.release.validate import ReleaseValidationError
from tests.conftest import cadinst_row, write_json_release


def plain(dataset) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "images"} for row in dataset]


def expected_rows(phase_rows, phase, scores=False) -> list[dict]:
    return [
        {**row, "phase": phase, "clip_sim_score": (0.5 + i / 100) if scores else None}
        for i, row in enumerate(phase_rows[phase])
    ]


def test_json_arrays_give_typed_rows(json_release, phase_rows, cache):
    ds = cadinst.load(json_release, "phase1", cache_dir=cache)
    assert isinstance(ds, datasets.Dataset)
    assert ds.features == cadinst.FEATURES
    assert plain(ds) == expected_rows(phase_rows, 1)
    assert plain(cadinst.load(json_release, "phase2", cache_dir=cache)) == expected_rows(phase_rows, 2)


def test_original_hub_parquet_is_parsed_and_cleaned(hub_parquet_release, phase_rows, cache):
    ds = cadinst.load(hub_parquet_release, "phase1", cache_dir=cache)
    assert "__null_dask_index__" not in ds.column_names
    assert plain(ds) == expected_rows(phase_rows, 1, scores=True)
    phase2 = cadinst.load(hub_parquet_release, "phase2", cache_dir=cache)
    assert phase2["clip_sim_score"] == [None] * 3


def test_all_config_concatenates_the_phases(json_release, phase_rows, cache):
    ds = cadinst.load(json_release, "all", cache_dir=cache)
    assert ds["phase"] == [1] * 6 + [2] * 3
    assert plain(ds) == expected_rows(phase_rows, 1) + expected_rows(phase_rows, 2)


def test_shape_preference_and_override(tmp_path, phase_rows, cache):
    folder = tmp_path / "both"
    write_json_release(folder, phase_rows)
    from tests.conftest import write_hub_parquet_release

    write_hub_parquet_release(folder, phase_rows)
    assert cadinst.source_files(folder, "phase1")[0].shape == "hub-parquet"
    assert cadinst.source_files(folder, "phase1", shape="json")[0].shape == "json"
    with pytest.raises(FileNotFoundError, match="no CaD-Inst phase1 files"):
        cadinst.source_files(tmp_path, "phase1")
    with pytest.raises(ValueError, match="single file"):
        cadinst.source_files(next(folder.glob("json_files/*")), "all")


def test_single_file_source(json_release, phase_rows, cache):
    path = json_release / "json_files" / "phase2_instruct_data_test.json"
    assert plain(cadinst.load(path, "phase2", cache_dir=cache)) == expected_rows(phase_rows, 2)


def test_hub_repo_source_through_the_huggingface_cache(tmp_path, phase_rows, cache, monkeypatch):
    """A repo id goes through huggingface_hub.snapshot_download (offline: from a warm cache)."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub-cache" / "datasets--someone--CaD-Inst"
    write_json_release(repo / "snapshots" / commit, phase_rows)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    ds = cadinst.load("someone/CaD-Inst", "phase1", cache_dir=cache)
    assert plain(ds) == expected_rows(phase_rows, 1)
    assert len(cadinst.load("someone/CaD-Inst", "phase2", revision=commit, cache_dir=cache)) == 3


def test_cache_is_keyed_by_content(tmp_path, phase_rows, cache):
    folder = write_json_release(tmp_path / "r", phase_rows)
    first = cadinst.load(folder, "phase1", cache_dir=cache)
    assert len(first) == 6
    again = cadinst.load(folder, "phase1", cache_dir=cache)
    assert again.cache_files == first.cache_files, "unchanged content reuses the cache"

    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    assert cadinst.load(moved, "phase1", cache_dir=cache).cache_files == first.cache_files

    path = folder / "json_files" / "phase1_instruct_data_test.json"
    rows = json.loads(path.read_text())[:4]
    rows[0]["conversations"][1]["value"] = "Commonalities:\nchanged\n\nDifferences:\n1. changed"
    path.write_text(json.dumps(rows))
    changed = cadinst.load(folder, "phase1", cache_dir=cache)
    assert len(changed) == 4 and changed[0]["conversations"][1]["value"].endswith("1. changed")
    assert changed.cache_files != first.cache_files


def test_image_roots_are_tried_in_order(json_release, image_root, tmp_path, cache):
    second = tmp_path / "second-root"
    moved = image_root / "p1_0_b.jpg"
    second.mkdir()
    shutil.move(moved, second / "p1_0_b.jpg")
    ds = cadinst.load(json_release, "phase1", image_roots=[image_root, second], cache_dir=cache)
    first = ds[0]["images"]
    assert [image.size for image in first] == [(64, 64), (64, 64)]
    assert ds.features["images"] == datasets.List(datasets.Image())
    assert [
        json.loads(json.dumps(p))
        for p in ds.cast_column("images", datasets.List(datasets.Image(decode=False)))[0]["images"]
    ][1]["path"] == str(second / "p1_0_b.jpg")


def test_missing_images_error_with_count_and_first_names(json_release, image_root, cache):
    (image_root / "p1_2_a.jpg").unlink()
    (image_root / "p1_4_b.jpg").unlink()
    with pytest.raises(MissingImagesError) as caught:
        cadinst.load(json_release, "phase1", image_roots=image_root, cache_dir=cache)
    message = str(caught.value)
    assert "2 of 6 rows" in message and "'p1_2_a.jpg', 'p1_4_b.jpg'" in message and str(image_root) in message


def test_missing_images_dropped_on_request(json_release, image_root, cache, caplog):
    (image_root / "p1_2_a.jpg").unlink()
    ds = cadinst.load(json_release, "phase1", image_roots=[image_root], on_missing="drop", cache_dir=cache)
    assert ds["id"] == ["p1_0", "p1_1", "p1_3", "p1_4", "p1_5"]
    assert ds[2]["images"][0].size == (64, 64)
    assert "dropped 1 of 6 rows" in caplog.text


def test_streaming_with_images(json_release, image_root, phase_rows, cache):
    ds = cadinst.load(json_release, "all", image_roots=image_root, streaming=True, cache_dir=cache)
    assert isinstance(ds, datasets.IterableDataset)
    rows = list(ds)
    assert [r["id"] for r in rows] == [r["id"] for r in phase_rows[1] + phase_rows[2]]
    assert all(image.size == (64, 64) for row in rows for image in row["images"])


def test_streaming_drops_missing_images(json_release, image_root, cache):
    (image_root / "p2_1_b.jpg").unlink()
    ds = cadinst.load(
        json_release, "phase2", image_roots=image_root, on_missing="drop", streaming=True, cache_dir=cache
    )
    assert [row["id"] for row in ds] == ["p2_0", "p2_2"]


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.jpg", "sub/../../outside.jpg", "C:\\x.jpg", "..\\x.jpg"])
def test_names_leaving_the_root_are_rejected(name, tmp_path, image_root, cache):
    (tmp_path / "outside.jpg").write_bytes((image_root / "p1_0_a.jpg").read_bytes())
    row = cadinst_row(0)
    row["image"] = [name, "p1_0_b.jpg"]
    folder = write_json_release(tmp_path / "evil", {1: [row]})
    # refused when the rows are read (file:row), before any image is looked up
    with pytest.raises(
        ReleaseValidationError, match=r"phase1_instruct_data_test\.json:1: image name .*(absolute|'\.\.')"
    ):
        cadinst.load(folder, "phase1", image_roots=image_root, cache_dir=cache)
    with pytest.raises(UnsafeImageNameError, match=r"absolute|'\.\.'"):  # and by the resolver itself
        ImageResolver(image_root).resolve(name)


def test_to_llava_json_round_trip(json_release, phase_rows, tmp_path, cache):
    ds = cadinst.load(json_release, "all", cache_dir=cache)
    path = cadinst.to_llava_json(ds, tmp_path / "out" / "train.json")
    written = json.loads(path.read_text())
    assert written == phase_rows[1] + phase_rows[2]
    again = cadinst.load(path, "phase1", cache_dir=cache)
    assert again["conversations"] == ds["conversations"]
