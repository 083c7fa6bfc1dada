"""Nothing lost, nothing false: the cases a first-time user broke, each reproduced for real.

A closed port and a real ``transformers serve`` that is killed and restarted for the outages; real
captions, a real tiny model and the real ``cadvi`` command for the rest.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import datasets
import pytest
import yaml

import cadinst.hub
import cadqa.hub
from builders.captions import read_captions
from builders.export import PROVENANCE, export_phase1
from builders.judge import JudgeItem, judge
from builders.llm.base import TOO_LONG, BackendUnavailableError, Request, Sampling, make_backend
from builders.outputs import MARKER, UnsafeOutputError
from builders.pair_file import PairRecord, read_pairs, write_pairs
from builders.pairs import PairingConfig
from builders.phase1 import Phase1Settings, run_phase1
from builders.release.validate import ReleaseValidationError
from builders.runs import InputFile, NewInputsError, all_records
from builders.stages import nouns_stage, pairs_stage
from tests.conftest import CADQA_OFFICIAL
from tests.llm_fixtures import CAPTIONS, free_port, running_server

ROOT = Path(__file__).resolve().parents[1]
CADVI = Path(sys.executable).with_name("cadvi")
CADQA_SAMPLE = ROOT / "cadqa" / "sample" / "CaD_QA_eval_sample.jsonl"
SHARD_2_OF_2 = ["--num-shards", "2", "--shard-index", "2"]
GREEDY = Phase1Settings(sampling=Sampling(max_tokens=160, temperature=0.0, seed=0), max_attempts=2)


def cadvi(*arguments: object, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """The real command, offline, in an 80-column terminal (where rich used to wrap error lines)."""
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "80",
        **env,
    }
    return subprocess.run(
        [str(CADVI), *map(str, arguments)], capture_output=True, text=True, env=environment, timeout=timeout
    )


def some_pairs(real_pairs: Path, folder: Path, count: int, start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_pairs(read_pairs(real_pairs)[start : start + count], folder / f"pairs-{start}-{count}.jsonl")


def assert_every_pair_once(run: Path, pairs_file: Path, max_attempts: int) -> None:
    done = Counter(r["pair_id"] for r in all_records(run))
    rejected = Counter(r["pair_id"] for r in all_records(run, "rejects"))
    assert set(done.values()) <= {1}, "no pair twice"
    exhausted = {p for p, n in rejected.items() if n >= max_attempts} - set(done)
    assert set(done) | exhausted == {p.pair_id for p in read_pairs(pairs_file)}
    failed = [r for r in all_records(run, "rejects") if "Connection" in r["reason"] or "cancelled" in r["reason"]]
    assert failed == [], "a failure of the model server is never a rejected output"


# ----- 1. a server outage loses nothing -----


def test_unreachable_server_stops_at_once_and_a_rerun_does_every_pair(real_pairs, parrot, tmp_path):
    pairs = some_pairs(real_pairs, tmp_path, 6)
    run = tmp_path / "run"
    command = ["generate", "phase1", "--pairs", pairs, "--out", run, "--backend", "openai", "--model", parrot]
    command += ["--max-tokens", "160", "--temperature", "0", "--max-attempts", "2"]
    started = time.monotonic()
    down = cadvi(*command, "--base-url", f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    assert down.returncode == 75, down.stderr
    assert time.monotonic() - started < 60, "a health check, not minutes of retries"
    assert "no model server answers" in down.stderr and "6 pairs left to do" in down.stderr
    assert "Traceback" not in down.stderr
    assert list(all_records(run)) == [] and list(all_records(run, "rejects")) == []

    with running_server(parrot, tmp_path / "home") as server:
        up = cadvi(*command, "--base-url", server.base_url)
    assert up.returncode == 0, up.stderr
    assert "6 pairs in this shard: 0 already done" in up.stdout
    assert "HTTP Request" not in up.stderr, "httpx logs one line per request: hidden at the default verbosity"
    assert_every_pair_once(run, pairs, max_attempts=2)
    assert export_phase1(run, tmp_path / "release") >= 1


def test_server_killed_mid_run_stops_the_run_and_the_rerun_finishes_it(real_pairs, parrot, tmp_path):
    pairs_file = some_pairs(real_pairs, tmp_path, 10)
    pairs = read_pairs(pairs_file)
    run = tmp_path / "run"
    with running_server(parrot, tmp_path / "home") as server:
        options = {"base_url": server.base_url, "max_concurrency": 1, "max_attempts": 2, "backoff_base": 0.05}
        backend = make_backend("openai", server.model_id, timeout=30, **options)
        shard = run / "records" / "shard-00000-of-00001.jsonl"
        rejects = run / "rejects" / "shard-00000-of-00001.jsonl"

        def kill_after_two() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and _lines(shard) + _lines(rejects) < 2:
                time.sleep(0.02)
            server.kill()

        killer = threading.Thread(target=kill_after_two)
        killer.start()
        with pytest.raises(BackendUnavailableError, match="in a row failed at the model server") as stopped:
            run_phase1(pairs, backend, run, GREEDY, progress=False, max_failures_in_a_row=2)
        killer.join()
        summary = stopped.value.summary
        assert summary.left > 0 and summary.failed >= 2
        assert summary.valid + summary.rejected == summary.attempted, "failed requests are no attempts"
        server.start()
        again = run_phase1(pairs, backend, run, GREEDY, progress=False)
        backend.close()
    assert again.complete and again.already_done == summary.items - summary.left
    assert_every_pair_once(run, pairs_file, max_attempts=2)


def test_judge_outage_is_not_an_invalid_judgement(shared_server, own_server, tmp_path):
    rows = [json.loads(line) for line in CADQA_OFFICIAL.read_text().splitlines()[:4]]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(
        "".join(json.dumps({"question_id": r["question_id"], "prediction": "A dog."}) + "\n" for r in rows[:2])
    )
    out = tmp_path / "judged.jsonl"
    command = ["judge", "--predictions", predictions, "--references", CADQA_OFFICIAL, "--out", out]
    command += ["--backend", "openai", "--model", shared_server.model_id, "--cache-dir", tmp_path / "cache"]
    down = cadvi(*command, "--base-url", f"http://127.0.0.1:{free_port()}/v1")
    assert down.returncode == 75 and "no model server answers" in down.stderr, down.stderr
    assert not out.exists(), "nothing judged, nothing written (no invalid judgements)"

    first = cadvi(*command, "--base-url", shared_server.base_url)
    assert first.returncode == 0, first.stderr
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question_id"] for r in kept] == [r["question_id"] for r in rows[:2]]
    predictions.write_text(
        "".join(json.dumps({"question_id": r["question_id"], "prediction": "A dog."}) + "\n" for r in rows)
    )
    second = cadvi(*command, "--base-url", shared_server.base_url)
    assert second.returncode == 0, second.stderr
    assert "2 of 4 items already judged" in second.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question_id"] for r in records] == [r["question_id"] for r in rows] and records[:2] == kept

    # In process: the judge server dies; its items stay to do instead of becoming invalid.
    backend = make_backend("openai", own_server.model_id, base_url=own_server.base_url, max_attempts=1, timeout=30)
    items = [JudgeItem(f"q{i}", "What differs?", "Image 1 has a dog.", "A dog.") for i in range(3)]
    assert judge(items[:1], backend, run_dir=tmp_path / "judge-run").n == 1
    own_server.kill()
    with pytest.raises(BackendUnavailableError) as stopped:
        judge(items, backend, run_dir=tmp_path / "judge-run")
    assert [j.item.id for j in stopped.value.settled] == ["q0"], "what was judged before the outage is kept"
    backend.close()


# ----- 2. outputs never replace sources or foreign folders -----


def test_outputs_never_replace_a_source_or_a_foreign_folder(tmp_path, cache):
    folder = tmp_path / "data"
    folder.mkdir()
    source = folder / "CaD_QA_eval.jsonl"
    source.write_bytes(CADQA_SAMPLE.read_bytes())
    over = cadvi("build", "cadqa", "--source", source, "--out", folder, "--overwrite", "--cache-dir", cache)
    assert over.returncode == 1 and "contains the source" in over.stderr, over.stderr
    assert source.read_bytes() == CADQA_SAMPLE.read_bytes()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = cadvi("build", "cadqa", "--source", source, "--out", foreign, "--overwrite", "--cache-dir", cache)
    assert refused.returncode == 1 and "not written by cadvi" in refused.stderr
    assert (foreign / "notes.txt").read_text() == "mine"

    built = tmp_path / "built"
    for _ in range(2):  # a folder cadvi built is replaced with --overwrite
        result = cadvi("build", "cadqa", "--source", source, "--out", built, "--overwrite", "--cache-dir", cache)
        assert result.returncode == 0, result.stderr
    assert (built / MARKER).is_file()

    with pytest.raises(UnsafeOutputError, match="is the source"):
        nouns_stage(CAPTIONS, CAPTIONS)
    run = tmp_path / "run"
    (run / "records").mkdir(parents=True)
    (run / "manifest.json").write_text('{"identity": {}, "details": {}, "inputs": []}')
    with pytest.raises(UnsafeOutputError, match="is the source"):
        export_phase1(run, run, overwrite=True)
    assert (run / "manifest.json").exists()
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text('{"question_id": "1_2", "prediction": "x"}\n')
    same = cadvi("judge", "--predictions", predictions, "--references", source, "--out", predictions, "--model", "m")
    assert same.returncode == 1 and "is the source" in same.stderr
    assert predictions.read_text() == '{"question_id": "1_2", "prediction": "x"}\n'


# ----- 3. one long input never hangs a run -----


def test_long_captions_are_reported_skipped_or_truncated(tmp_path):
    path = tmp_path / "captions.jsonl"
    rows = [
        {"image": "a.jpg", "caption": "A dog on the grass."},
        {"image": "b.jpg", "caption": "word " * 192_000},  # 960,000 characters
        {"image": "c.jpg", "caption": "A cat on a sofa."},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ReleaseValidationError, match=rf"{re.escape(str(path))}:2: caption of 959,999 characters"):
        read_captions(path)
    assert [c.image for c in read_captions(path, long_captions="skip")] == ["a.jpg", "c.jpg"]
    truncated = read_captions(path, long_captions="truncate", max_chars=100)
    assert len(truncated) == 3 and 90 <= len(truncated[1].caption) <= 100 and truncated[1].caption.endswith("word")
    result = cadvi("nouns", "--captions", path, "--out", tmp_path / "nouns.jsonl")
    assert result.returncode == 1 and f"{path}:2: caption of 959,999 characters" in result.stderr
    assert "--long-captions" in result.stderr and "Traceback" not in result.stderr


def test_prompts_too_long_are_final_rejects_found_before_the_model(tiny_chat_model, tmp_path):
    short = PairRecord("a_b", ("a.jpg", "b.jpg"), ("A dog on the grass.", "A cat on a sofa."))
    many_chars = PairRecord("c_d", ("c.jpg", "d.jpg"), ("x " * 15_000, "A cat."))  # > max_prompt_chars
    many_tokens = PairRecord("e_f", ("e.jpg", "f.jpg"), (" ".join(f"q{i}z" for i in range(2_500)), "A cat."))
    backend = make_backend("transformers", str(tiny_chat_model), batch_size=4)
    request = Request("k#1", ({"role": "user", "content": many_tokens.captions[0]},), Sampling(max_tokens=16))
    (result,) = backend.generate([request])
    assert result.failure_kind == TOO_LONG and "exceed the model's context of 2,048 tokens" in result.error
    settings = Phase1Settings(sampling=Sampling(max_tokens=16, temperature=0.0), max_attempts=3)
    summary = run_phase1([short, many_chars, many_tokens], backend, tmp_path / "run", settings, progress=False)
    rejects = {r["pair_id"]: r for r in all_records(tmp_path / "run", "rejects") if r["pair_id"] != "a_b"}
    assert set(rejects) == {"c_d", "e_f"} and all(r["final"] for r in rejects.values())
    assert "characters > max_prompt_chars 20,000" in rejects["c_d"]["reason"]
    assert "context of 2,048 tokens" in rejects["e_f"]["reason"]
    counts = Counter(r["pair_id"] for r in all_records(tmp_path / "run", "rejects"))
    assert counts["c_d"] == counts["e_f"] == 1, "never retried: it would not fit the next time either"
    assert summary.valid + summary.rejected == summary.attempted and summary.complete
    backend.close()


# ----- 4. the manifest lists every input -----


def test_a_run_folder_takes_new_inputs_only_when_extended(real_pairs, tiny_chat_model, tmp_path):
    first, second = some_pairs(real_pairs, tmp_path, 2), some_pairs(real_pairs, tmp_path, 2, start=2)
    settings = Phase1Settings(sampling=Sampling(max_tokens=8, temperature=0.0, seed=0), max_attempts=1)
    backend = make_backend("transformers", str(tiny_chat_model), batch_size=2)
    run = tmp_path / "run"
    run_phase1(read_pairs(first), backend, run, settings, inputs=[InputFile.of(first)], progress=False)
    with pytest.raises(NewInputsError, match="--extend"):
        run_phase1(read_pairs(second), backend, run, settings, inputs=[InputFile.of(second)], progress=False)
    run_phase1(read_pairs(first), backend, run, settings, inputs=[InputFile.of(first)], progress=False)  # resume
    options = {"inputs": [InputFile.of(second)], "extend": True, "progress": False}
    extended = run_phase1(read_pairs(second), backend, run, settings, **options)
    backend.close()
    assert extended.items == 2 and extended.already_done == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["inputs"] == [InputFile.of(first).as_dict(), InputFile.of(second).as_dict()]
    third = some_pairs(real_pairs, tmp_path, 2, start=4)
    same = ["--max-tokens", "8", "--temperature", "0", "--top-p", "1", "--max-attempts", "1"]
    result = cadvi("generate", "phase1", "--pairs", third, "--out", run, "--model", tiny_chat_model, *same)
    assert result.returncode == 1 and "is a new input: pass --extend" in result.stderr, result.stderr
    other = cadvi("generate", "phase1", "--pairs", first, "--out", run, "--model", tiny_chat_model)
    assert other.returncode == 1 and "was written with other settings (max_attempts, sampling)" in other.stderr


# ----- 5. dataset cards state facts of the data -----


def test_cards_of_regenerated_and_small_sets_state_what_they_are(real_pairs, parrot, tmp_path, cache):
    pairs = read_pairs(some_pairs(real_pairs, tmp_path, 8))
    backend = make_backend("transformers", str(parrot), batch_size=8)
    run_phase1(pairs, backend, tmp_path / "run", GREEDY, inputs=[InputFile.of(real_pairs)], progress=False)
    backend.close()
    rows = export_phase1(tmp_path / "run", tmp_path / "release")
    provenance = json.loads((tmp_path / "release" / PROVENANCE).read_text())["phases"]["phase1"]
    assert provenance["rows"] == rows and set(provenance["caption_sources"]) == {CAPTIONS.stem}
    cadinst.hub.build(tmp_path / "release", tmp_path / "hub", repo_id="me/CaD-Inst", cache_dir=cache)
    card = (tmp_path / "hub" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "other" and meta["size_categories"] == ["n<1K"]
    assert f"**{rows:,} rows** in 1 config (phase1)" in card
    assert "generated with cad-vi" in card and "model (a local model folder)" in card
    assert provenance["template_sha256"][:12] in card and "the rows are those of the release" not in card
    assert 'load_dataset("me/CaD-Inst", "phase2"' not in card and 'load_dataset("me/CaD-Inst", "phase1"' in card
    assert "MIT licence does not cover them" in card
    assert str(tmp_path) not in card and "/tmp/" not in card, "no local path in a card"
    loaded = datasets.load_dataset(str(tmp_path / "hub"), "phase1", split="train", cache_dir=str(cache))
    assert loaded.num_rows == rows

    cadqa.hub.build(CADQA_OFFICIAL, tmp_path / "qa", cache_dir=cache)
    official = (tmp_path / "qa" / "README.md").read_text()
    assert yaml.safe_load(official.split("---")[1])["license"] == "mit" and "**7,520 questions**" in official
    assert "the official file" in official and str(CADQA_OFFICIAL.parent) not in official
    cadqa.hub.build(CADQA_SAMPLE, tmp_path / "qa-sample", cache_dir=cache)
    sample = (tmp_path / "qa-sample" / "README.md").read_text()
    meta = yaml.safe_load(sample.split("---")[1])
    assert meta["license"] == "unknown" and meta["size_categories"] == ["n<1K"]
    assert "not the official file" in sample and str(ROOT) not in sample


# ----- 6. pairs: as many as exist -----


def test_pairs_reach_the_requested_count_when_enough_exist(tmp_path):
    nouns = tmp_path / "nouns.jsonl"
    nouns_stage(CAPTIONS, nouns, cache_dir=tmp_path / "cache")
    for wanted in (40, 30):
        pairs, report = pairs_stage(nouns, tmp_path / f"pairs{wanted}.jsonl", config=PairingConfig(num_pairs=wanted))
        assert len(pairs) == wanted and report.complete and report.shortfall_line() is None
        assert max(Counter(n for p in pairs for n in p.images).values()) <= 2
    result = cadvi("pairs", "--nouns", nouns, "--out", tmp_path / "many.jsonl", "--num-pairs", "500")
    assert result.returncode == 0
    found = len(read_pairs(tmp_path / "many.jsonl"))
    assert 40 <= found <= 80  # 80 images, 2 uses each: at most 80 pairs
    assert f"asked for 500 pairs, found {found}: every image pair was considered" in result.stderr


# ----- 8, 9, 10. what a user sees: one line on stderr, no traceback, checked before anything loads -----


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["pairs", "--nouns", "{nouns}", "--out", "{tmp}/p.jsonl", "--num-pairs", "0"], "--num-pairs: must be >= 1"),
        (["nouns", "--captions", "{tmp}", "--out", "{tmp}/n.jsonl"], "is a folder, not a file"),
        (
            ["generate", "phase1", "--pairs", "{pairs}", "--out", "{tmp}/r", "--model", "{tmp}/no-model"],
            "no such folder",
        ),
        (["generate", "phase1", "--pairs", "{empty}", "--out", "{tmp}/r", "--model", "x"], "no pairs in this file"),
        (
            [
                "generate",
                "phase1",
                "--pairs",
                "{pairs}",
                "--out",
                "{tmp}/r",
                "--model",
                "{tmp}/no-model",
                *SHARD_2_OF_2,
            ],
            "--shard-index 2 is outside 0..1",
        ),
        (["build", "cadqa", "--source", "{empty_qa}", "--out", "{tmp}/o"], "CaD_QA_eval.jsonl: no rows in this file"),
    ],
)
def test_user_errors_are_one_line_on_stderr(arguments, message, real_pairs, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "qa").mkdir()
    (tmp_path / "qa" / "CaD_QA_eval.jsonl").write_text("")
    values = {
        "tmp": tmp_path,
        "nouns": real_pairs.parent / "nouns.jsonl",
        "pairs": real_pairs,
        "empty": tmp_path / "empty.jsonl",
        "empty_qa": tmp_path / "qa" / "CaD_QA_eval.jsonl",
    }
    extra = ["--cache-dir", tmp_path / "cache"] if arguments[0] == "build" else []
    result = cadvi(*(a.format(**values) for a in arguments), *extra)
    assert result.returncode in (1, 2)
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    assert sum("error:" in line for line in result.stderr.splitlines()) == 1
    assert not (tmp_path / "r").exists(), "nothing is created before the arguments are checked"


def test_build_refuses_image_names_that_leave_the_root_and_reports_long_lines_whole(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "CaD_QA_eval.jsonl"
    deep.parent.mkdir(parents=True)
    row = json.loads(CADQA_SAMPLE.read_text().splitlines()[0])
    row["image"] = ["../../etc/x.jpg", "/abs/y.jpg"]
    deep.write_text(json.dumps(row) + "\n")
    result = cadvi("build", "cadqa", "--source", deep, "--out", tmp_path / "o", "--cache-dir", tmp_path / "c")
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert f"  {deep}:1: image name '../../etc/x.jpg' contains '..' and would leave its image root" in lines
    assert f"  {deep}:1: image name '/abs/y.jpg' is absolute; names must be relative to an image root" in lines
    assert "NumExpr" not in result.stderr and "Generating test split" not in result.stderr


def test_library_logs_are_hidden_unless_verbose(tmp_path):
    nouns = tmp_path / "nouns.jsonl"
    quiet = cadvi("nouns", "--captions", CAPTIONS, "--out", nouns, "--cache-dir", tmp_path / "c")
    assert quiet.returncode == 0 and "NumExpr" not in quiet.stderr and "INFO" not in quiet.stderr
    loud = cadvi("-v", "pairs", "--nouns", nouns, "--out", tmp_path / "p.jsonl", "--num-pairs", "10")
    assert loud.returncode == 0 and "INFO builders.pairs.miner: pairs: all candidates" in loud.stderr


# ----- 11, 12. help and the tiny model -----


def test_help_shows_every_default_and_describes_every_argument():
    import argparse

    from cadvi.cli import build_parser
    from cadvi.options import SHAPES, HelpFormatter

    def parsers(parser: argparse.ArgumentParser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    formatter = HelpFormatter("cadvi")
    checked = 0
    for parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"{parser.prog} {action.dest}: no help"
            shown = all(action.default is not value for value in (None, False, argparse.SUPPRESS))
            if shown and action.option_strings:
                assert "default" in formatter._get_help_string(action), f"{parser.prog} {action.dest}"
            checked += 1
    assert checked > 60
    assert SHAPES["cadinst"] == tuple(cadinst.builder.SHAPES) and SHAPES["cadqa"] == tuple(cadqa.builder.SHAPES)
    help_text = cadvi("build", "cadinst", "--help").stdout
    assert "{auto,parquet,hub-parquet,json}" in help_text and "--license" in help_text
    generate_help = re.sub(r"-\s+", "-", " ".join(cadvi("generate", "phase1", "--help").stdout.split()))
    assert "`cadvi tiny-model --out models/tiny` builds a small stand-in" in generate_help


def test_tiny_model_command_and_demo_without_workdir_leave_nothing_behind(tmp_path):
    built = cadvi("tiny-model", "--out", tmp_path / "tiny")
    assert built.returncode == 0, built.stderr
    with make_backend("transformers", str(tmp_path / "tiny")) as llm:
        (result,) = llm.generate([Request("k", ({"role": "user", "content": "Hi"},), Sampling(max_tokens=4))])
    assert result.ok
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    demo = cadvi("demo", timeout=600, TMPDIR=str(temporary))
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "demo finished" in demo.stdout and "removed the demo's temporary folder" in demo.stdout
    assert [p.name for p in temporary.iterdir() if p.name.startswith("cadvi-demo-")] == []


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0
