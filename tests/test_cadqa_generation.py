"""CaD-QA generation for real: SVIT/VG captions -> stage 1 (summary) -> stage 2 (Q&A) -> export, build, lmms-eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest

from builders.cadqa_sources import read_svit_captions
from builders.cadqa_task import QAItem, QASettings, QATask, load_examples, official_row, parse_qa, pick, qa_problem
from builders.generate import run_task
from builders.llm.base import Result, Sampling, make_backend
from builders.pair_file import PairRecord
from builders.phase1 import Phase1Settings, run_phase1
from builders.runs import all_records
from cadvi.demo import draw_stand_in_images, stand_in_model
from cadvi.demo_model import build_parrot
from tests.conftest import CADQA_OFFICIAL, shared_file
from tests.llm_fixtures import running_server
from tests.recipe_fixtures import killed_and_rerun

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = [
    "A man in a red shirt rides a bicycle next to a white car parked on the street near a shop.",
    "A woman walks a brown dog on a street past a parked white car and a small shop.",
    "Two children play with a ball on the grass in a park with tall trees and a bench.",
    "A family sits on a bench in a park with trees, a ball lying on the grass nearby.",
    "A kitchen with a bowl of apples on the table, a kettle on the stove and a window.",
    "A table in a kitchen holds a bowl of oranges, a cup and a kettle beside the window.",
]


def answer(text: str, finish_reason: str = "stop") -> Result:
    return Result("k", text, prompt_tokens=10, completion_tokens=len(text.split()), finish_reason=finish_reason)


def test_qa_parsing_and_validation():
    text = "Q1: What differs between the two images?\nA1: Image 1 shows a cat, while Image 2 shows a dog.\n"
    text += "Q2: Is it sunny\nA2: Yes.\nQ3: What color is the car in Image 1?\nA3: The car is red."
    pairs = parse_qa(text)
    assert [q for q, _ in pairs] == [
        "What differs between the two images?",
        "Is it sunny",
        "What color is the car in Image 1?",
    ]
    settings = QASettings()
    assert qa_problem(*pairs[0], settings) is None
    assert "does not end with '?'" in qa_problem(*pairs[1], settings)
    assert "names neither image" in qa_problem(*pairs[2], settings)
    structured = json.dumps(
        {"qa": [{"question": "Are both images outdoors?", "answer": "Yes, both images are outdoors."}]}
    )
    assert parse_qa(structured) == [("Are both images outdoors?", "Yes, both images are outdoors.")]
    task = QATask()
    item = QAItem("a_b", ("VG_100K/1.jpg", "VG_100K_2/2.jpg"), ("c1", "c2"), "Commonalities: ...")
    outcome = task.format_output(item, answer(text))
    assert [qa["question"] for qa in outcome.fields["qa"]] == ["What differs between the two images?"]
    assert "none of 1 Q&As" in task.format_output(item, answer("Q1: Why?\nA1: No.")).reason
    assert QATask(QASettings(structured=True)).sampling.json_schema["required"] == ["qa"]
    # One Q&A per pair, drawn with a seed derived from the pair: stable, and it varies over pairs.
    record = {
        "pair_id": "a_b",
        "images": list(item.images),
        "qa": [{"question": f"Q{i}?", "answer": "Image 1."} for i in range(5)],
    }
    assert (
        pick(record) == pick(dict(record))
        and len({pick({**record, "pair_id": f"p{i}"})["question"] for i in range(20)}) > 1
    )
    row = official_row(record)
    assert row["question_id"] == "1_2" and row["text"].startswith("Image 1: <image>\nImage 2: <image>\nQ")


@pytest.fixture(scope="session")
def svit(tmp_path_factory) -> Path:
    """SVIT detail_description.json + Visual Genome image_data.json in their real shapes, and VG images."""
    root = tmp_path_factory.mktemp("svit")
    detail = [
        {
            "image_id": 100 + i,
            "conversations": [{"content": [{"from": "user", "value": "Describe."}, {"from": "gpt", "value": text}]}],
        }
        for i, text in enumerate(CAPTIONS)
    ]
    folders = ["VG_100K", "VG_100K_2"]
    images = [
        {
            "image_id": 100 + i,
            "url": f"https://cs.stanford.edu/people/rak248/{folders[i % 2]}/{100 + i}.jpg",
            "width": 64,
            "height": 64,
            "coco_id": None,
            "flickr_id": None,
        }
        for i in range(len(CAPTIONS))
    ]
    (root / "detail_description.json").write_text(json.dumps(detail))
    (root / "image_data.json").write_text(json.dumps(images))
    draw_stand_in_images([image["url"].split("rak248/")[1] for image in images], root / "vg")
    return root


def qa_stand_in(path: Path, items: list[QAItem]) -> Path:
    """A tiny chat model fitted for seconds to answer these items' prompts with the shipped in-context examples'
    Q&As (as the demo's phase-1 stand-in is fitted on its pairs' prompts): it learns the Q<n>:/A<n>: form."""
    task = QATask()
    targets = [
        "\n".join(f"Q{i}: {qa['question']}\nA{i}: {qa['answer']}" for i, qa in enumerate(example["qa"], 1))
        for example in load_examples(2)
    ]
    examples = [(task.format_input(item)[0]["content"], targets[i % len(targets)]) for i, item in enumerate(items)]
    return build_parrot(path, examples, steps=300)


def example_items() -> list[QAItem]:
    """The shipped in-context examples' own pairs as stage-2 items (distinct prompts, so distinct keys)."""
    return [
        QAItem(f"p{i}_q{i}", (f"p{i}.jpg", f"q{i}.jpg"), (e["caption_1"], e["caption_2"]), e["summary"])
        for i, e in enumerate(load_examples(2))
    ]


