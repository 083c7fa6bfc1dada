"""The closed CaD-VI benchmarks as lmms-eval tasks: data sources, the task loaders on the official question
files, the registration hook, and end-to-end runs of the real ``lmms-eval`` CLI on CPU.

lmms-eval exits 0 even when a run fails, so the CLI tests assert on the results JSON it writes.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from eval_tasks import data, registration, scoring
from tests import eval_fixtures
from tests.eval_fixtures import (
    FIVE_TASKS,
    IMAGE_TOKENS,
    SHARED_EVAL,
    SYSTEM,
    BenchFolders,
    official_rows,
    plain_number_problems,
    run_lmms_eval,
    summary_of,
    table_rows,
    tiny_llava_arguments,
)

# The fixtures of tests/eval_fixtures.py, made visible to this module's tests.
tiny_llava = eval_fixtures.tiny_llava
cadvi_bench = eval_fixtures.cadvi_bench
bench_env = eval_fixtures.bench_env

OFFICIAL_COUNTS = {"bison": 150, "svo_probes": 1500, "nlvr2": 150, "eqben": 240, "cola": 420}
CLI_TIMEOUT_S = 300


@pytest.fixture
def official_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The shared copies of the official question files, selected as a user would."""
    for key in [key for key in os.environ if key.startswith("CADVI_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv(data.ANNOTATION_DIR_ENV, str(SHARED_EVAL))
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "datasets"))
    return SHARED_EVAL


# --- data: question files ------------------------------------------------------------------------------


