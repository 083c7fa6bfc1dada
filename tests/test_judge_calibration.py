"""Judge calibration: the probes, weighted kappa, and every reported figure against a scripted local judge server.

The server (a real OpenAI-compatible HTTP endpoint on 127.0.0.1) reads each judge prompt, recognises which
probe of which question it is, and answers the rating this test chose for it, per model ("judge-a",
"judge-b"). So every mean, histogram, difference, kappa and rho in ``calibration.json`` is known by hand.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from fractions import Fraction

import pytest
from matplotlib.image import imread

from builders.judge.calibration import (
    FILLER,
    PROBES,
    calibrate,
    load_references,
    markdown_report,
    other_answers,
    probe_items,
    sample_references,
    spearman,
    swap_images,
    weighted_kappa,
)
from builders.llm import make_backend
from builders.llm.base import BackendUnavailableError
from eval_tasks.scoring import mean_with_ci
from tests.conftest import CADQA_OFFICIAL, shared_file
from tests.llm_fixtures import FakeChatServer
from tests.scripted import ScriptedBackend

# Five official CaD-QA questions: three naming "Image 1"/"Image 2", one "first image"/"second image", one no image.
QUESTION_IDS = ("2406825_2550", "2349307_1159325", "2392971_2417838", "2414485_2340754", "2408562_2347209")
SWAPPED = (  # written by hand: what the swapped_images probe must send for q0..q3 (q4 names no image)
    "Image 2 is dominated by shades of white, yellow, and orange, while Image 1 features a mix of darker colors "
    "for the roads and vehicles, contrasted by the greenery and blue sky.",
    "Image 2 is set outdoors, in a cityscape or urban environment, while Image 1 is set indoors in a home office.",
    "Image 2 has a strong indoor lighting, while Image 1 has a softer, more diffused natural lighting.",
    "In the second image, the elephants are the clear focus, with the trees and other elements serving as a "
    "backdrop. In the first image, there is a more even distribution of focus between the pine trees, street "
    "signs, and stickers.",
)
# The ratings each judge gives, per probe and question (None: an unreadable reply, "I cannot tell.").
RATINGS_OF = {
    "judge-a": {
        "self": [5, 5, 4, 5, 5],
        "empty": [0, 0, 0, 1, 0],
        "other_question": [0, 1, 0, None, 0],
        "swapped_images": [3, 5, 2, 4],
        "padded": [5, 4, 4, 5, 5],
    },
    "judge-b": {
        "self": [5, 4, 4, 5, 5],
        "empty": [0, 0, 1, 0, 0],
        "other_question": [0, 0, 0, 0, 1],
        "swapped_images": [2, 5, 3, 4],
        "padded": [5, 5, 4, 4, 5],
    },
}
_PROMPT = re.compile(r"Question: (.*?)\n\nReference answer: (.*?)\n\nPredicted answer: ?(.*?)\n\nRate how well", re.S)


def official_rows() -> list[dict]:
    rows = {}
    for line in shared_file(CADQA_OFFICIAL).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["question_id"] in QUESTION_IDS:
            rows[row["question_id"]] = row
    return [rows[question_id] for question_id in QUESTION_IDS]


class RatingServer(FakeChatServer):
    """Answers each judge prompt with the rating :data:`RATINGS_OF` gives its model, probe and question."""

    def __init__(self, rows: list[dict]) -> None:
        super().__init__()
        self.rows = rows
        self.questions = [row["text"].split("\n", 2)[2] for row in rows]
        self.unknown: list[str] = []

    def probe_of(self, question: str, reference: str, prediction: str) -> tuple[str, int]:
        index = self.questions.index(question)
        assert reference == self.rows[index]["answer"]
        expected = {"self": reference, "empty": "", "padded": f"{reference}\n\n{FILLER}"}
        if index < len(SWAPPED):
            expected["swapped_images"] = SWAPPED[index]
        for probe, text in expected.items():
            if prediction == text:
                return probe, index
        others = [row["answer"] for i, row in enumerate(self.rows) if i != index]
        assert prediction in others, f"not a probe of question {index}: {prediction!r}"
        return "other_question", index

    def completion(self, body: dict) -> dict:  # type: ignore[override]
        match = _PROMPT.search(body["messages"][-1]["content"])
        try:
            probe, index = self.probe_of(*match.groups())
            rating = RATINGS_OF[body["model"]][probe][index]
            text = "I cannot tell." if rating is None else str(rating)
        except Exception as error:  # surfaces in the test as an invalid rating, and in self.unknown
            self.unknown.append(repr(error))
            text = "?"
        answer = super().completion(body)
        answer["choices"][0]["message"]["content"] = text
        return answer

    def requests_for(self, model: str) -> int:
        return sum(body["model"] == model for _headers, body in self.received)


@pytest.fixture
def rows() -> list[dict]:
    return official_rows()


@pytest.fixture
def rating_server(rows) -> Iterator[RatingServer]:
    server = RatingServer(rows)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def openai_judge(server: RatingServer, model: str, **options):
    return make_backend("openai", model, base_url=server.base_url, max_concurrency=4, **options)


# --- probes ---------------------------------------------------------------------------------------------


def test_swap_images_swaps_both_ways_at_once_and_keeps_case():
    text = "Image 1 is red, image 2 is blue; the first image is wider. Second image: a cat. Image 12, images 1 and 2."
    assert swap_images(text) == (
        "Image 2 is red, image 1 is blue; the second image is wider. First image: a cat. Image 12, images 1 and 2."
    )
    assert swap_images(swap_images(text)) == text
    assert swap_images("The weather in both images is sunny.") == "The weather in both images is sunny."
    for row, swapped in zip(official_rows(), SWAPPED, strict=False):
        assert swap_images(row["answer"]) == swapped


def test_other_answers_is_a_seeded_derangement_by_text():
    answers = ["a", "b", "c", "d", "e", "f"]
    first = other_answers(answers, random.Random("other_question:0"))
    assert first == other_answers(answers, random.Random("other_question:0"))  # deterministic
    assert sorted(first) == list(range(6)) and all(first[i] != i for i in range(6))  # a derangement
    seeds = {tuple(other_answers(answers, random.Random(f"other_question:{seed}"))) for seed in range(20)}
    assert len(seeds) > 1  # the seed matters
    # Two questions with the same answer text never get each other's: it would be their own answer.
    duplicated = ["same", "same", "x", "y"]
    for seed in range(20):
        pairing = other_answers(duplicated, random.Random(seed))
        assert all(duplicated[pairing[i]] != duplicated[i] for i in range(4))
    with pytest.raises(ValueError, match="at least 2"):
        other_answers(["only"], random.Random(0))
    with pytest.raises(ValueError, match="different answer"):
        other_answers(["same", "same", "same"], random.Random(0), max_tries=50)


def test_probe_items_from_the_official_rows(rows):
    references = load_references(rows)
    assert [r.question for r in references][:2] == [
        "What colors dominate each image?",
        "Are the settings for the two images indoors or outdoors?",
    ]
    probes = probe_items(references, seed=0)
    assert list(probes) == list(PROBES)
    assert [len(probes[p]) for p in PROBES] == [5, 5, 5, 4, 5]  # q4 names no image: no swapped item
    answers = [row["answer"] for row in rows]
    assert [i.prediction for i in probes["self"]] == answers
    assert [i.prediction for i in probes["empty"]] == [""] * 5
    assert [i.prediction for i in probes["swapped_images"]] == list(SWAPPED)
    assert [i.prediction for i in probes["padded"]] == [f"{a}\n\n{FILLER}" for a in answers]
    others = [i.prediction for i in probes["other_question"]]
    assert sorted(others) == sorted(answers) and all(o != a for o, a in zip(others, answers, strict=True))
    assert probes["padded"][0].id == "padded:2406825_2550" and probes["padded"][0].reference == answers[0]
    assert all(i.question == r.question for i, r in zip(probes["empty"], references, strict=True))
    assert probe_items(references, seed=0) == probes  # deterministic
    with pytest.raises(TypeError, match=r"cadqa\.load"):
        load_references(str(CADQA_OFFICIAL))  # builders never imports cadqa: the command loads the release


def test_sample_references_is_seeded_and_keeps_file_order(rows):
    references = load_references(rows)
    three = sample_references(references, 3, seed=0)
    assert three == sample_references(references, 3, seed=0) and len(three) == 3
    positions = [references.index(r) for r in three]
    assert positions == sorted(positions)
    assert len({tuple(r.question_id for r in sample_references(references, 2, seed=s)) for s in range(10)}) > 1
    assert sample_references(references, None) == references == sample_references(references, 99)
    with pytest.raises(ValueError, match="sample must be >= 1"):
        sample_references(references, 0)


# --- agreement ------------------------------------------------------------------------------------------


def test_weighted_kappa_textbook_and_hand_examples():
    # Wikipedia's Cohen's kappa example: 50 proposals, both yes 20, A yes/B no 5, A no/B yes 10, both no 15:
    # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4. With two categories the quadratic weights are
    # those of plain kappa (0 on the diagonal, 1 off it).
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert weighted_kappa(a, b, categories=(0, 1)) == pytest.approx(0.4)
    # Three categories by hand: O = 1/3 at (0,0), (1,2), (2,2); w = (i-j)^2/4; sum w*O = 1/12; marginals
    # (1/3, 1/3, 1/3) and (1/3, 0, 2/3): sum w*E = 5/12; kappa = 1 - 1/5 = 0.8.
    assert weighted_kappa([0, 1, 2], [0, 2, 2], categories=(0, 1, 2)) == pytest.approx(0.8)
    assert weighted_kappa([0, 3, 5, 5], [0, 3, 5, 5]) == pytest.approx(1.0)
    # Reversed order is worse than chance: a = 0..5, b = 5..0: sum (a-b)^2 = 70, n * sum w O / sum w E = -1.
    assert weighted_kappa(list(range(6)), list(range(5, -1, -1))) == pytest.approx(-1.0)
    assert weighted_kappa([4, 4], [4, 4]) is None  # both constant: no expected disagreement, undefined
    assert weighted_kappa([], []) is None
    with pytest.raises(ValueError, match="same items"):
        weighted_kappa([1], [1, 2])


def test_spearman_through_scipy():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties averaged: ranks (1.5, 1.5, 3) and (1, 2, 3): r = 1.5 / sqrt(1.5 * 2)
    assert spearman([0, 0, 1], [0, 1, 2]) == pytest.approx(1.5 / math.sqrt(3.0))
    assert spearman([3, 3, 3], [1, 2, 3]) is None and spearman([1], [1]) is None


# --- calibrate against the scripted server ----------------------------------------------------------------


def hand_kappa(pairs: list[tuple[int, int]]) -> Fraction:
    """kappa = 1 - n * sum_k (a_k - b_k)^2 / sum_k sum_l (a_k - b_l)^2, exactly (the quadratic-weight identity)."""
    n = len(pairs)
    observed = sum((a - b) ** 2 for a, b in pairs)
    expected = sum((a - b) ** 2 for a, _ in pairs for _, b in pairs)
    return 1 - Fraction(n * observed, expected)


def expected_pairs() -> list[tuple[int, int]]:
    """Both judges' ratings, probe after probe, question after question, where both are valid."""
    a, b = RATINGS_OF["judge-a"], RATINGS_OF["judge-b"]
    pairs = [(x, y) for probe in PROBES for x, y in zip(a[probe], b[probe], strict=True)]
    return [(x, y) for x, y in pairs if x is not None and y is not None]