@pytest.mark.slow
def test_both_stages_export_build_load_and_lmms_eval(svit, tmp_path):
    import cadqa.hub
    from builders.export import export_cadqa

    captions = read_svit_captions(svit / "detail_description.json", svit / "image_data.json")
    pairs = [
        PairRecord(PairRecord.make_id(a.image, b.image), (a.image, b.image), (a.caption, b.caption))
        for a, b in zip(captions[0::2], captions[1::2], strict=True)
    ]
    summary_model = stand_in_model(tmp_path / "parrot", [pair.captions for pair in pairs])
    with make_backend("transformers", str(summary_model)) as backend:
        stage1 = run_phase1(
            pairs, backend, tmp_path / "stage1", Phase1Settings(sampling=Sampling(256, 0.0, seed=0)), progress=False
        )
    assert stage1.valid >= 1
    from builders.cadqa_task import qa_items

    items = qa_items(pairs, list(all_records(tmp_path / "stage1")))
    settings = QASettings(sampling=Sampling(max_tokens=300, temperature=0.0, seed=0))
    qa_parrot = qa_stand_in(tmp_path / "qa-parrot", items)
    with make_backend("transformers", str(qa_parrot)) as backend:
        stage2 = run_task(QATask(settings), items, backend, tmp_path / "stage2", progress=False)
    assert stage2.valid == len(items) and stage2.valid + stage2.rejected == stage2.attempted
    rows = export_cadqa(tmp_path / "stage2", tmp_path / "release", official=shared_file(CADQA_OFFICIAL))
    lines = (tmp_path / "release" / "json_files" / "CaD_QA_eval.jsonl").read_text().splitlines()
    assert len(lines) == rows == len(items)
    first = json.loads(lines[0])
    assert set(first) == {"image", "text", "answer", "question_id"} and first["question_id"] == "100_101"
    table = (tmp_path / "release" / "statistics.md").read_text()
    assert "| questions |" in table and "7,520" in table
    scopes = json.loads((tmp_path / "release" / "question_scopes.json").read_text())
    assert set(scopes) == {json.loads(line)["question_id"] for line in lines} and set(scopes.values()) <= {
        "one",
        "both",
    }
    built = cadqa.hub.build(
        tmp_path / "release", tmp_path / "hub", repo_id="me/CaD-QA-regenerated", cache_dir=tmp_path / "c"
    )
    assert len(built) == rows
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "generated with cad-vi" in card and f"| questions | ours {rows} · official 7,520 |" in card
    assert "| single-image questions | ours " in card and "official 2,916 (38.8%) |" in card
    loaded = datasets.load_dataset(str(tmp_path / "hub"), split="test", cache_dir=str(tmp_path / "c2"))
    assert loaded.num_rows == rows

    # lmms-eval --tasks cadqa on the regenerated file (its question-file override), judged by a real server.
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    (annotations / "CaD_QA_eval.jsonl").write_text("\n".join(lines) + "\n")
    with running_server(qa_parrot, tmp_path / "home") as server:
        results = run_cadqa_task(annotations, svit / "vg", server, tmp_path)
    assert results["n-samples"]["cadqa"]["effective"] == rows


