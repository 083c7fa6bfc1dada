"""The ``cadqa`` lmms-eval task: its question file, docs, judge-based scoring, and a real lmms-eval run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from builders.judge import JUDGE_ENV, JUDGE_TEMPLATE, Failed, LmmsEvalJudgeSettings
from builders.release.origin import HUB_REPO, HUB_REVISION
from cadvi.demo import draw_stand_in_images
from eval_tasks import data, scoring
from eval_tasks.cadqa import utils
from prompts import load_template
from tests import eval_fixtures
from tests.conftest import CADQA_OFFICIAL

tiny_llava = eval_fixtures.tiny_llava  # a tiny random LLaVA (tests/eval_fixtures.py)

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / "eval_tasks"


def official_lines(n: int) -> list[str]:
    return CADQA_OFFICIAL.read_text().splitlines()[:n]


@pytest.fixture
def subset(tmp_path: Path) -> tuple[Path, Path]:
    """The first 4 official rows as an annotation folder, and an image root with stand-in VG images."""
    lines = official_lines(4)
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    (annotations / "CaD_QA_eval.jsonl").write_text("\n".join(lines) + "\n")
    images = tmp_path / "vg"
    draw_stand_in_images((name for line in lines for name in json.loads(line)["image"]), images)
    return annotations, images


def test_official_file_loads_through_the_task_loader(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ANNOTATION_DIR_ENV, str(CADQA_OFFICIAL.parent))
    assert utils.question_file() == CADQA_OFFICIAL
    docs = utils.load_docs(with_images=False, cache_dir=tmp_path / "cache")
    assert len(docs) == 7520 and len(set(docs["question_id"])) == 7520
    first = docs[0]
    assert first["question_id"] == "2406825_2550" and first["image"] == ["VG_100K_2/2406825.jpg", "VG_100K_2/2550.jpg"]
    assert first["text"] == "Image 1: <image>\nImage 2: <image>\nWhat colors dominate each image?"
    assert first["question"] == "What colors dominate each image?"
    assert first["answer"].startswith("Image 1 is dominated by shades of white")


def test_default_source_is_the_pinned_hub_file(monkeypatch, tmp_path):
    """Offline, from the Hugging Face cache: the pinned revision's file is used and its sha256 checked."""
    import huggingface_hub.constants

    monkeypatch.delenv(data.ANNOTATION_DIR_ENV, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(data.BenchmarkDataError, match=data.ANNOTATION_DIR_ENV):
        utils.question_file()  # offline and not cached: says how to point at a local copy
    snapshot = tmp_path / "hub" / f"datasets--{HUB_REPO.replace('/', '--')}" / "snapshots" / HUB_REVISION
    (snapshot / "json_files").mkdir(parents=True)
    shutil.copy(CADQA_OFFICIAL, snapshot / utils.HUB_FILE)
    assert utils.question_file().resolve() == (snapshot / utils.HUB_FILE).resolve()
    (snapshot / utils.HUB_FILE).write_text("\n".join(official_lines(3)) + "\n")
    with pytest.raises(data.BenchmarkDataError, match="sha256 mismatch"):
        utils.question_file()


def test_docs_images_and_a_missing_image(subset, tmp_path):
    annotations, images = subset
    docs = utils.load_docs(annotations=annotations / "CaD_QA_eval.jsonl", root=images, cache_dir=tmp_path / "c")
    doc = docs[0]
    visuals = utils.doc_to_visual(doc)
    assert len(visuals) == 2 and all(image.mode == "RGB" for image in visuals)
    assert doc["image_paths"][0] == str(images / "VG_100K_2" / "2406825.jpg")
    assert utils.doc_to_text(doc) == doc["text"] and doc["text"].count("<image>") == 2
    (images / "VG_100K_2" / "2550.jpg").unlink()
    with pytest.raises(data.MissingBenchmarkImageError) as error:
        utils.load_docs(annotations=annotations / "CaD_QA_eval.jsonl", root=images, cache_dir=tmp_path / "c")
    message = str(error.value)
    assert message.startswith("cadqa:") and "'VG_100K_2/2550.jpg'" in message and str(images) in message


class ScriptedAsk:
    model = "scripted-judge"

    def __init__(self, answers: dict[str, list[str | Failed]]) -> None:
        self.answers = answers  # prediction -> answers, one per attempt

    def __call__(self, prompts: Sequence[str]) -> list[str | Failed]:
        out = []
        for prompt in prompts:
            prediction = prompt.split("Predicted answer: ", 1)[1].split("\n", 1)[0]
            out.append(self.answers[prediction].pop(0))
        return out


def test_process_results_and_aggregations_hand_computed(monkeypatch):
    ask = ScriptedAsk(
        {
            "p0": ["5"],
            "p1": ["Rating: 3"],
            "p2": ["no idea", "still no idea"],  # invalid after the retry: excluded, not a 0
            "p3": ["Sure.", "1/5"],  # valid on the retry
            "p4": [Failed("APITimeoutError: timed out"), "0"],
        }
    )
    monkeypatch.setattr(utils, "_judge", lambda: (ask, LmmsEvalJudgeSettings(model="scripted-judge")))
    docs = [
        {"question_id": f"{i}_{i + 100}", "question": f"What differs in pair {i}?", "answer": f"Reference {i}."}
        for i in range(5)
    ]
    results = [utils.process_results(doc, [f"p{i}"]) for i, doc in enumerate(docs)]
    assert all(set(result) == set(utils.METRICS) for result in results)
    records = [result["judge_rating"] for result in results]
    assert [r["rating"] for r in records] == [5, 3, None, 1, 0]
    assert [r["attempts"] for r in records] == [1, 1, 2, 2, 2]
    assert records[2]["raw"] == ["no idea", "still no idea"] and records[4]["errors"] == ["APITimeoutError: timed out"]
    assert records[0]["template_sha256"] == load_template(JUDGE_TEMPLATE).sha256
    assert records[0]["question"] == "What differs in pair 0?" and records[0]["reference"] == "Reference 0."

    rating = utils.judge_rating([r["judge_rating"] for r in results])
    # Hand-computed: (5 + 3 + 1 + 0) / 4 = 2.25 over the 4 valid ratings (scored 0 it would be 9/5 = 1.8).
    assert rating["value"] == pytest.approx(2.25)
    shared = scoring.mean_with_ci([5, 3, 1, 0])
    assert (rating["ci_low"], rating["ci_high"]) == pytest.approx((shared["ci_low"], shared["ci_high"]))
    assert rating["ci_low"] <= 2.25 <= rating["ci_high"]
    assert (rating["n"], rating["valid"], rating["invalid"]) == (5, 4, 1)
    assert utils.judge_histogram([r["judge_histogram"] for r in results]) == {
        "0": 1,
        "1": 1,
        "2": 0,
        "3": 1,
        "4": 0,
        "5": 1,
    }
    assert utils.judge_invalid([r["judge_invalid"] for r in results]) == 1
    nothing = utils.judge_rating([records[2]])
    assert nothing["value"] is None and nothing["ci_low"] is None and nothing["invalid"] == 1


def test_task_yaml_follows_the_closed_tasks():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    ours = yaml.load((TASKS_DIR / "cadqa" / "cadqa.yaml").read_text(), Loader=Loader)
    assert ours["task"] == "cadqa" and ours["output_type"] == "generate_until"
    assert ours["generation_kwargs"]["temperature"] == 0 and ours["generation_kwargs"]["do_sample"] is False
    assert [m["metric"] for m in ours["metric_list"]] == list(utils.METRICS)
    closed = yaml.load((TASKS_DIR / "bison" / "bison.yaml").read_text(), Loader=Loader)
    for key in ("tag", "dataset_path", "dataset_kwargs", "test_split", "doc_to_visual", "doc_to_text"):
        assert ours[key] == closed[key], key


def test_lmms_eval_indexes_and_builds_the_task(subset, monkeypatch, tmp_path):
    from lmms_eval.tasks import TaskManager, get_task_dict

    from eval_tasks import registration

    annotations, images = subset
    monkeypatch.setenv(data.ANNOTATION_DIR_ENV, str(annotations))
    monkeypatch.setenv("CADVI_CADQA_IMAGE_ROOT", str(images))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    manager = TaskManager(include_path=registration.tasks_dir(), include_defaults=False)
    assert "cadqa" in manager.all_subtasks and "cadqa" in manager.task_index["cadvi"]["task"]
    task = get_task_dict(["cadqa"], manager)["cadqa"]
    docs = list(task.test_docs())
    assert [doc["question_id"] for doc in docs] == [json.loads(line)["question_id"] for line in official_lines(4)]
    assert task.config.generation_kwargs["do_sample"] is False
    assert len(task.doc_to_visual(docs[0])) == 2 and task.doc_to_text(docs[0]) == docs[0]["text"]


# ----- the real lmms-eval CLI, judged by a real `transformers serve` (the tiny model writes gibberish) -----


@pytest.mark.slow
def test_lmms_eval_cli_counts_gibberish_ratings_as_invalid(shared_server, tiny_llava, subset, tmp_path):
    """The tiny LLaVA answers from the two images, the tiny chat model judges: every rating is gibberish."""
    annotations, images = subset
    # Configured the lmms-eval way: partly in the environment, partly in .env in the working directory
    # (lmms-eval loads it when its judge package is imported; the environment wins over it).
    judge_variables = ("API_TYPE", "OPENAI_API_URL", "OPENAI_API_KEY", *JUDGE_ENV.values())
    env = {
        key: value for key, value in os.environ.items() if key not in judge_variables and not key.startswith("CADVI_")
    }
    env |= {
        "PYTHONPATH": str(ROOT),
        data.ANNOTATION_DIR_ENV: str(annotations),
        "CADVI_CADQA_IMAGE_ROOT": str(images),
        "API_TYPE": "openai",
        "CADQA_JUDGE_NUM_RETRIES": "1",
        "CADQA_JUDGE_RETRY_DELAY": "0",
        "CADQA_JUDGE_TIMEOUT": "30",
        "HF_DATASETS_CACHE": str(tmp_path / "datasets-cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    (tmp_path / ".env").write_text(
        f"OPENAI_API_URL={shared_server.base_url}\nOPENAI_API_KEY=x\nCADQA_JUDGE_MODEL={shared_server.model_id}\n"
    )
    out = tmp_path / "results"
    command = [str(Path(sys.executable).with_name("lmms-eval")), "--model", "llava_hf"]
    command += ["--model_args", f"pretrained={tiny_llava},device=cpu,device_map=cpu"]
    command += ["--gen_kwargs", "max_new_tokens=8", "--tasks", "cadqa", "--limit", "3"]
    command += ["--include_path", str(TASKS_DIR), "--output_path", str(out), "--log_samples"]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    console = run.stdout + run.stderr
    results_files = sorted(out.rglob("*_results.json"))
    assert run.returncode == 0 and results_files, console[-6000:]
    assert "in generating" not in console  # llava_hf logs a failed generation and answers "" instead

    results = json.loads(results_files[-1].read_text())
    cadqa = results["results"]["cadqa"]
    assert results["n-samples"]["cadqa"]["effective"] == 3
    assert cadqa["judge_invalid,none"] == 3  # counted as invalid ...
    assert cadqa["judge_histogram,none"] == {str(rating): 0 for rating in range(6)}  # ... not as 0
    rating = cadqa["judge_rating,none"]
    assert rating["value"] is None and rating["ci_low"] is None
    assert (rating["n"], rating["valid"], rating["invalid"]) == (3, 0, 3)

    (samples_file,) = out.rglob("*_samples_cadqa.jsonl")
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    assert len(samples) == 3
    for sample in samples:
        record = sample["judge_rating"]
        assert record["rating"] is None and record["attempts"] == 2 and all(record["raw"]) and not record["errors"]
        assert record["prediction"] == sample["filtered_resps"] and record["judge_model"] == shared_server.model_id
        assert record["reference"] == sample["target"]
        assert record["template_sha256"] == load_template(JUDGE_TEMPLATE).sha256
    assert "excluded from the mean, not scored 0" in run.stderr


def test_a_judge_outage_is_not_judged_rather_than_invalid(monkeypatch):
    down = Failed("APIConnectionError: Connection refused", transport=True)
    ask = ScriptedAsk({"p0": ["4"], "p1": [down, down, down]})
    monkeypatch.setattr(utils, "_judge", lambda: (ask, LmmsEvalJudgeSettings(model="scripted-judge")))
    docs = [{"question_id": f"{i}_{i + 100}", "question": "What differs?", "answer": "Reference."} for i in range(2)]
    results = [utils.process_results(doc, [f"p{i}"]) for i, doc in enumerate(docs)]
    failed = results[1]["judge_rating"]
    assert failed["judge_failed"] is True and failed["rating"] is None and "Connection refused" in failed["errors"][0]
    rating = utils.judge_rating([r["judge_rating"] for r in results])
    assert (rating["value"], rating["n"], rating["invalid"], rating["not_judged"]) == (4.0, 1, 0, 1)
    assert utils.judge_invalid([r["judge_invalid"] for r in results]) == 0