def test_official_files_load_with_counts(official_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    for task, count in OFFICIAL_COUNTS.items():
        rows = data.read_rows(task)
        assert len(rows) == count, task
    assert "not the pinned file" not in caplog.text  # the shared copies are byte-identical to the pinned ones

    eqben_groups = Counter(scoring.group_of_question_id(row["question_id"]) for row in data.read_rows("eqben"))
    assert len(eqben_groups) == 120 and set(eqben_groups.values()) == {2}
    cola_groups = Counter(scoring.group_of_question_id(row["question_id"]) for row in data.read_rows("cola"))
    assert len(cola_groups) == 210 and set(cola_groups.values()) == {2}
    categories = Counter(row["category"] for row in data.read_rows("svo_probes"))
    assert categories == {"subject": 500, "verb": 500, "object": 500}


def test_task_loaders_on_official_files(official_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tasks' own loaders (YAML -> placeholder dataset -> process_docs), built by lmms-eval itself."""
    images = stand_in_images(tmp_path / "images", FIVE_TASKS)
    monkeypatch.setenv(data.IMAGE_ROOT_ENV, str(images))

    import lmms_eval.models  # noqa: F401  (runs our entry point)
    from lmms_eval.tasks import TaskManager, get_task_dict

    task_dict = get_task_dict(list(FIVE_TASKS), TaskManager(include_defaults=False))
    docs = {name: task_dict[name].test_docs() for name in FIVE_TASKS}
    assert {name: len(task_docs) for name, task_docs in docs.items()} == OFFICIAL_COUNTS
    assert len(set(docs["eqben"]["group"])) == 120
    assert Counter(Counter(zip(docs["eqben"]["subset"], docs["eqben"]["group"], strict=True)).values()) == {2: 120}
    assert Counter(subset for subset, _ in set(zip(docs["eqben"]["subset"], docs["eqben"]["group"], strict=True))) == {
        subset: 20 for subset in task_module("eqben").SUBSETS
    }
    assert len(set(docs["cola"]["group"])) == 210
    first = docs["bison"][0]
    assert first["image_paths"] == [str(images / "bison" / name) for name in first["image"]]
    assert task_dict["bison"].config.generation_kwargs["temperature"] == 0
    assert task_dict["bison"].config.generation_kwargs["do_sample"] is False


def stand_in_images(root: Path, tasks: tuple[str, ...]) -> Path:
    """Empty files under every official image name: the loader checks that each image exists, and
    nothing here opens one (lmms-eval's dummy model never asks for the visuals)."""
    for task in tasks:
        for name in {name for row in official_rows(task) for name in row["image"]}:
            path = root / task / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    return root


def test_download_is_cached_and_verified(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(data.ANNOTATION_DIR_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(data.BASE_URL_ENV, SHARED_EVAL.as_uri() + "/")  # file:// stands in for GitHub
    path = data.annotation_file("nlvr2")
    assert path.read_bytes() == (SHARED_EVAL / "NLVR2.jsonl").read_bytes()
    assert path.is_relative_to(tmp_path / "cache")
    assert data.annotation_file("nlvr2") == path  # cached

    path.write_text(path.read_text()[:-10])
    with pytest.raises(data.BenchmarkDataError, match=r"NLVR2\.jsonl: sha256 mismatch") as error:
        data.annotation_file("nlvr2")
    assert data.BENCHMARKS["nlvr2"].sha256 in str(error.value)
    assert scoring_hash(path) in str(error.value)

    tampered = tmp_path / "mirror"
    tampered.mkdir()
    (tampered / "BISON.jsonl").write_text('{"x": 1}\n')
    monkeypatch.setenv(data.BASE_URL_ENV, tampered.as_uri())
    with pytest.raises(data.BenchmarkDataError, match=r"BISON\.jsonl: sha256 mismatch for the download"):
        data.annotation_file("bison")
    assert not list((tmp_path / "cache").rglob("*BISON*"))  # nothing half-written kept


def scoring_hash(path: Path) -> str:
    from builders.release.sources import file_sha256

    return file_sha256(path)


def test_default_source_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(data.ANNOTATION_DIR_ENV, raising=False)
    monkeypatch.delenv(data.BASE_URL_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert data.DEFAULT_BASE_URL.startswith(f"https://raw.githubusercontent.com/wlin-at/CaD-VI/{data.PINNED_COMMIT}/")
    with pytest.raises(data.BenchmarkDataError, match=r"HF_HUB_OFFLINE.*CADVI_EVAL_DATA_DIR"):
        data.annotation_file("cola")


def test_bad_rows_are_rejected(tmp_path: Path) -> None:
    row = official_rows("bison")[0]
    cases = {
        "leaves": {**row, "image": ["../secret.jpg", row["image"][1]]},
        "placeholder": {**row, "text": row["text"].replace("<image>", "", 1)},
        "answer": {**row, "answer": "C"},
        "missing": {key: value for key, value in row.items() if key != "answer"},
    }
    for problem, bad in cases.items():
        path = tmp_path / f"{problem}.jsonl"
        path.write_text(json.dumps(bad) + "\n")
        with pytest.raises(data.BenchmarkDataError, match=rf"bison: {re.escape(str(path))}:1"):
            data.read_rows("bison", path)


# --- data: images ------------------------------------------------------------------------------------


def test_missing_image_names_benchmark_root_and_file(bench_env: BenchFolders, tmp_path: Path) -> None:
    rows = data.read_rows("bison")
    empty = tmp_path / "empty-root"
    empty.mkdir()
    with pytest.raises(data.MissingBenchmarkImageError) as error:
        data.resolve_images("bison", rows, empty)
    message = str(error.value)
    assert message.startswith("bison:")
    assert str(empty) in message
    assert rows[0]["image"][0] in message


def test_image_root_from_environment(bench_env: BenchFolders, monkeypatch: pytest.MonkeyPatch) -> None:
    assert data.image_root("eqben") == bench_env.image_root("eqben")
    monkeypatch.setenv("CADVI_EQBEN_IMAGE_ROOT", "/somewhere/EQBEN_images")
    assert data.image_root("eqben") == Path("/somewhere/EQBEN_images")
    monkeypatch.delenv(data.IMAGE_ROOT_ENV)
    with pytest.raises(data.MissingBenchmarkImageError, match="CADVI_COLA_IMAGE_ROOT"):
        data.image_root("cola")


def test_cola_images_found_under_visual_genome_names(bench_env: BenchFolders) -> None:
    docs = data.load_docs("cola")
    synthetic = next(doc for doc in docs if doc["question_id"] == "900_0")
    assert synthetic["image_paths"][0].endswith("VG_100K/2390001.jpg")


def test_doc_to_text_keeps_the_official_text(bench_env: BenchFolders) -> None:
    doc = data.load_docs("nlvr2")[0]
    assert data.doc_to_text(doc) == bench_env.rows["nlvr2"][0]["text"]
    visuals = data.doc_to_visual(doc)
    assert len(visuals) == 2 and all(image.mode == "RGB" for image in visuals)


def test_llava_receives_two_images_and_the_official_prompt(bench_env: BenchFolders, tiny_llava: Path) -> None:
    """What lmms-eval's chat ``llava_hf`` does with our doc_to_messages, step by step."""
    from lmms_eval.protocol import ChatMessages
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_llava)
    image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    for task in FIVE_TASKS:
        doc = data.load_docs(task)[0]
        chat = ChatMessages(messages=data.doc_to_messages(doc))
        visuals, videos, _ = chat.extract_media()
        text = processor.apply_chat_template(chat.model_dump()["messages"], tokenize=False, add_generation_prompt=True)
        assert text == f"{SYSTEM}USER: {doc['text']} ASSISTANT:"
        inputs = processor(images=visuals, text=text, return_tensors="pt")
        assert (len(visuals), videos) == (2, [])
        assert int((inputs["input_ids"] == image_token_id).sum()) == 2 * IMAGE_TOKENS
        assert tuple(inputs["pixel_values"].shape) == (2, 3, 32, 32)


# --- registration ------------------------------------------------------------------------------------


def test_entry_point_is_declared_and_returns_no_models() -> None:
    from importlib.metadata import entry_points

    from lmms_eval.models.registry_v2 import ModelRegistryV2

    ours = [ep for ep in entry_points().select(group="lmms_eval.models") if ep.value.startswith("eval_tasks.")]
    assert [ep.value for ep in ours] == ["eval_tasks.registration:register"]
    # lmms-eval's own payload handling: a callable returning an iterable of manifests.
    assert ModelRegistryV2()._coerce_payload_to_manifests(ours[0].load()) == []


def test_hook_makes_task_manager_list_our_tasks() -> None:
    import lmms_eval.models  # noqa: F401  (importing it runs every lmms_eval.models entry point)
    from lmms_eval.tasks import TaskManager

    assert getattr(TaskManager.initialize_tasks, "__cadvi_tasks_dir__", None) == registration.TASKS_DIR
    manager = TaskManager(include_defaults=False)
    assert set(FIVE_TASKS) <= set(manager.all_subtasks)
    assert set(FIVE_TASKS) <= set(manager.task_index["cadvi"]["task"])
    assert registration.patch_task_manager() is False  # idempotent
    # --include_path naming our folder as well does not index it twice.
    again = TaskManager(include_path=registration.tasks_dir(), include_defaults=False)
    assert sorted(again.task_index["cadvi"]["task"]) == sorted(manager.task_index["cadvi"]["task"])


def test_include_path_works_without_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    from lmms_eval.tasks import TaskManager

    registration.patch_task_manager()
    monkeypatch.setattr(TaskManager, "initialize_tasks", TaskManager.initialize_tasks.__wrapped__)
    assert not set(FIVE_TASKS) & set(TaskManager(include_defaults=False).all_tasks)
    manager = TaskManager(include_path=registration.tasks_dir(), include_defaults=False)
    assert set(FIVE_TASKS) <= set(manager.all_tasks)


# --- the real CLI ------------------------------------------------------------------------------------


def run_cli(args: list[str], bench: BenchFolders, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """Run ``lmms-eval`` offline on the fixture benchmarks; the results JSON and the console output."""
    return run_lmms_eval(args, bench.env, tmp_path, timeout=CLI_TIMEOUT_S)


def metric(results: dict[str, Any], task: str, name: str) -> dict[str, Any]:
    """The figures of one summary (plain-number metrics ``name``, ``name_ci_low``, ...) as a dict."""
    return summary_of(results[task], name)


def cadvi_tag_members() -> set[str]:
    from lmms_eval.utils import load_yaml_config

    members = set()
    for path in Path(registration.tasks_dir()).rglob("*.yaml"):
        config = load_yaml_config(str(path), mode="simple")
        if not isinstance(config, dict) or "task" not in config:
            continue  # the shared include files (_cadvi_defaults.yaml, ...) and the placeholder
        tags = config.get("tag", [])
        if "cadvi" in ([tags] if isinstance(tags, str) else tags):
            members.add(config["task"])
    return members


@pytest.mark.slow
def test_cli_llava_hf_on_cpu(bench_env: BenchFolders, tiny_llava: Path, tmp_path: Path) -> None:
    limit = 3
    results, console = run_cli(
        tiny_llava_arguments(tiny_llava, FIVE_TASKS, limit, "--log_samples"), bench_env, tmp_path
    )
    assert "in generating" not in console  # llava_hf logs generation errors and answers "" instead
    expected_metrics = {
        "bison": ["accuracy"],
        "svo_probes": ["accuracy", "subject_accuracy", "verb_accuracy", "object_accuracy"],
        "nlvr2": ["accuracy"],
        "eqben": ["accuracy", "group_accuracy", *(f"group_accuracy_{s}" for s in ("eqbensd", "eqbenag"))],
        "cola": ["accuracy", "group_accuracy"],
    }
    for task, names in expected_metrics.items():
        for name in names:
            summary = metric(results, task, name)
            assert {"value", "ci_low", "ci_high", "n", "unparseable"} <= set(summary), (task, name)
        accuracy = metric(results, task, "accuracy")
        assert accuracy["n"] == limit
        assert accuracy["ci_low"] <= accuracy["value"] <= accuracy["ci_high"]
        assert 0 <= accuracy["unparseable"] <= limit
    assert metric(results, "eqben", "group_accuracy")["n"] == 2  # 0_0, 0_1 | 1_0: --limit cut group 1
    assert metric(results, "eqben", "group_accuracy")["partial_groups"] == 1
    samples = sorted((tmp_path / "out").rglob("*_samples_bison.jsonl"))
    responses = [json.loads(line)["filtered_resps"] for line in samples[-1].read_text().splitlines()]
    assert len(responses) == limit and any(responses)
    # The contamination audit rescores lmms-eval's own samples files: over all questions it gives lmms-eval's figures.
    from eval_tasks.contamination.rescore import rescore

    for task, names in expected_metrics.items():
        (samples_file,) = (tmp_path / "out").rglob(f"*_samples_{task}.jsonl")
        rows = {str(row["question_id"]): row for row in bench_env.rows[task]}
        rescored = rescore(task, samples_file, rows, contaminated={next(iter(rows))})
        for name in [n for n in names if n in rescored["all"]]:
            assert rescored["all"][name] == metric(results, task, name), (task, name)
        assert rescored["clean"]["accuracy"]["n"] + rescored["contaminated"]["accuracy"]["n"] == limit


def known_answer_expectations() -> dict[tuple[str, str], tuple[float | None, int, int]]:
    """(task, metric) -> (value, n, unparseable) when every answer is "The answer is B", worked out by hand
    from the fixture rows (tests/eval_fixtures.py):
    BISON A A B B; SVO subject A A, verb A A, object B B; NLVR2 answers True/False, so "B" is unparseable;
    EQBEN groups 0, 1 (eqbensd) and 20, 21 (eqbenkubric_cnt) are A/B pairs, synthetic group 900 (eqbenag) B/B;
    COLA groups 0, 1 are A/B pairs, synthetic group 900 B/B."""
    return {
        ("bison", "accuracy"): (50.0, 4, 0),
        ("svo_probes", "accuracy"): (100 * 2 / 6, 6, 0),
        ("svo_probes", "subject_accuracy"): (0.0, 2, 0),
        ("svo_probes", "verb_accuracy"): (0.0, 2, 0),
        ("svo_probes", "object_accuracy"): (100.0, 2, 0),
        ("nlvr2", "accuracy"): (0.0, 4, 4),
        ("eqben", "accuracy"): (60.0, 10, 0),
        ("eqben", "group_accuracy"): (20.0, 5, 0),
        ("eqben", "group_accuracy_eqbensd"): (0.0, 2, 0),
        ("eqben", "group_accuracy_eqbenkubric_cnt"): (0.0, 2, 0),
        ("eqben", "group_accuracy_eqbenag"): (100.0, 1, 0),
        ("eqben", "group_accuracy_eqbengebc"): (None, 0, 0),
        ("cola", "accuracy"): (100 * 4 / 6, 6, 0),
        ("cola", "group_accuracy"): (100 / 3, 3, 0),
    }


@pytest.mark.slow
def test_cli_dummy_known_answers(bench_env: BenchFolders, tmp_path: Path) -> None:
    # `--tasks cadvi` runs every task tagged cadvi; the CaD-QA and SEED video tasks need their own
    # services and data, so the tag is used here only while it names exactly our five tasks.
    tasks = "cadvi" if cadvi_tag_members() == set(FIVE_TASKS) else ",".join(FIVE_TASKS)
    results, _ = run_cli(
        ["--model", "dummy", "--model_args", "response=The answer is B", "--tasks", tasks], bench_env, tmp_path
    )
    assert set(FIVE_TASKS) <= set(results)
    for task in FIVE_TASKS:  # plain numbers; None only for the EQBEN subsets the fixture has no group of
        assert plain_number_problems(results[task], allow_empty=True) == [], task
    for (task, name), (value, n, unparseable) in known_answer_expectations().items():
        summary = metric(results, task, name)
        assert (summary["n"], summary["unparseable"]) == (n, unparseable), (task, name)
        if value is None:
            assert summary["value"] is None, (task, name)
        else:
            assert summary["value"] == pytest.approx(value, abs=1e-9), (task, name)
            assert summary["ci_low"] <= summary["value"] <= summary["ci_high"], (task, name)
    # The interval is the scorer's bootstrap over the per-question 0/1 vector, in doc order.
    low, high = scoring.bootstrap_ci([0, 0, 1, 1])
    assert (metric(results, "bison", "accuracy")["ci_low"], metric(results, "bison", "accuracy")["ci_high"]) == (
        100 * low,
        100 * high,
    )


@pytest.mark.slow
def test_cli_include_path(bench_env: BenchFolders, tmp_path: Path) -> None:
    results, _ = run_cli(
        [
            "--model",
            "dummy",
            "--model_args",
            "response=True.",
            "--tasks",
            "nlvr2,bison",
            "--include_path",
            registration.tasks_dir(),
        ],
        bench_env,
        tmp_path,
    )
    nlvr2 = metric(results, "nlvr2", "accuracy")
    assert (nlvr2["value"], nlvr2["n"], nlvr2["unparseable"]) == (50.0, 4, 0)  # answers False True True False
    bison = metric(results, "bison", "accuracy")
    assert (bison["value"], bison["n"], bison["unparseable"]) == (0.0, 4, 4)


# --- plain numbers: what lmms-eval prints and stores -------------------------------------------------

ALL_OUR_TASKS = (*FIVE_TASKS, "cadvi_seed_video_1frame", "cadvi_seed_video_2frame")


def task_module(task: str) -> Any:
    """A closed task's ``utils`` module (lmms-eval loads its own copy by path; the numbers are the same)."""
    import importlib

    return importlib.import_module(f"eval_tasks.{task}.utils")


def test_task_yamls_list_exactly_their_metrics() -> None:
    """Every figure a task's utils reports is in its YAML with the higher_is_better of its kind, every
    YAML metric finds its aggregation (lmms-eval's own loader resolves them), and the shared keys come
    from the include files."""
    import lmms_eval.models  # noqa: F401  (runs our entry point)
    from lmms_eval.tasks import TaskManager
    from lmms_eval.utils import load_yaml_config

    index = TaskManager(include_defaults=False).task_index
    for task in ALL_OUR_TASKS:
        config = load_yaml_config(index[task]["yaml_path"], mode="full")
        table = config["process_results"].__self__.metrics  # the task's metrics.ChoiceTask
        listed = [(entry["metric"], entry["higher_is_better"]) for entry in config["metric_list"]]
        assert listed == [(name, table.higher_is_better(name)) for name in table.names], task
        assert [entry["aggregation"].__name__ for entry in config["metric_list"]] == list(table.names), task
        assert config["generation_kwargs"] == {
            "max_new_tokens": 256,
            "temperature": 0,
            "do_sample": False,
            "num_beams": 1,
        }, task
        assert (config["tag"], config["dataset_path"], config["output_type"]) == ("cadvi", "json", "generate_until")
        assert Path(config["dataset_kwargs"]["data_files"]["test"]).resolve() == Path(data.__file__).with_name(
            "_placeholder.yaml"
        )


@pytest.mark.slow
def test_cli_dummy_official_files_plain_numbers(official_env: Path, tmp_path: Path) -> None:
    """``lmms-eval --model dummy --tasks bison,eqben`` on the official question files: every figure is a
    plain number in the results JSON and in the printed table (no dict blob), with values worked out
    from the files: every official EQBEN group pairs an A with a B, so a constant "B" gets half the
    questions and no group right."""
    images = stand_in_images(tmp_path / "images", ("bison", "eqben"))
    env = {data.ANNOTATION_DIR_ENV: str(SHARED_EVAL), data.IMAGE_ROOT_ENV: str(images)}
    args = ["--model", "dummy", "--model_args", "response=The answer is B", "--tasks", "bison,eqben"]
    results, console = run_lmms_eval(args, env, tmp_path, timeout=CLI_TIMEOUT_S)
    for task in ("bison", "eqben"):
        assert plain_number_problems(results[task]) == [], task
    b_answers = sum(row["answer"] == "B" for row in official_rows("bison"))
    bison = metric(results, "bison", "accuracy")
    assert (bison["value"], bison["n"], bison["unparseable"]) == (100 * b_answers / 150, 150, 0)
    assert bison["ci_low"] < bison["value"] < bison["ci_high"]
    assert metric(results, "eqben", "accuracy")["value"] == 50.0
    overall = metric(results, "eqben", "group_accuracy")
    assert (overall["value"], overall["n"], overall["n_questions"], overall["partial_groups"]) == (0.0, 120, 240, 0)
    for subset in task_module("eqben").SUBSETS:
        summary = metric(results, "eqben", f"group_accuracy_{subset}")
        assert (summary["value"], summary["ci_low"], summary["ci_high"]) == (0.0, 0.0, 0.0), subset
        assert (summary["n"], summary["n_questions"], summary["unparseable"]) == (20, 40, 0), subset

    rows = table_rows(console, ("bison", "eqben"))
    expected = {(task, name) for task in ("bison", "eqben") for name in task_module(task).TASK.metrics.names}
    assert set(rows) == expected
    for (task, name), value in rows.items():
        assert re.fullmatch(r"-?\d+(\.\d+)?", value), (task, name, value)
    assert not [line for line in console.splitlines() if line.startswith("|") and "{" in line]