def run_cadqa_task(annotations: Path, images: Path, server, tmp_path: Path) -> dict:
    from eval_tasks.registration import tasks_dir
    from tests.eval_fixtures import build_tiny_llava

    model = build_tiny_llava(tmp_path / "answerer")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CADVI_", "CADQA_", "OPENAI_"))}
    env |= {
        "CADVI_EVAL_DATA_DIR": str(annotations),
        "CADVI_CADQA_IMAGE_ROOT": str(images),
        "API_TYPE": "openai",
        "OPENAI_API_URL": server.base_url,
        "OPENAI_API_KEY": "x",
        "CADQA_JUDGE_MODEL": server.model_id,
        "CADQA_JUDGE_NUM_RETRIES": "1",
        "CADQA_JUDGE_RETRY_DELAY": "0",
        "CADQA_JUDGE_RUN_DIR": str(tmp_path / "judge-runs"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "datasets-cache"),
    }
    out = tmp_path / "results"
    command = [str(Path(sys.executable).with_name("lmms-eval")), "--model", "llava_hf"]
    command += ["--model_args", f"pretrained={model},device=cpu,device_map=cpu", "--gen_kwargs", "max_new_tokens=8"]
    command += ["--tasks", "cadqa", "--include_path", tasks_dir(), "--output_path", str(out)]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    found = sorted(out.rglob("*_results.json"))
    assert run.returncode == 0 and found, (run.stdout + run.stderr)[-4000:]
    return json.loads(found[-1].read_text())


def test_stage2_over_http_against_transformers_serve(tmp_path):
    items = example_items()
    qa_parrot = qa_stand_in(tmp_path / "qa-parrot", items)
    settings = QASettings(sampling=Sampling(300, 0.0, seed=0))
    with (
        running_server(qa_parrot, tmp_path / "home") as server,
        make_backend("openai", server.model_id, base_url=server.base_url, max_concurrency=3) as backend,
    ):
        summary = run_task(QATask(settings), items, backend, tmp_path / "run", progress=False)
    assert summary.complete and summary.valid == len(items) == 2
    done = Counter(record["pair_id"] for record in all_records(tmp_path / "run"))
    assert set(done.values()) == {1}


@pytest.mark.slow
def test_cadvi_generate_cadqa_killed_and_rerun_does_every_pair_once(tmp_path):
    from builders.cadqa_task import qa_items
    from builders.pair_file import write_pairs

    colours = ["red", "blue", "green", "white", "black", "yellow", "brown", "grey", "pink", "orange", "purple", "tan"]
    pairs = [
        PairRecord(
            f"{i}_{i + 100}",
            (f"VG_100K/{i}.jpg", f"VG_100K/{i + 100}.jpg"),
            (f"A {c} car near a shop.", f"A {c} bus on a road."),
        )
        for i, c in enumerate(colours)
    ]
    write_pairs(pairs, tmp_path / "pairs.jsonl")
    summary_model = stand_in_model(tmp_path / "parrot", [pair.captions for pair in pairs])
    with make_backend("transformers", str(summary_model)) as backend:
        run_phase1(
            pairs, backend, tmp_path / "stage1", Phase1Settings(sampling=Sampling(256, 0.0, seed=0)), progress=False
        )
    items = qa_items(pairs, list(all_records(tmp_path / "stage1")))
    assert len(items) >= 6
    qa_parrot = qa_stand_in(tmp_path / "qa-parrot", items)
    command = [sys.executable, "-m", "cadvi", "generate", "cadqa", "--pairs", str(tmp_path / "pairs.jsonl")]
    command += ["--summaries", str(tmp_path / "stage1"), "--out", str(tmp_path / "run"), "--model", str(qa_parrot)]
    command += ["--max-tokens", "300", "--temperature", "0", "--batch-size", "1"]
    done, rejected = killed_and_rerun(command, tmp_path / "run")
    assert done | {pair for pair, count in rejected.items() if count >= 3} == {item.pair_id for item in items}
