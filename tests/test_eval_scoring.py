"""The shared scorer of the benchmarks and every task's process_results/aggregations, against hand-computed values."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest

from eval_tasks import metrics, scoring
from eval_tasks.scoring import (
    LETTER_OPTIONS_2,
    LETTER_OPTIONS_4,
    TRUE_FALSE_OPTIONS,
    accuracy_aggregation,
    accuracy_by,
    bootstrap_ci,
    group_accuracy,
    group_accuracy_by,
    mean_with_ci,
    parse_choice,
)
from tests.eval_fixtures import figures_of

TASKS_DIR = Path(scoring.__file__).resolve().parent

PARSED = [
    # the forms the brief requires
    ("A", LETTER_OPTIONS_2, "A"),
    ("A.", LETTER_OPTIONS_2, "A"),
    ("(A)", LETTER_OPTIONS_2, "A"),
    ("a", LETTER_OPTIONS_2, "A"),
    ("Image 1", LETTER_OPTIONS_2, "A"),
    ("The answer is B", LETTER_OPTIONS_2, "B"),
    ("Answer: B", LETTER_OPTIONS_2, "B"),
    ("**B**", LETTER_OPTIONS_2, "B"),
    ("True.", TRUE_FALSE_OPTIONS, "True"),
    ("false", TRUE_FALSE_OPTIONS, "False"),
    ("B. Image 2", LETTER_OPTIONS_2, "B"),
    ("Option C", LETTER_OPTIONS_4, "C"),
    # and what models write around them
    (" B\n", LETTER_OPTIONS_2, "B"),
    ("B)", LETTER_OPTIONS_2, "B"),
    ("[B]", LETTER_OPTIONS_2, "B"),
    ("answer: b", LETTER_OPTIONS_2, "B"),
    ("ANSWER: C", LETTER_OPTIONS_4, "C"),
    ("The correct answer is: D", LETTER_OPTIONS_4, "D"),
    ("So the answer is option C.", LETTER_OPTIONS_4, "C"),
    ("The answer is (C) because the man is running.", LETTER_OPTIONS_4, "C"),
    ("Image 1 shows a cat. Answer: B", LETTER_OPTIONS_2, "B"),
    ("The first image.", LETTER_OPTIONS_2, "A"),
    ("Image 2 is a better fit.", LETTER_OPTIONS_2, "B"),
    ("A dog is in Image 2", LETTER_OPTIONS_2, "B"),  # the article "A" is not option A
    ("Answer: A</s>", LETTER_OPTIONS_2, "A"),
    ("`A`", LETTER_OPTIONS_2, "A"),
    ("Yes", TRUE_FALSE_OPTIONS, "True"),
    ("The statement is false.", TRUE_FALSE_OPTIONS, "False"),
    ("The statement is not correct.", TRUE_FALSE_OPTIONS, "False"),  # not also "correct"
    ("'True'", TRUE_FALSE_OPTIONS, "True"),
    ("pick up cup", {"A": ("A", "pick up cup"), "B": ("B", "put down cup")}, "A"),
]
REJECTED = [
    ("", LETTER_OPTIONS_2),
    (None, LETTER_OPTIONS_2),
    ("A or B", LETTER_OPTIONS_2),
    ("A. Image 1\nB. Image 2", LETTER_OPTIONS_2),  # the options echoed back
    ("Image 1 and Image 2", LETTER_OPTIONS_2),
    ("A. Image 2", LETTER_OPTIONS_2),  # contradicts itself
    ("I do not know.", LETTER_OPTIONS_2),
    ("Answer: a dog", LETTER_OPTIONS_2),
    ("E", LETTER_OPTIONS_4),
    ("Image 10", LETTER_OPTIONS_2),
    ("True or False", TRUE_FALSE_OPTIONS),
    ("A", TRUE_FALSE_OPTIONS),
    ("maybe", TRUE_FALSE_OPTIONS),
    ("The answer is C", LETTER_OPTIONS_2),
    ("Answer: A and answer: B", LETTER_OPTIONS_2),
]


@pytest.mark.parametrize(("text", "options", "expected"), PARSED)
def test_parse_choice_accepts(text: str, options: dict, expected: str) -> None:
    assert parse_choice(text, options) == expected


@pytest.mark.parametrize(("text", "options"), REJECTED)
def test_parse_choice_rejects(text: str | None, options: dict) -> None:
    assert parse_choice(text, options) is None


def test_option_maps() -> None:
    assert set(LETTER_OPTIONS_2) == {"A", "B"}
    assert set(LETTER_OPTIONS_4) == {"A", "B", "C", "D"}
    assert set(TRUE_FALSE_OPTIONS) == {"True", "False"}


def result(correct: int, parsed: bool = True, **extra: object) -> dict:
    return {"correct": correct, "parsed": parsed, **extra}


def test_accuracy_aggregation() -> None:
    summary = accuracy_aggregation([result(1), result(0, parsed=False), result(1), result(1)])
    assert summary["value"] == 75.0
    assert summary["n"] == 4
    assert summary["unparseable"] == 1
    assert summary["ci_low"] <= 75.0 <= summary["ci_high"]


def test_choice_result_counts_unparseable_as_wrong() -> None:
    assert scoring.choice_result("B", "B", LETTER_OPTIONS_2) == {
        "correct": 1,
        "parsed": True,
        "answer": "B",
        "prediction": "B",
    }
    assert scoring.choice_result("no idea", "B", LETTER_OPTIONS_2, group="3")["correct"] == 0
    assert scoring.choice_result("no idea", "B", LETTER_OPTIONS_2)["parsed"] is False


def test_group_accuracy_with_one_group_half_right() -> None:
    results = [
        result(1, group="0"),
        result(1, group="0"),  # group 0: both right
        result(1, group="1"),
        result(0, group="1"),  # group 1: half right -> wrong
        result(0, False, group="2"),
        result(0, group="2"),  # group 2: both wrong
    ]
    summary = group_accuracy(results)
    assert summary["value"] == pytest.approx(100 / 3)
    assert summary["n"] == 3
    assert summary["n_questions"] == 6
    assert summary["unparseable"] == 1
    assert summary["partial_groups"] == 0
    assert accuracy_aggregation(results)["value"] == 50.0


def test_group_accuracy_reports_groups_cut_by_limit() -> None:
    summary = group_accuracy([result(1, group="0"), result(1, group="0"), result(1, group="1")])
    assert summary["value"] == 100.0
    assert summary["partial_groups"] == 1


def test_group_bootstrap_resamples_groups() -> None:
    # 1 group right of 2: every resample of *groups* has a mean in {0, 0.5, 1}.
    results = [result(1, group="a"), result(1, group="a"), result(0, group="b"), result(1, group="b")]
    summary = group_accuracy(results)
    assert summary["value"] == 50.0
    assert summary["ci_low"] in (0.0, 50.0)
    assert summary["ci_high"] in (50.0, 100.0)


def test_per_category_accuracy() -> None:
    results = [
        result(1, category="subject"),
        result(1, category="subject"),
        result(0, category="verb"),
        result(1, category="verb"),
        result(0, False, category="object"),
    ]
    by_category = accuracy_by(results, "category")
    assert {key: value["value"] for key, value in by_category.items()} == {
        "object": 0.0,
        "subject": 100.0,
        "verb": 50.0,
    }
    assert by_category["object"]["unparseable"] == 1
    assert scoring.filtered(accuracy_aggregation, "category", "verb")(results)["value"] == 50.0
    assert scoring.filtered(accuracy_aggregation, "category", "none")(results) == {
        "value": None,
        "ci_low": None,
        "ci_high": None,
        "n": 0,
        "unparseable": 0,
    }


def test_per_subset_group_accuracy() -> None:
    results = [
        result(1, group="0", subset="eqbensd"),
        result(1, group="0", subset="eqbensd"),
        result(1, group="1", subset="eqbensd"),
        result(0, group="1", subset="eqbensd"),
        result(1, group="7", subset="eqbenag"),
        result(1, group="7", subset="eqbenag"),
    ]
    by_subset = group_accuracy_by(results, "subset")
    assert by_subset["eqbensd"]["value"] == 50.0
    assert by_subset["eqbensd"]["n"] == 2
    assert by_subset["eqbenag"]["value"] == 100.0
    assert group_accuracy(results)["value"] == pytest.approx(200 / 3)


def test_group_of_question_id() -> None:
    assert scoring.group_of_question_id("17_0") == "17"
    assert scoring.group_of_question_id("17_1") == "17"
    with pytest.raises(ValueError, match="<group>_<member>"):
        scoring.group_of_question_id("17")


def test_bootstrap_ci_sanity() -> None:
    small = [1.0, 0.0] * 10
    large = [1.0, 0.0] * 500
    low_small, high_small = bootstrap_ci(small)
    low_large, high_large = bootstrap_ci(large)
    assert low_small <= 0.5 <= high_small
    assert low_large <= 0.5 <= high_large
    assert high_large - low_large < (high_small - low_small) / 3  # width ~ 1/sqrt(n)
    ratings = [(index * 0.37) % 5 for index in range(30)]  # continuous: quantiles differ between seeds
    assert bootstrap_ci(ratings, seed=3) == bootstrap_ci(ratings, seed=3)
    assert bootstrap_ci(ratings, seed=3) != bootstrap_ci(ratings, seed=4)
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert all(math.isnan(value) for value in bootstrap_ci([]))
    with pytest.raises(ValueError):
        bootstrap_ci(small, confidence=1.5)


def test_mean_with_ci() -> None:
    summary = mean_with_ci([0, 5, 4, 3], resamples=200)
    assert summary["value"] == 3.0
    assert summary["n"] == 4
    assert 0 <= summary["ci_low"] <= 3.0 <= summary["ci_high"] <= 5
    assert mean_with_ci([1, 0], scale=100)["value"] == 50.0
    assert mean_with_ci([])["value"] is None


# --- every task's utils.py: process_results + aggregations ------------------------------------------


def task_utils(task: str) -> ModuleType:
    """Load a task's utils.py the way lmms-eval's ``!function`` does (by file path)."""
    spec = importlib.util.spec_from_file_location("utils", TASKS_DIR / task / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def doc(answer: str, **fields: str) -> dict:
    return {"question_id": fields.pop("question_id", "0"), "answer": answer, **fields}


def scored(utils: ModuleType, rows: list[tuple[str, dict]]) -> dict[str, list[dict]]:
    """Each metric's per-sample results, as lmms-eval collects them from ``process_results``."""
    per_metric: dict[str, list[dict]] = {}
    for text, sample in rows:
        for metric, value in utils.process_results(sample, [text]).items():
            per_metric.setdefault(metric, []).append(value)
    return per_metric


