"""The Hub layout: built folders load back identically through plain ``datasets.load_dataset``."""

from __future__ import annotations

import copy

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import cadinst
import cadinst.hub
import cadqa
import cadqa.hub
from builders.release.hub import plan_publish, publish
from builders.release.validate import ReleaseValidationError
from tests.conftest import CADQA_OFFICIAL, cadinst_row, write_json_release


def card_yaml(folder) -> dict:
    return yaml.safe_load((folder / "README.md").read_text().split("---")[1])


@pytest.mark.parametrize("shape", ["json", "hub-parquet", "parquet"])
def test_cadinst_layout_round_trip_from_every_shape(shape, json_release, hub_parquet_release, tmp_path, cache):
    source = {"json": json_release, "hub-parquet": hub_parquet_release}.get(shape)
    if shape == "parquet":  # our own published layout is a source too
        source = cadinst.hub.build(json_release, tmp_path / "first", cache_dir=cache) and tmp_path / "first"
    out = tmp_path / "out"
    built = cadinst.hub.build(source, out, cache_dir=cache)
    assert set(built) == {"phase1", "phase2"}
    for config in ("phase1", "phase2"):
        loaded = datasets.load_dataset(str(out), config, split="train", cache_dir=str(tmp_path / "c2"))
        assert loaded.features == cadinst.FEATURES
        assert loaded.to_list() == built[config].to_list()
        streamed = datasets.load_dataset(str(out), config, split="train", streaming=True)
        assert list(streamed) == built[config].to_list()
    every = datasets.load_dataset(str(out), "all", split="train", cache_dir=str(tmp_path / "c2"))
    assert every.to_list() == built["phase1"].to_list() + built["phase2"].to_list()
    assert datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "c2")).num_rows == 9, (
        "'all' is the default config"
    )
    # and our layout is itself a source of cadinst.load
    assert cadinst.load(out, "phase2", cache_dir=cache).to_list() == built["phase2"].to_list()


def test_card_is_generated_from_the_features(json_release, tmp_path, cache):
    out = tmp_path / "out"
    cadinst.hub.build(json_release, out, repo_id="me/CaD-Inst", cache_dir=cache)
    meta = card_yaml(out)
    assert meta["license"] == "unknown", "files of unknown origin are not claimed to be the authors' MIT release"
    assert meta["size_categories"] == ["n<1K"]
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert configs["phase1"]["data_files"] == [{"split": "train", "path": "data/phase1/train-*.parquet"}]
    assert configs["all"]["default"] is True
    assert configs["all"]["data_files"][0]["path"] == ["data/phase1/train-*.parquet", "data/phase2/train-*.parquet"]
    infos = {i["config_name"]: i for i in meta["dataset_info"]}
    assert datasets.Features._from_yaml_list(infos["phase1"]["features"]) == cadinst.FEATURES
    assert infos["all"]["splits"][0]["num_examples"] == 9
    body = (out / "README.md").read_text()
    for needle in (
        'load_dataset("me/CaD-Inst", "phase1"',
        "Open Images v6",
        "Flickr30k",
        "ADE20K",
        "COCO train2017",
        "@article{lin2024comparison",
        "| rows | 6 |",
        "items on axis 'object types' | 6",
    ):
        assert needle in body
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert plots == sorted(
        f"{phase}_{kind}.png"
        for phase in ("phase1", "phase2")
        for kind in ("axis_counts", "opening_words", "section_lengths", "summary_length")
    )
    for plot in plots:
        assert f"](plots/{plot})" in body