def test_calibrate_reports_the_hand_computed_figures(rating_server, rows, tmp_path):
    first, second = openai_judge(rating_server, "judge-a"), openai_judge(rating_server, "judge-b")
    try:
        result = calibrate(rows, first, tmp_path / "out", sample=None, seed=0, second_backend=second)
    finally:
        first.close()
        second.close()
    assert rating_server.unknown == []
    # 24 probe items per judge; judge-a's unreadable reply is asked once more (retries=1), as in `cadvi judge`.
    assert rating_server.requests_for("judge-a") == 25 and rating_server.requests_for("judge-b") == 24
    results = result.results
    assert results["sample"] == 5 and results["n_references"] == 5 and results["skipped"] == {"swapped_images": 1}

    judge_a = results["judge"]["probes"]
    expected_means = {"self": 4.8, "empty": 0.2, "other_question": 0.25, "swapped_images": 3.5, "padded": 4.6}
    expected_histograms = {
        "self": [0, 0, 0, 0, 1, 4],
        "empty": [4, 1, 0, 0, 0, 0],
        "other_question": [3, 1, 0, 0, 0, 0],
        "swapped_images": [0, 0, 1, 1, 1, 1],
        "padded": [0, 0, 0, 0, 2, 3],
    }
    for probe in PROBES:
        summary = judge_a[probe]
        valid = [r for r in RATINGS_OF["judge-a"][probe] if r is not None]
        assert summary["n"] == len(RATINGS_OF["judge-a"][probe])
        assert summary["invalid"] == (1 if probe == "other_question" else 0)
        assert summary["mean_rating"] == pytest.approx(expected_means[probe])
        assert [summary["histogram"][str(r)] for r in range(6)] == expected_histograms[probe]
        scorer = mean_with_ci(valid)  # the project's bootstrap scorer over the same ratings
        assert (summary["ci_low"], summary["ci_high"]) == (scorer["ci_low"], scorer["ci_high"])
        assert summary["ci_low"] <= summary["mean_rating"] <= summary["ci_high"]
    assert (judge_a["self"]["ci_low"], judge_a["self"]["ci_high"]) != (4.8, 4.8)  # not a degenerate interval

    # Paired differences to self: swapped - self = (3-5, 5-5, 2-4, 4-5); padded - self = (0, -1, 0, 0, 0).
    comparisons = results["judge"]["comparisons"]
    for name, differences, mean in (
        ("swapped_images_minus_self", [-2, 0, -2, -1], -1.25),
        ("padded_minus_self", [0, -1, 0, 0, 0], -0.2),
    ):
        scorer = mean_with_ci(differences)
        figure = comparisons[name]
        assert figure["n"] == len(differences) and figure["excluded"] == 0
        assert figure["value"] == pytest.approx(mean)
        assert (figure["ci_low"], figure["ci_high"]) == (scorer["ci_low"], scorer["ci_high"])
        assert figure["ci_low"] <= mean <= figure["ci_high"]
    swapped_ci_high = comparisons["swapped_images_minus_self"]["ci_high"]
    padded = comparisons["padded_minus_self"]
    assert swapped_ci_high < 0 and padded["ci_low"] <= 0 <= padded["ci_high"]
    assert padded["reading"] == "no detectable verbosity bias"
    # Expectations (tolerance 1): self 4.8 >= 4, empty 0.2 <= 1, other 0.25 <= 1, swapped drops, padded unbiased.
    assert {p: judge_a[p]["meets_expectation"] for p in PROBES} == dict.fromkeys(PROBES, True)

    judge_b = results["second_judge"]["probes"]
    assert results["second_judge"]["model"] == "judge-b"
    expected_b = {"self": 4.6, "empty": 0.2, "other_question": 0.2, "swapped_images": 3.5, "padded": 4.6}
    assert {p: judge_b[p]["mean_rating"] for p in PROBES} == pytest.approx(expected_b)
    assert judge_b["other_question"]["invalid"] == 0
    # judge-b's swapped - self = (2-5, 5-4, 3-4, 4-5): a drop of 1 whose CI reaches above 0: not significant.
    swapped_b = results["second_judge"]["comparisons"]["swapped_images_minus_self"]
    scorer = mean_with_ci([-3, 1, -1, -1])
    assert swapped_b["value"] == pytest.approx(-1.0) and scorer["ci_high"] > 0
    assert (swapped_b["ci_low"], swapped_b["ci_high"]) == (scorer["ci_low"], scorer["ci_high"])
    assert judge_b["swapped_images"]["meets_expectation"] is False

    # Agreement over the 23 items both rated validly (judge-a's invalid other_question of q3 is left out).
    pairs = expected_pairs()
    agreed = results["agreement"]
    assert agreed["n"] == 23 and agreed["excluded"] == 1
    # By hand: sum (a-b)^2 = 1 + 2 + 2 + 2 + 2 = 9; sum a = 63, sum a^2 = 279, sum b = 62, sum b^2 = 270;
    # sum_k sum_l (a_k - b_l)^2 = 23*279 + 23*270 - 2*63*62 = 4815; kappa = 1 - 23*9/4815 = 512/535.
    assert hand_kappa(pairs) == Fraction(512, 535)
    assert agreed["weighted_kappa"]["value"] == pytest.approx(512 / 535)
    assert agreed["weighted_kappa"]["weights"] == "quadratic"
    # Spearman by hand: average ranks of a: 0 -> 4 (7 zeros), 1 -> 8.5, 2 -> 10, 3 -> 11, 4 -> 13.5, 5 -> 19.5;
    # of b: 0 -> 4, 1 -> 8.5, 2 -> 10, 3 -> 11, 4 -> 14 (5 fours), 5 -> 20; about the mean rank 12:
    # sum da*db = 847, sum da^2 = 936.5, sum db^2 = 945.5.
    assert agreed["spearman"]["value"] == pytest.approx(847 / math.sqrt(936.5 * 945.5))
    # The CIs: 1,000 resamples of the 23 pairs with random.Random(0), the 2.5% and 97.5% interpolated quantiles.
    rng = random.Random(0)
    kappas = []
    for _ in range(1000):
        chosen = [pairs[i] for i in rng.choices(range(23), k=23)]
        if len({a for a, _ in chosen}) > 1 or len({b for _, b in chosen}) > 1:
            kappas.append(float(hand_kappa(chosen)))
    kappas.sort()

    def quantile(q: float) -> float:
        position = q * (len(kappas) - 1)
        low = int(position)
        return kappas[low] + (kappas[min(low + 1, len(kappas) - 1)] - kappas[low]) * (position - low)

    kappa = agreed["weighted_kappa"]
    assert kappa["ci_low"] == pytest.approx(quantile(0.025)) and kappa["ci_high"] == pytest.approx(quantile(0.975))
    for figure in (kappa, agreed["spearman"]):
        assert -1 <= figure["ci_low"] <= figure["value"] <= figure["ci_high"] <= 1

    # The files: the JSON is the result, one panel per probe in the PNG, the figures in the Markdown.
    assert json.loads(result.paths["json"].read_text()) == json.loads(json.dumps(results))
    assert result.paths["histograms"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(result.paths["histograms"]).shape[:2] == (320, 1600)  # five 3.2-inch panels at 100 dpi
    markdown = result.paths["markdown"].read_text()
    assert markdown == markdown_report(results)
    assert "| self | near 5 | 5 | 0 | 4.80 [" in markdown and "| other_question | near 0 | 5 | 1 | 0.25 [" in markdown
    assert "| swapped_images - self | 4 | -1.25 [" in markdown and "| 23 | 1 | 0.96 [" in markdown
    assert "1 reference names no image, so they have no swapped_images probe." in markdown
    lines = [json.loads(line) for line in result.paths["judgements"].read_text().splitlines()]
    assert len(lines) == 24 and lines[0] == {
        "probe": "self",
        "question_id": QUESTION_IDS[0],
        "prediction": rows[0]["answer"],
        "rating": 5,
        "raw": ["5"],
        "second_rating": 5,
    }

    # A rerun resumes both judges' runs: no request is sent again, the figures are the same.
    before = len(rating_server.received)
    first, second = openai_judge(rating_server, "judge-a"), openai_judge(rating_server, "judge-b")
    try:
        again = calibrate(rows, first, tmp_path / "out", sample=None, seed=0, second_backend=second)
    finally:
        first.close()
        second.close()
    assert len(rating_server.received) == before and again.results == results


def test_a_failing_judge_server_writes_no_report_and_the_rerun_resumes(rating_server, rows, tmp_path):
    rating_server.script = [(200, {})] * 6 + [(503, {})] * 400  # six answers, then the server fails
    backend = openai_judge(rating_server, "judge-a", max_attempts=2, backoff_base=0.001, backoff_max=0.002)
    try:
        with pytest.raises(BackendUnavailableError) as failure:
            calibrate(rows, backend, tmp_path / "out", sample=None)
    finally:
        backend.close()
    assert 0 < len(failure.value.settled) < 24
    assert not (tmp_path / "out" / "calibration.json").exists()
    rating_server.script = []  # back up
    sent = len(rating_server.received)
    backend = openai_judge(rating_server, "judge-a")
    try:
        result = calibrate(rows, backend, tmp_path / "out", sample=None)
    finally:
        backend.close()
    assert len(rating_server.received) - sent == 25 - 6  # only what was left: the six answers were kept
    assert result.results["judge"]["probes"]["self"]["mean_rating"] == pytest.approx(4.8)
    assert result.results["second_judge"] is None and result.results["agreement"] is None


def test_a_judge_that_always_says_5_fails_the_zero_probes_and_agreement_is_undefined(tmp_path):
    rows = [
        {"question_id": f"q{i}", "question": f"What differs in pair {i}?", "answer": f"Thing {i}."} for i in range(3)
    ]
    first = ScriptedBackend({"": ["5"] * 12}, model="always-5")
    second = ScriptedBackend({"": ["5"] * 12}, model="also-5")
    calls = []
    result = calibrate(
        rows, first, tmp_path, sample=None, second_backend=second, progress=lambda *call: calls.append(call)
    )
    results = result.results
    probes = results["judge"]["probes"]
    assert {p: probes[p]["meets_expectation"] for p in PROBES} == {
        "self": True,
        "empty": False,  # 5 > 0 + tolerance
        "other_question": False,
        "swapped_images": None,  # no reference names an image: no item, no figure
        "padded": True,
    }
    assert probes["swapped_images"]["n"] == 0 and probes["swapped_images"]["mean_rating"] is None
    assert results["skipped"] == {"swapped_images": 3}
    assert results["judge"]["comparisons"]["padded_minus_self"] == {
        "n": 3,
        "excluded": 0,
        "value": 0.0,
        "ci_low": 0.0,
        "ci_high": 0.0,
        "confidence": 0.95,
        "reading": "no detectable verbosity bias",
    }
    agreed = results["agreement"]  # both judges constant: kappa and rho undefined, not 0 or 1
    assert agreed["n"] == 12 and agreed["weighted_kappa"]["value"] is None and agreed["spearman"]["value"] is None
    assert agreed["weighted_kappa"]["ci_low"] is None and agreed["spearman"]["undefined_resamples"] == 1000
    assert "| 12 | 0 | - | - |" in result.paths["markdown"].read_text()
    assert calls[-1] == ("second judge", 12, 12) and ("judge", 12, 12) in calls
    assert all(len(batch) for batch in first.batches) and sum(map(len, first.batches)) == 12


# --- the command ----------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    """``cadvi.cli.main`` with ``calibrate`` registered at the top level (it is wired as ``cadvi judge calibrate``)."""
    import logging

    import cadvi.cli
    from cadvi import options
    from cadvi.commands.calibrate import register_calibrate

    group = types.SimpleNamespace(register=register_calibrate)
    monkeypatch.setattr(cadvi.cli, "COMMAND_GROUPS", (*cadvi.cli.COMMAND_GROUPS, group))
    # `-q` sets the levels of our loggers for the whole process: restore them for the tests that follow.
    names = ["", *options.OUR_LOGGERS, *options.CHATTY_LOGGERS, *options.RETRY_LOGGERS]
    levels = {name: logging.getLogger(name).level for name in names}
    handlers = list(logging.getLogger().handlers)
    yield cadvi.cli.main
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().handlers[:] = handlers


def test_cli_end_to_end(cli, rating_server, rows, tmp_path, capsys):
    references = tmp_path / "CaD_QA_eval.jsonl"
    references.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    out = tmp_path / "calibration"
    arguments = ["calibrate", "--references", str(references), "--out", str(out), "--sample", "0", "-q"]
    arguments += ["--backend", "openai", "--base-url", rating_server.base_url, "--model", "judge-a"]
    arguments += ["--cache-dir", str(tmp_path / "cache")]
    assert cli([*arguments, "--second-model", "judge-b"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "judge calibration (judge-a), 5 questions" in printed
    assert "agreement over 23 items: weighted kappa 0.96 [" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "calibration.json",
        "calibration.md",
        "histograms.png",
        "judgements.jsonl",
        "runs",
    ]
    results = json.loads((out / "calibration.json").read_text())
    assert results["references"] == str(references) and results["seed"] == 0
    assert results["judge"]["probes"]["self"]["mean_rating"] == pytest.approx(4.8)
    assert results["judge"]["sampling"]["max_tokens"] == 20 and results["judge"]["sampling"]["temperature"] == 0.0
    assert results["agreement"]["weighted_kappa"]["value"] == pytest.approx(512 / 535)
    assert (out / "histograms.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Second judge: `judge-b`" in (out / "calibration.md").read_text()

    # --sample 3 draws three questions (seeded), and their probes only.
    sampled = tmp_path / "sampled"
    assert cli([*[a if a != str(out) else str(sampled) for a in arguments], "--sample", "3"]) == 0
    assert json.loads((sampled / "calibration.json").read_text())["judge"]["probes"]["self"]["n"] == 3

    # Mistakes: one line, exit status 1, nothing written.
    capsys.readouterr()
    assert cli([*arguments, "--second-base-url", rating_server.base_url]) == 1
    assert capsys.readouterr().err == "cadvi: error: --second-base-url needs --second-model\n"
    no_url = ["calibrate", "--references", str(references), "--out", str(tmp_path / "x"), "-q"]
    assert cli([*no_url, "--backend", "openai", "--model", "judge-a"]) == 1
    assert capsys.readouterr().err.startswith("cadvi: error: --backend openai needs --base-url")
    over = [a if a != str(out) else str(tmp_path) for a in arguments]  # --out holding --references
    assert cli(over) == 1
    error = capsys.readouterr().err
    assert error.startswith("cadvi: error: refusing to write the calibration folder") and error.count("\n") == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_cadvi_judge_calibrate_against_a_real_transformers_serve(shared_server, tmp_path):
    """The report works end to end against a real local server (the tiny chat model: its ratings are gibberish,
    so they are counted invalid, never scored)."""
    from tests.conftest import CADQA_OFFICIAL, shared_file

    out = tmp_path / "calibration"
    command = [sys.executable, "-m", "cadvi", "judge", "calibrate", "--references", str(shared_file(CADQA_OFFICIAL))]
    command += ["--out", str(out), "--sample", "2", "--backend", "openai", "--base-url", shared_server.base_url]
    command += ["--model", shared_server.model_id, "--max-concurrency", "4"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "calibration.json").read_text())
    assert (out / "histograms.png").read_bytes()[:4] == b"\x89PNG" and (out / "calibration.md").is_file()
    assert results["sample"] == 2 and set(results["probes"]) >= {"self", "empty", "swapped_images", "padded"}
    assert results["judge"], results