def test_bison_and_nlvr2_process_results() -> None:
    bison = task_utils("bison")
    outputs = [("A", "A"), ("The answer is B", "A"), ("Image 2", "B"), ("Hmm", "B")]
    per_metric = scored(bison, [(text, doc(answer)) for text, answer in outputs])
    summary = figures_of(bison, "accuracy", per_metric)
    assert (summary["value"], summary["n"], summary["unparseable"]) == (50.0, 4, 1)

    nlvr2 = task_utils("nlvr2")
    outputs = [("True", "True"), ("false.", "False"), ("A", "True")]
    per_metric = scored(nlvr2, [(text, doc(answer)) for text, answer in outputs])
    summary = figures_of(nlvr2, "accuracy", per_metric)
    assert summary["value"] == pytest.approx(200 / 3)
    assert summary["unparseable"] == 1


def test_svo_probes_process_results() -> None:
    svo = task_utils("svo_probes")
    rows = [("A", "A", "subject"), ("B", "A", "subject"), ("B", "B", "verb"), ("B", "B", "object")]
    per_metric = scored(svo, [(text, doc(answer, category=category)) for text, answer, category in rows])
    assert set(per_metric) == set(svo.TASK.metrics.names)
    assert {"accuracy", "subject_accuracy", "verb_accuracy", "object_accuracy"} <= set(per_metric)
    assert svo.accuracy(per_metric["accuracy"]) == 75.0
    assert svo.subject_accuracy(per_metric["subject_accuracy"]) == 50.0
    assert svo.subject_accuracy_n(per_metric["subject_accuracy_n"]) == 2
    assert svo.verb_accuracy(per_metric["verb_accuracy"]) == 100.0
    assert svo.object_accuracy_n(per_metric["object_accuracy_n"]) == 1


