"""Every validation rule, as the user sees it: a build error naming the file and the row."""

from __future__ import annotations

import copy

import pytest

import cadinst
import cadqa
from builders.release.validate import ReleaseValidationError
from tests.conftest import cadinst_row, cadqa_row


def broken(mutate) -> dict:
    row = copy.deepcopy(cadinst_row(0))
    mutate(row)
    return row


CADINST_CASES = [
    ("missing key", lambda r: r.pop("image"), "missing key(s) 'image'"),
    ("extra key", lambda r: r.update(extra=1), "unexpected key(s) 'extra'"),
    ("id type", lambda r: r.update(id=123), "'id' must be a non-empty string, got int 123"),
    ("empty id", lambda r: r.update(id=" "), "'id' must be a non-empty string"),
    ("image string", lambda r: r.update(image="a.jpg"), "'image' must be a list of two file names, got str"),
    ("three images", lambda r: r.update(image=["a", "b", "c"]), "'image' must hold exactly two file names, got 3"),
    ("image not str", lambda r: r.update(image=["a.jpg", 5]), "'image' must hold two non-empty strings"),
    ("odd turns", lambda r: r["conversations"].pop(), "must hold human/gpt turn pairs, got 3 turn(s)"),
    (
        "not alternating",
        lambda r: r["conversations"][1].update({"from": "human"}),
        "turn 2 must be from 'gpt' (turns alternate human/gpt), got 'human'",
    ),
    (
        "one placeholder",
        lambda r: r["conversations"][0].update(value="Image 1: <image>\nhi"),
        "turn 1 must contain exactly two <image> placeholders, found 1",
    ),
    (
        "placeholder later",
        lambda r: r["conversations"][2].update(value="<image> again"),
        "turn 3 must not contain <image> (only the first human turn does), found 1",
    ),
    ("empty text", lambda r: r["conversations"][1].update(value=""), "turn 2: 'value' must be a non-empty string"),
    ("turn keys", lambda r: r["conversations"][1].update(weight=1), "turn 2: unexpected key(s) 'weight'"),
    ("turn not object", lambda r: r["conversations"].__setitem__(1, "text"), "turn 2 must be an object"),
]


@pytest.mark.parametrize(("case", "mutate", "message"), CADINST_CASES, ids=[c[0] for c in CADINST_CASES])
def test_cadinst_rule_names_file_row_and_reason(case, mutate, message, write_rows, cache):
    rows = [cadinst_row(0), cadinst_row(1), broken(mutate)]
    rows[2]["id"] = rows[2]["id"] if case in ("id type", "empty id") else "bad"
    path = write_rows(rows)
    with pytest.raises(ReleaseValidationError) as caught:
        cadinst.load(path, "phase1", cache_dir=cache)
    assert f"{path}:3: " in str(caught.value)
    assert message in str(caught.value)
    assert all(p.row == 3 for p in caught.value.problems)
    assert not cache.exists() or not any(cache.rglob("*.arrow")), "a failed build must leave no cache"


def test_every_problem_of_every_row_is_reported(write_rows, cache):
    rows = [cadinst_row(0), cadinst_row(1), cadinst_row(0), {"id": "x"}, "not a row"]
    path = write_rows(rows)
    with pytest.raises(ReleaseValidationError) as caught:
        cadinst.load(path, "phase1", cache_dir=cache)
    text = str(caught.value)
    assert text.startswith("3 problem(s)")
    assert f"{path}:3: duplicate id" in text and f"(first seen at {path}:1)" in text
    assert f"{path}:4: missing key(s) 'conversations', 'image'" in text
    assert f"{path}:5: a row must be an object, got str" in text


def test_problems_across_phases_are_collected_in_one_pass(tmp_path, cache):
    from tests.conftest import write_json_release

    bad1, bad2 = cadinst_row(0, 1), cadinst_row(0, 2)
    bad1["image"], bad2["conversations"] = ["only-one.jpg"], []
    folder = write_json_release(tmp_path / "r", {1: [bad1], 2: [bad2]})
    with pytest.raises(ReleaseValidationError) as caught:
        cadinst.load(folder, "all", cache_dir=cache)
    assert [(p.file.rsplit("/", 1)[-1], p.row) for p in caught.value.problems] == [
        ("phase1_instruct_data_test.json", 1),
        ("phase2_instruct_data_test.json", 1),
    ]


def test_invalid_json_names_line_and_column(write_rows, cache):
    path = write_rows([cadinst_row(0)])
    path.write_text(path.read_text()[:-5])
    with pytest.raises(ReleaseValidationError, match=r"not valid JSON \(line 1, column \d+"):
        cadinst.load(path, "phase1", cache_dir=cache)


def test_hub_parquet_literal_that_is_not_python(tmp_path, cache):
    from tests.conftest import write_hub_parquet_release

    folder = write_hub_parquet_release(tmp_path / "r", {1: [cadinst_row(0)]})
    import pyarrow.parquet as pq

    path = folder / "Phase1" / "phase1_test.parquet"
    table = pq.read_table(path).to_pydict()
    table["image"] = ["__import__('os').system('echo owned')"]
    import pyarrow as pa

    pq.write_table(pa.table(table), path)
    with pytest.raises(ReleaseValidationError, match=r"phase1_test.parquet:1: column 'image' is not a Python literal"):
        cadinst.load(folder, "phase1", cache_dir=cache)


QA_CASES = [
    ("no prefix", lambda r: r.update(text="What differs?"), "'text' must start with"),
    ("no question", lambda r: r.update(text="Image 1: <image>\nImage 2: <image>\n "), "has no question after"),
    ("third placeholder", lambda r: r.update(text=r["text"] + " <image>"), "exactly two <image> placeholders, found 3"),
    ("empty answer", lambda r: r.update(answer=""), "'answer' must be a non-empty string"),
    ("renamed key", lambda r: r.update(question_id=None) or r.update(qid="1"), "unexpected key(s) 'qid'"),
]


@pytest.mark.parametrize(("case", "mutate", "message"), QA_CASES, ids=[c[0] for c in QA_CASES])
def test_cadqa_rule_names_file_row_and_reason(case, mutate, message, write_rows, cache):
    bad = cadqa_row(2)
    mutate(bad)
    path = write_rows([cadqa_row(0), cadqa_row(1), bad], name="CaD_QA_eval_bad.jsonl")
    with pytest.raises(ReleaseValidationError) as caught:
        cadqa.load(path, cache_dir=cache)
    assert f"{path}:3: " in str(caught.value)
    assert message in str(caught.value)


def test_cadqa_duplicate_question_id(write_rows, cache):
    path = write_rows([cadqa_row(0), cadqa_row(0)], name="qa.jsonl")
    with pytest.raises(ReleaseValidationError, match=r"qa.jsonl:2: duplicate question_id '0_1000'"):
        cadqa.load(path, cache_dir=cache)
