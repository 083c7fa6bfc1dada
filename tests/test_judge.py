"""The CaD-QA judge: the rating parser, the core's retry and invalid policy, and real servers behind it."""

from __future__ import annotations

import json

import pytest

from builders.judge import (
    DEFAULT_JUDGE_MODEL,
    JUDGE_TEMPLATE,
    JudgeItem,
    RatingSummary,
    judge,
    parse_rating,
    read_predictions,
)
from builders.llm import make_backend
from cadvi.cli import main
from eval_tasks.cadqa.judge_server import JUDGE_ENV, LmmsEvalJudgeBackend, LmmsEvalJudgeSettings
from eval_tasks.scoring import mean_with_ci
from prompts import load_template, render
from tests.conftest import CADQA_OFFICIAL
from tests.scripted import Fail, ScriptedBackend


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("4", 4),
        ("Rating: 4", 4),
        ("4/5", 4),
        ("**4**", 4),
        ("4.", 4),
        ("The rating is 4.", 4),
        ("0", 0),
        ("5", 5),
        ("[3]", 3),
        ("**Rating:** 2", 2),
        ("Score: 4.0", 4),
        ("I would rate it 3 (out of 5).", 3),
        ("Rating (0-5): 1", 1),  # the scale repeated back is not a second candidate
        ("On a scale from 0 to 5, I rate it 4.", 4),
        ("4\n\nThe prediction names 2 dogs where the reference has 10.", 4),  # verdict first, numbers after
        ("Image 2 is described correctly. Rating: 2", 2),  # "Image 2" is not a rating
        ("Sure!\nRating: 5", 5),
        # rejected
        ("6", None),
        ("-1", None),
        ("7/10", None),
        ("Rating: 4/10", None),
        ("10", None),
        ("3.5", None),
        ("", None),
        (None, None),
        ("The predicted answer is good.", None),
        ("Image 1 and Image 2", None),
        ("3 or 4", None),
        ("2-3", None),
        ("Rating: 4. Rating: 3", None),
        ("4. Rating: 3", None),
        ("��ectst3�� object parked at`ifferences", None),  # what the tiny model writes: "t3" is no number
        # a list number is not a rating: only a reply that is a rating in an accepted form counts
        ("Commonalities:\nDifferences:\n1.", None),
        ("1. The predicted answer names the wrong animal.", None),
        ("Differences:\n1. Object types: a dog", None),
        ("4 out of 5", 4),
        ("The score is 2", 2),
        ("Rating: 3.\nThe answer scores on 2 of the 4 points.", 3),
    ],
)
def test_parse_rating(text, rating):
    assert parse_rating(text) == rating


def items(n: int = 4) -> list[JudgeItem]:
    return [JudgeItem(f"q{i}", f"What differs in pair {i}?", f"Reference {i}.", f"Prediction {i}.") for i in range(n)]


def test_judge_retries_once_and_excludes_invalid_from_the_mean():
    ask = ScriptedBackend(
        {
            "Prediction 0.": ["4"],
            "Prediction 1.": ["I cannot tell.", "3/5"],
            "Prediction 2.": [Fail("APIConnectionError: refused"), "still no number"],  # refused: an attempt
            "Prediction 3.": ["Rating: 2"],
        }
    )
    settled = []
    report = judge(items(), ask, progress=settled.append)

    assert [len(batch) for batch in ask.batches] == [4, 2]  # only the unreadable ones are asked again
    retried = ask.batches[1][0]
    assert "Question: What differs in pair 1?" in retried and "Reference answer: Reference 1." in retried
    by_id = {record.item.id: record for record in report.records}
    assert [by_id[f"q{i}"].rating for i in range(4)] == [4, 3, None, 2]
    assert [by_id[f"q{i}"].attempts for i in range(4)] == [1, 2, 2, 1]
    assert by_id["q2"].raw == ("", "still no number") and by_id["q2"].errors == ("APIConnectionError: refused",)
    # Hand-computed: (4 + 3 + 2) / 3 over the valid items; the invalid one is not a 0 ((4+3+0+2)/4 = 2.25).
    assert report.n == 4 and report.invalid == 1 and report.summary.valid == 3
    assert report.mean == pytest.approx(3.0)
    assert report.histogram == {0: 0, 1: 0, 2: 1, 3: 1, 4: 1, 5: 0}
    assert report.ci is not None and report.ci[0] <= 3.0 <= report.ci[1]
    assert sum(settled) == 4
    record = by_id["q2"].to_record()
    assert record["rating"] is None and record["valid"] is False and record["attempts"] == 2
    assert record["judge_model"] == "scripted-judge"
    assert record["template_sha256"] == load_template(JUDGE_TEMPLATE).sha256
    assert "1 invalid (excluded from the mean, not scored 0)" in report.summary.line()


