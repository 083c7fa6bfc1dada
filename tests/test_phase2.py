"""Phase 2 for real: a tiny LLaVA (trained for seconds by the recipe) refines CGD-format annotations from the images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from builders.llm.base import Result, Sampling, make_backend
from builders.phase2.sources import Phase2Item, read_cgd
from builders.phase2.task import Phase2Settings, Phase2Task, run_phase2
from builders.runs import all_records
from cadvi.demo import CADINST_SAMPLE, draw_stand_in_images
from cadvi.demo_loop import CGD_SAMPLE, tiny_recipe, tiny_start
from tests.llm_fixtures import running_server
from tests.recipe_fixtures import killed_and_rerun

SUMMARY = (
    "Commonalities:\nBoth images are photographs taken in daylight.\n\nDifferences:\n"
    "1. Food: Image 1 shows a lunch box with vegetables, while Image 2 shows a giraffe eating leaves.\n"
    "2. Setting: Image 1 is indoors on a table; Image 2 is outdoors among trees.\n"
    "3. Counting the objects: Image 1 has four boxes and Image 2 has one giraffe standing near two trees."
)
SAMPLING = {"max_tokens": 400, "temperature": 0.2, "top_p": 1.0, "seed": 0}


@pytest.fixture(scope="session")
def coco(tmp_path_factory) -> Path:
    """Stand-in COCO train2017 images for the bundled CGD sample (and the CaD-Inst sample's images)."""
    folder = tmp_path_factory.mktemp("coco") / "train2017"
    records = json.loads(CGD_SAMPLE.read_text())["data"].values()
    names = [image.removeprefix("CGD_IMG_") + ".jpg" for record in records for image in record["image_ids"]]
    release_rows = [
        row for file in (CADINST_SAMPLE / "json_files").glob("*.json") for row in json.loads(file.read_text())
    ]
    draw_stand_in_images([*names, *(name for row in release_rows for name in row["image"])], folder)
    return folder


@pytest.fixture(scope="session")
def v1(tmp_path_factory, coco) -> Path:
    """CaD-LLaVA V1 as the loop makes it, tiny: the recipe on the bundled CaD-Inst sample (~15 s), merged."""
    from cadvi.commands.train import register_cadinst
    from eval_tasks.recipe.config import recipe_from_mapping
    from eval_tasks.recipe.merge import merge_adapter
    from eval_tasks.recipe.train import train

    root = tmp_path_factory.mktemp("v1")
    register_cadinst()
    raw = tiny_recipe(tiny_start(root / "start", CADINST_SAMPLE))
    raw["data"] = {
        "sources": [{"kind": "cadinst", "path": str(CADINST_SAMPLE), "config": "all"}],
        "image_roots": [str(coco)],
    }
    raw["training"]["output_dir"] = str(root / "adapter")
    run = train(recipe_from_mapping(raw))
    return merge_adapter(run.output, root / "model", dtype="float32")


@pytest.fixture(scope="session")
def items(coco) -> list[Phase2Item]:
    return read_cgd(CGD_SAMPLE, coco_root=coco)


def test_the_request_is_both_images_then_the_quoted_annotation(items):
    item = items[0]
    (message,) = Phase2Task().format_input(item)
    parts = message["content"]
    assert [part["type"] for part in parts] == ["text", "image_url", "text", "image_url", "text"]
    assert parts[0]["text"] == "Image 1: " and parts[2]["text"] == "\nImage 2: "
    assert [parts[1]["image_url"]["url"], parts[3]["image_url"]["url"]] == list(item.images)
    assert parts[4]["text"].startswith(f'\n"{item.context}"\nBased on the two images and the context, summarize')
    (scratch,) = Phase2Task(Phase2Settings(mode="scratch")).format_input(item)
    assert item.context not in json.dumps(scratch) and "Summarize the commonalities" in scratch["content"][-1]["text"]
    # The annotation is part of the key in refine mode only; the images always are (by content).
    assert Phase2Task().key(item, "m") != Phase2Task().key(Phase2Item(**{**item.__dict__, "context": "x"}), "m")


def answer(text: str, finish_reason: str = "stop") -> Result:
    return Result("k", text, prompt_tokens=10, completion_tokens=len(text.split()), finish_reason=finish_reason)


def test_free_form_labels_are_kept_beside_their_axes(items):
    outcome = Phase2Task().format_output(items[0], answer(SUMMARY))
    differences = outcome.fields["summary"]["differences"]
    assert [(d["label"], d["axis"]) for d in differences] == [
        ("Food", "other"),
        ("Setting", "object locations"),
        ("Counting the objects", "counting the objects"),
    ]
    truncated = Phase2Task().format_output(items[0], answer(SUMMARY, "length"))
    assert "truncated" in truncated.reason
    one_image = Phase2Task().format_output(items[0], answer(SUMMARY.replace("Image 2", "it")))
    assert "both images" in one_image.reason


def test_phase2_regenerates_the_phase2_config_in_process(v1, items, tmp_path):
    import cadinst
    from builders.export import export_phase2

    # Scratch mode: the seconds-trained V1 parrots phase-1 answers; it never saw the refine prompt.
    settings = Phase2Settings(mode="scratch", sampling=Sampling(**SAMPLING))
    with make_backend("transformers", str(v1)) as backend:
        summary = run_phase2(items, backend, tmp_path / "run", settings, progress=False)
        refine = run_phase2(
            items, backend, tmp_path / "refine", Phase2Settings(sampling=Sampling(**SAMPLING)), progress=False
        )
    assert refine.valid + refine.rejected == refine.attempted and refine.complete
    assert summary.valid + summary.rejected == summary.attempted and summary.complete
    assert summary.valid >= 1, list(all_records(tmp_path / "run", "rejects"))[:2]
    records = list(all_records(tmp_path / "run"))
    assert all(record["summary"]["differences"] and record["mode"] == "scratch" for record in records)
    rows = export_phase2(tmp_path / "run", tmp_path / "release")
    loaded = cadinst.load(tmp_path / "release", "phase2", cache_dir=tmp_path / "cache")
    assert len(loaded) == rows == summary.valid
    assert set(loaded["id"]) <= {item.pair_id for item in items}
    assert loaded[0]["image"][0].endswith(".jpg") and loaded[0]["conversations"][1]["value"].startswith("Commonalities")
    provenance = json.loads((tmp_path / "release" / "cadvi_provenance.json").read_text())
    assert provenance["phases"]["phase2"]["mode"] == "scratch" and provenance["phases"]["phase2"]["rows"] == rows
    # --add: phase 2 beside an earlier phase-1 export, one folder for config "all"
    from builders.export import export_phase1

    phase1_rows = export_phase1(Path(__file__).parent / "data" / "phase1-run-952c9aa" / "run", tmp_path / "both")
    assert export_phase2(tmp_path / "run", tmp_path / "both", add=True) == rows
    both = cadinst.load(tmp_path / "both", "all", cache_dir=tmp_path / "cache")
    assert len(both) == phase1_rows + rows
    phases = json.loads((tmp_path / "both" / "cadvi_provenance.json").read_text())["phases"]
    assert set(phases) == {"phase1", "phase2"}


def test_phase2_over_http_against_transformers_serve(v1, items, tmp_path):
    settings = Phase2Settings(mode="scratch", sampling=Sampling(**SAMPLING))
    with running_server(v1, tmp_path / "home") as server:
        options = {"base_url": server.base_url, "max_concurrency": 4, "max_image_side": 32}
        with make_backend("openai", server.model_id, **options) as backend:
            summary = run_phase2(items, backend, tmp_path / "run", settings, progress=False)
    assert summary.complete and summary.valid + summary.rejected == summary.attempted
    assert summary.valid >= 1
    assert not [r for r in all_records(tmp_path / "run", "rejects") if "Connection" in r["reason"]]


@pytest.mark.slow
def test_cadvi_generate_phase2_killed_and_rerun_does_every_pair_once(v1, coco, tmp_path):
    many = tmp_path / "CGD_instructions.json"  # 12 pairs: the bundled sample's, each image pair shifted
    data = json.loads(CGD_SAMPLE.read_text())
    names = sorted({image for record in data["data"].values() for image in record["image_ids"]})
    instructions = {}
    for index in range(12):
        first, second = names[index % len(names)], names[(index + 1 + index // len(names)) % len(names)]
        instructions[f"CGD_INS_{index:05d}"] = {
            "instruction": "What differs?",
            "answer": f"Image 1 and Image 2 differ in detail {index}.",
            "image_ids": [first, second],
            "rel_ins_ids": [],
        }
    many.write_text(json.dumps({"meta": {}, "data": instructions}))
    command = [sys.executable, "-m", "cadvi", "generate", "phase2", "--source", str(many), "--coco-root", str(coco)]
    command += ["--out", str(tmp_path / "run"), "--model", str(v1), "--max-tokens", "400", "--batch-size", "1"]
    command += ["--mode", "scratch"]
    done, rejected = killed_and_rerun(command, tmp_path / "run", poll=0.05)
    pairs = {item.pair_id for item in read_cgd(many, coco_root=coco)}
    assert done | {pair for pair, count in rejected.items() if count >= 3} == pairs
