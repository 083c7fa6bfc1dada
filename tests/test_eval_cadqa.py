"""The ``cadqa`` lmms-eval task: its question file, docs, judge-based scoring, and a real lmms-eval run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builders.judge import JUDGE_TEMPLATE
from builders.release.origin import HUB_REPO, HUB_REVISION
from cadvi.demo import draw_stand_in_images
from eval_tasks import data, scoring
from eval_tasks.cadqa import judging, utils
from eval_tasks.cadqa.judge_server import JUDGE_ENV, LmmsEvalJudgeSettings
from prompts import load_template
from tests import eval_fixtures
from tests.conftest import CADQA_OFFICIAL
from tests.scripted import Fail, ScriptedBackend

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


def scripted_judge(monkeypatch, tmp_path: Path, answers: dict[str, list[str | Fail]]) -> ScriptedBackend:
    """The task's judge replaced by scripted answers (keyed by prediction), its run folder in ``tmp_path``."""
    backend = ScriptedBackend({f"Predicted answer: {key}\n": value for key, value in answers.items()})
    settings = LmmsEvalJudgeSettings(model="scripted-judge", run_dir=str(tmp_path / "judge-runs"))
    monkeypatch.setattr(judging, "judge_backend", lambda: (backend, settings))
    return backend


def test_process_results_and_aggregations_hand_computed(monkeypatch, tmp_path):
    backend = scripted_judge(
        monkeypatch,
        tmp_path,
        {
            "p0": ["5"],
            "p1": ["Rating: 3"],
            "p2": ["no idea", "still no idea"],  # invalid after the retry: excluded, not a 0
            "p3": ["Sure.", "1/5"],  # valid on the retry
            "p4": [Fail("APITimeoutError: timed out"), "0"],  # refused by the judge: an attempt
        },
    )
    docs = [
        {"question_id": f"{i}_{i + 100}", "question": f"What differs in pair {i}?", "answer": f"Reference {i}."}
        for i in range(5)
    ]
    results = [utils.process_results(doc, [f"p{i}"]) for i, doc in enumerate(docs)]
    assert all(set(result) == set(utils.METRICS) for result in results)
    assert backend.batches == [], "process_results only collects: the answers are judged together"
    column = {metric: [r[metric] for r in results] for metric in utils.METRICS}
    # Hand-computed: (5 + 3 + 1 + 0) / 4 = 2.25 over the 4 valid ratings (scored 0 it would be 9/5 = 1.8).
    assert utils.judge_rating(column["judge_rating"]) == pytest.approx(2.25)
    assert [len(batch) for batch in backend.batches] == [5, 3], "all five at once, then the three to ask again"
    records = [result["judge_rating"] for result in results]  # the same objects every metric (and sample) holds
    assert [r["rating"] for r in records] == [5, 3, None, 1, 0]
    assert [r["attempts"] for r in records] == [1, 1, 2, 2, 2]
    assert records[2]["raw"] == ["no idea", "still no idea"] and records[4]["errors"] == ["APITimeoutError: timed out"]
    assert records[0]["template_sha256"] == load_template(JUDGE_TEMPLATE).sha256
    assert records[0]["question"] == "What differs in pair 0?" and records[0]["reference"] == "Reference 0."

    shared = scoring.mean_with_ci([5, 3, 1, 0])
    low, high = (
        utils.judge_rating_ci_low(column["judge_rating_ci_low"]),
        utils.judge_rating_ci_high(column["judge_rating_ci_high"]),
    )
    assert (low, high) == pytest.approx((shared["ci_low"], shared["ci_high"]))
    assert low <= 2.25 <= high
    valid, invalid = utils.judge_valid(column["judge_valid"]), utils.judge_invalid(column["judge_invalid"])
    assert (valid + invalid, valid, invalid) == (5, 4, 1)
    histogram = {str(k): getattr(utils, f"judge_rating_{k}")(column[f"judge_rating_{k}"]) for k in range(6)}
    assert histogram == {"0": 1, "1": 1, "2": 0, "3": 1, "4": 0, "5": 1}
    assert utils.judge_not_judged(column["judge_not_judged"]) == 0
    assert all(isinstance(value, int | float) for value in histogram.values()), "plain numbers, as lmms-eval's tasks"
    nothing = [records[2]]
    assert utils.judge_rating(nothing) is None and utils.judge_rating_ci_low(nothing) is None
    assert utils.judge_invalid(nothing) == 1
    assert len(backend.batches) == 2, "judged once: every later aggregation reads the records"


def test_task_yaml_follows_the_closed_tasks(monkeypatch):
    from lmms_eval.utils import load_yaml_config

    monkeypatch.chdir(TASKS_DIR / "cadqa")  # lmms-eval resolves include: against the working directory first
    ours = load_yaml_config(str(TASKS_DIR / "cadqa" / "cadqa.yaml"), mode="simple")
    assert ours["task"] == "cadqa" and ours["output_type"] == "generate_until"
    assert ours["generation_kwargs"]["temperature"] == 0 and ours["generation_kwargs"]["do_sample"] is False
    assert ours["generation_kwargs"]["max_new_tokens"] == 256
    assert [m["metric"] for m in ours["metric_list"]] == list(utils.METRICS)
    closed = load_yaml_config(str(TASKS_DIR / "bison" / "bison.yaml"), mode="simple")
    for key in ("tag", "dataset_path", "test_split", "output_type", "generation_kwargs"):
        assert ours[key] == closed[key], key
    placeholder = [Path(c["dataset_kwargs"]["data_files"]["test"]).resolve() for c in (ours, closed)]
    assert placeholder[0] == placeholder[1] == (TASKS_DIR / "_placeholder.yaml").resolve()


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
        "CADQA_JUDGE_RUN_DIR": str(tmp_path / "judge-runs"),
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
    assert {str(k): cadqa[f"judge_rating_{k},none"] for k in range(6)} == {str(k): 0 for k in range(6)}  # ... not as 0
    assert cadqa["judge_rating,none"] is None and cadqa["judge_rating_ci_low,none"] is None
    assert (cadqa["judge_valid,none"], cadqa["judge_invalid,none"], cadqa["judge_not_judged,none"]) == (0, 3, 0)
    numbers = {key: value for key, value in cadqa.items() if "," in key and "_stderr" not in key}
    assert all(value is None or isinstance(value, int | float) for value in numbers.values()), numbers

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


def test_a_judge_outage_is_not_judged_rather_than_invalid(monkeypatch, tmp_path):
    down = Fail("APIConnectionError: Connection refused", "transport")
    backend = scripted_judge(monkeypatch, tmp_path, {"p0": ["4"], "p1": [down, "5"]})
    docs = [{"question_id": f"{i}_{i + 100}", "question": "What differs?", "answer": "Reference."} for i in range(2)]
    results = [utils.process_results(doc, [f"p{i}"]) for i, doc in enumerate(docs)]
    column = [r["judge_rating"] for r in results]
    assert utils.judge_rating(column) == 4.0
    failed = results[1]["judge_rating"]
    assert failed["judge_failed"] is True and failed["rating"] is None and "not judged" in failed["errors"][0]
    assert (utils.judge_valid(column), utils.judge_invalid(column), utils.judge_not_judged(column)) == (1, 0, 1)
    # The evaluation run again: the judged answer is not asked again, the other one is judged now.
    again = [utils.process_results(doc, [f"p{i}"]) for i, doc in enumerate(docs)]
    assert utils.judge_rating([r["judge_rating"] for r in again]) == 4.5
    assert backend.batches[-1] == [backend.batches[0][1]], "only the unjudged answer is asked"