def test_judge_retries_are_configurable():
    ask = ScriptedBackend({"Prediction 0.": ["maybe"], "Prediction 1.": ["5"]})
    report = judge(items(2), ask, retries=0)
    assert len(ask.batches) == 1 and report.invalid == 1 and report.mean == 5.0
    with pytest.raises(ValueError, match="retries"):
        judge(items(2), ask, retries=-1)
    with pytest.raises(ValueError, match="duplicate"):
        judge(items(2) + items(1), ask)


def test_rating_summary_with_the_shared_bootstrap():
    ratings = [5, 5, 4, 0, None, 3, None, 1]
    summary = RatingSummary.of(ratings)
    assert summary.mean == pytest.approx(18 / 6)
    assert (summary.ci_low, summary.ci_high) == pytest.approx(
        (mean_with_ci([5, 5, 4, 0, 3, 1])["ci_low"], mean_with_ci([5, 5, 4, 0, 3, 1])["ci_high"])
    )
    assert summary.histogram == {0: 1, 1: 1, 2: 0, 3: 1, 4: 1, 5: 2}
    assert (summary.n, summary.valid, summary.invalid) == (8, 6, 2)
    empty = RatingSummary.of([None, None])
    assert empty.mean is None and empty.invalid == 2 and "no valid rating" in empty.line()
    with pytest.raises(ValueError):
        RatingSummary.of([6])


def test_template_names_its_inputs_and_the_scale():
    template = load_template(JUDGE_TEMPLATE)
    assert "unpublished" in template.source  # says so, in a Jinja comment that is not rendered
    text = render(JUDGE_TEMPLATE, question="Q?", reference="R.", prediction="P.")
    assert "unpublished" not in text
    assert "Question: Q?" in text and "Reference answer: R." in text and "Predicted answer: P." in text
    assert all(f"\n{level}: " in text for level in range(6))
    assert text.endswith("Answer with a single integer from 0 to 5.")


def test_settings_from_env_and_predictions_file(tmp_path):
    settings = LmmsEvalJudgeSettings.from_env({JUDGE_ENV["num_retries"]: "2", JUDGE_ENV["retry_delay"]: "0.5"})
    assert (settings.model, settings.num_retries, settings.retry_delay) == (DEFAULT_JUDGE_MODEL, 2, 0.5)
    with pytest.raises(ValueError, match="CADQA_JUDGE_NUM_RETRIES"):
        LmmsEvalJudgeSettings.from_env({"CADQA_JUDGE_NUM_RETRIES": "many"})
    good = tmp_path / "good.jsonl"
    good.write_text('{"question_id": "1_2", "prediction": "A dog."}\n\n{"question_id": "3_4", "text": "A cat."}\n')
    assert read_predictions(good) == {"1_2": "A dog.", "3_4": "A cat."}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": "1_2", "prediction": "x"}\n{"question_id": "1_2", "prediction": "y"}\nnope\n')
    with pytest.raises(ValueError, match=r"2 problem\(s\)") as error:
        read_predictions(bad)
    assert "bad.jsonl:2: duplicate" in str(error.value) and "bad.jsonl:3: not JSON" in str(error.value)


# ----- a real `transformers serve` with the tiny (gibberish-writing) model as the judge -----