def test_eqben_process_results() -> None:
    eqben = task_utils("eqben")
    assert eqben.group_fields({"question_id": "12_1", "image": ["eqbenkubric_cnt/1920/image0.png", "x"]}) == {
        "group": "12",
        "subset": "eqbenkubric_cnt",
    }
    rows = [  # (output, answer, question_id, subset)
        ("A", "A", "0_0", "eqbensd"),
        ("B", "B", "0_1", "eqbensd"),  # group 0 right
        ("A", "A", "1_0", "eqbensd"),
        ("A", "B", "1_1", "eqbensd"),  # group 1 half right
        ("A", "A", "2_0", "eqbenag"),
        ("B", "B", "2_1", "eqbenag"),  # group 2 right
    ]
    per_metric = scored(
        eqben,
        [
            (text, doc(answer, question_id=question_id, group=question_id.split("_")[0], subset=subset))
            for text, answer, question_id, subset in rows
        ],
    )
    assert eqben.accuracy(per_metric["accuracy"]) == pytest.approx(500 / 6)
    assert eqben.group_accuracy(per_metric["group_accuracy"]) == pytest.approx(200 / 3)
    assert eqben.group_accuracy_n(per_metric["group_accuracy_n"]) == 3
    assert eqben.group_accuracy_eqbensd(per_metric["group_accuracy_eqbensd"]) == 50.0
    assert eqben.group_accuracy_eqbenag(per_metric["group_accuracy_eqbenag"]) == 100.0
    assert eqben.group_accuracy_eqbengebc_n(per_metric["group_accuracy_eqbengebc_n"]) == 0
    assert eqben.group_accuracy_eqbengebc(per_metric["group_accuracy_eqbengebc"]) is None
    assert {f"group_accuracy_{subset}" for subset in eqben.SUBSETS} <= set(per_metric)