def test_failed_build_leaves_no_output_folder(tmp_path, cache):
    bad = copy.deepcopy(cadinst_row(1))
    bad["conversations"] = bad["conversations"][:1]
    source = write_json_release(tmp_path / "bad", {1: [cadinst_row(0), bad]})
    out = tmp_path / "out"
    with pytest.raises(ReleaseValidationError, match=r"phase1_instruct_data_test\.json:2: "):
        cadinst.hub.build(source, out, cache_dir=cache)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_existing_output_is_kept_unless_overwrite(json_release, tmp_path, cache):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        cadinst.hub.build(json_release, out, cache_dir=cache)
    assert (out / "mine.txt").read_text() == "keep me"
    with pytest.raises(FileExistsError, match="not written by cadvi"):
        cadinst.hub.build(json_release, out, overwrite=True, cache_dir=cache)
    assert (out / "mine.txt").read_text() == "keep me", "a folder this tool did not write is never replaced"
    (out / "mine.txt").unlink()
    cadinst.hub.build(json_release, out, cache_dir=cache)  # an empty folder is fine
    (out / "README.md").write_text("stale")
    cadinst.hub.build(json_release, out, overwrite=True, cache_dir=cache)  # our own build is replaced
    assert (out / "README.md").read_text() != "stale" and (out / ".cadvi-output.json").is_file()


def test_official_cadqa_builds_and_loads_back_identically(tmp_path, cache):
    out = tmp_path / "cadqa"
    built = cadqa.hub.build(CADQA_OFFICIAL, out, cache_dir=cache)
    assert built.num_rows == 7520
    assert len({name for pair in built["image"] for name in pair}) == 14138
    assert all(
        p.startswith(cadqa.PAIR_PREFIX) and p[len(cadqa.PAIR_PREFIX) :] == q
        for p, q in zip(built["prompt"], built["question"], strict=True)
    )
    assert all(
        qid == "_".join(n.rsplit("/", 1)[1].split(".")[0] for n in pair)
        for qid, pair in zip(built["question_id"], built["image"], strict=True)
    )
    loaded = datasets.load_dataset(str(out), split="test", cache_dir=str(tmp_path / "c2"))
    assert loaded.features == cadqa.FEATURES
    assert loaded.to_list() == built.to_list()
    streamed = datasets.load_dataset(str(out), split="test", streaming=True)
    assert next(iter(streamed)) == built[0]
    assert "| distinct images | 14,138 |" in (out / "README.md").read_text()


def test_cadqa_from_the_original_hub_parquet(tmp_path, cache):
    rows = [
        dict(r, image=str(r["image"]), __null_dask_index__=i)
        for i, r in enumerate(
            cadqa.load(CADQA_OFFICIAL, cache_dir=cache)
            .select(range(20))
            .rename_column("prompt", "text")
            .remove_columns("question")
            .to_list()
        )
    ]
    folder = tmp_path / "hub" / "CaD_QA_eval"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "CaD_QA_7.5K.parquet")
    ds = cadqa.load(tmp_path / "hub", cache_dir=cache)
    assert cadqa.source_files(tmp_path / "hub")[0].shape == "hub-parquet"
    assert ds.to_list() == cadqa.load(CADQA_OFFICIAL, cache_dir=cache).select(range(20)).to_list()


def test_publish_dry_run_lists_only_the_layout(json_release, tmp_path, cache):
    out = tmp_path / "out"
    cadinst.hub.build(json_release, out, cache_dir=cache)
    (out / "stray.jpg").write_bytes(b"\xff\xd8")
    plan = publish(out, "me/CaD-Inst", revision="v1", private=True, dry_run=True)
    paths = [path for path, _ in plan.files]
    assert "README.md" in paths and "data/phase1/train-00000-of-00001.parquet" in paths
    assert "stray.jpg" not in paths and all(size > 0 for _, size in plan.files)
    assert (plan.repo_id, plan.revision, plan.private) == ("me/CaD-Inst", "v1", True)


def test_publish_refuses_image_bytes(json_release, image_root, tmp_path, cache):
    out = tmp_path / "out"
    cadinst.hub.build(json_release, out, cache_dir=cache)
    with_images = cadinst.load(json_release, "phase1", image_roots=image_root, cache_dir=cache)
    shard = next((out / "data" / "phase1").glob("*.parquet"))
    with_images.to_parquet(str(shard))
    with pytest.raises(ValueError, match="hold image data"):
        plan_publish(out, "me/x")
    with pytest.raises(FileNotFoundError, match="not a built Hub layout"):
        plan_publish(tmp_path, "me/x")