def test_gibberish_judge_is_invalid_not_zero(shared_server):
    with make_backend("openai", shared_server.model_id, base_url=shared_server.base_url, timeout=30.0) as llm:
        report = judge(items(3), llm)
    assert report.n == 3 and report.invalid == 3 and report.mean is None and report.ci is None
    assert report.histogram[0] == 0  # nothing was scored 0
    assert all(record.attempts == 2 and all(record.raw) and not record.errors for record in report.records)
    assert report.records[0].model == shared_server.model_id
    assert "no valid rating: 3 invalid (excluded from the mean, not scored 0) of 3 judged" in report.summary.line()
    # A judge that never answers (a model name the server refuses) stops the run instead.
    refused = pytest.raises(RuntimeError, match="failed every request before answering any")
    with make_backend("openai", "other/model", base_url=shared_server.base_url) as llm, refused:
        judge(items(2), llm)


def test_lmms_eval_judge_server_adapter(shared_server, monkeypatch):
    monkeypatch.setenv("API_TYPE", "openai")
    monkeypatch.setenv("OPENAI_API_URL", shared_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    settings = LmmsEvalJudgeSettings(model=shared_server.model_id, num_retries=1, retry_delay=0.0, timeout=30)
    report = judge(items(2), LmmsEvalJudgeBackend(settings))
    assert report.invalid == 2 and all(record.attempts == 2 and record.raw[0] for record in report.records)
    # A judge that never answered is misconfigured (here: a model name the server refuses): the run stops.
    refused = LmmsEvalJudgeBackend(LmmsEvalJudgeSettings(model="other/model", num_retries=1, retry_delay=0.0))
    with pytest.raises(RuntimeError, match="failed before answering any request"):
        judge(items(1), refused)
    # Once it has answered, a request that still fails after lmms-eval's retries makes one item invalid.
    answered = LmmsEvalJudgeBackend(settings)
    assert judge(items(1), answered).records[0].raw[0]
    answered.config.model_name = "other/model"
    report = judge(items(1), answered, retries=0)
    assert report.invalid == 1 and "400" in report.records[0].errors[0] and report.records[0].raw == ("",)
    monkeypatch.setenv("OPENAI_API_KEY", "")
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        LmmsEvalJudgeBackend(settings)


def test_cadvi_judge_end_to_end(shared_server, tmp_path, capsys):
    rows = [json.loads(line) for line in CADQA_OFFICIAL.read_text().splitlines()[:4]]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(
        "".join(json.dumps({"question_id": r["question_id"], "prediction": "Both show a street."}) + "\n" for r in rows)
    )
    out = tmp_path / "judged" / "judgements.jsonl"
    arguments = ["judge", "--predictions", str(predictions), "--references", str(CADQA_OFFICIAL), "--out", str(out)]
    arguments += ["--backend", "openai", "--base-url", shared_server.base_url, "--model", shared_server.model_id]
    assert main([*arguments, "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "4 of 7,520 questions" in printed
    assert "no valid rating: 4 invalid (excluded from the mean, not scored 0) of 4 judged" in printed

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question_id"] for r in records] == [r["question_id"] for r in rows]
    first = records[0]
    assert first["rating"] is None and first["valid"] is False and first["attempts"] == 2 and len(first["raw"]) == 2
    assert first["reference"] == rows[0]["answer"] and first["question"] == rows[0]["text"].split("\n", 2)[2]
    assert first["template_sha256"] == load_template(JUDGE_TEMPLATE).sha256
    summary = json.loads((out.parent / "judgements.summary.json").read_text())
    assert summary["invalid"] == 4 and summary["mean_rating"] is None and summary["histogram"]["0"] == 0

    # A judge that never answers: an error, and no judgements file.
    out.unlink()
    refused = [a if a != shared_server.model_id else "other/model" for a in arguments]
    assert main([*refused, "--cache-dir", str(tmp_path / "cache")]) == 1
    printed = " ".join(capsys.readouterr().err.split())
    assert "failed every request before answering any" in printed and not out.exists()

    # A prediction for a question CaD-QA does not have is an error, not a silent skip.
    predictions.write_text('{"question_id": "1_2", "prediction": "x"}\n')
    assert main([*arguments, "--cache-dir", str(tmp_path / "cache")]) == 1
    assert "1 predictions have no reference" in capsys.readouterr().err