def test_cola_process_results() -> None:
    cola = task_utils("cola")
    rows = [("A", "A", "0_0"), ("B", "B", "0_1"), ("B", "A", "1_0"), ("B", "B", "1_1"), ("?", "A", "2_0")]
    per_metric = scored(
        cola,
        [(text, doc(answer, question_id=qid, group=qid.split("_")[0])) for text, answer, qid in rows],
    )
    assert cola.accuracy(per_metric["accuracy"]) == 60.0
    summary = figures_of(cola, "group_accuracy", per_metric)
    assert summary["value"] == pytest.approx(100 / 3)
    assert (summary["n"], summary["unparseable"], summary["partial_groups"]) == (3, 1, 1)
    assert summary["n_questions"] == 5


# --- plain-number metrics ---------------------------------------------------------------------------


def test_every_figure_is_its_summary_number() -> None:
    """Each plain-number metric is exactly the number the scorer's summary dict holds."""
    results = [
        result(1, group="0", subset="x"),
        result(1, group="0", subset="x"),
        result(1, group="1", subset="y"),
        result(0, False, group="1", subset="y"),
        result(0, group="2", subset="y"),
    ]
    table = metrics.PlainMetrics(
        metrics.Summary("accuracy"),
        metrics.Summary("group_accuracy", grouped=True),
        metrics.Summary("group_accuracy_y", grouped=True, where=("subset", "y")),
    )
    expected = {
        "accuracy": accuracy_aggregation(results),
        "group_accuracy": group_accuracy(results),
        "group_accuracy_y": scoring.filtered(group_accuracy, "subset", "y")(results),
    }
    for summary in table.summaries:
        for field in summary.fields:
            value = table.aggregation(summary.metric(field))(results)
            assert value == expected[summary.name][field], (summary.name, field)
            assert isinstance(value, (int, float)) and not isinstance(value, bool)
    assert table.names[:5] == (
        "accuracy",
        "accuracy_ci_low",
        "accuracy_ci_high",
        "accuracy_n",
        "accuracy_unparseable",
    )
    assert "group_accuracy_y_partial_groups" in table.names
    assert (table.higher_is_better("accuracy_ci_low"), table.higher_is_better("accuracy_unparseable")) == (True, False)
    assert table.higher_is_better("group_accuracy_n_questions") is None
    with pytest.raises(ValueError, match="defined twice"):
        metrics.PlainMetrics(metrics.Summary("accuracy"), metrics.Summary("accuracy", where=("subset", "x")))


def test_summary_cache_keeps_inputs_apart() -> None:
    """The cache behind the figures keys on every input that changes the numbers, in order."""
    accuracy = metrics.Summary("accuracy")
    first = [result(1), result(0), result(1)]
    assert accuracy(first)["value"] == pytest.approx(200 / 3)
    assert accuracy([result(1), result(0, parsed=False), result(1)])["unparseable"] == 1
    assert accuracy(list(reversed(first)))["value"] == accuracy(first)["value"]
    grouped = metrics.Summary("group_accuracy", grouped=True)
    assert grouped([result(1, group="a"), result(1, group="b")])["value"] == 100.0
    assert grouped([result(1, group="a"), result(0, group="a")])["value"] == 0.0
    summary = accuracy(first)
    summary["value"] = -1  # a caller's copy: the cached summary is untouched
    assert accuracy(first)["value"] == pytest.approx(200 / 3)


def test_module_getattr_serves_only_metric_names() -> None:
    bison = task_utils("bison")
    assert bison.accuracy_ci_high.__name__ == "accuracy_ci_high"
    with pytest.raises(AttributeError, match="no_such_metric"):
        bison.no_such_metric  # noqa: B018
