"""All seven CaD benchmarks in ONE real ``lmms-eval`` call, offline on CPU, found with no extra flag.

The tiny random LLaVA answers; a real ``transformers serve`` (tiny chat model) judges CaD-QA; the
SEED-Bench video questions decode real generated videos. lmms-eval exits 0 even when a task fails,
so everything is asserted on the results JSON.
"""

from __future__ import annotations

import json
import shutil

import pytest

from cadvi.demo import draw_stand_in_images
from eval_tasks.cadvi_seed_video import utils as seed
from tests import eval_fixtures
from tests.conftest import CADQA_OFFICIAL
from tests.eval_fixtures import plain_number_problems, run_lmms_eval, summary_of
from tests.test_eval_seed_video import QUESTIONS, write_questions, write_videos

tiny_llava = eval_fixtures.tiny_llava

ALL_TASKS = (
    "bison",
    "svo_probes",
    "nlvr2",
    "eqben",
    "cola",
    "cadqa",
    "cadvi_seed_video_2frame",
    "cadvi_seed_video_1frame",
)


@pytest.mark.slow
def test_tag_cadvi_runs_all_seven_benchmarks_in_one_call(shared_server, tiny_llava, tmp_path):
    bench = eval_fixtures.build_bench(tmp_path / "bench")  # the five closed benchmarks
    lines = CADQA_OFFICIAL.read_text().splitlines()[:2]
    (bench.annotations / "CaD_QA_eval.jsonl").write_text("\n".join(lines) + "\n")
    draw_stand_in_images((n for line in lines for n in json.loads(line)["image"]), bench.images / "cadqa")
    write_questions(bench.annotations, QUESTIONS)
    write_videos(tmp_path / "videos")

    env = {
        **bench.env,
        seed.VIDEO_ROOT_ENV: str(tmp_path / "videos"),
        "API_TYPE": "openai",
        "OPENAI_API_URL": shared_server.base_url,
        "OPENAI_API_KEY": "x",
        "CADQA_JUDGE_MODEL": shared_server.model_id,
        "CADQA_JUDGE_NUM_RETRIES": "1",
        "CADQA_JUDGE_RETRY_DELAY": "0",
    }
    model = ["--model", "llava_hf", "--model_args", f"pretrained={tiny_llava},device=cpu,device_map=cpu"]
    options = ["--gen_kwargs", "max_new_tokens=6", "--tasks", "cadvi", "--limit", "2"]
    results, _ = run_lmms_eval(model + options, env, tmp_path, timeout=600)
    assert set(ALL_TASKS) <= set(results), sorted(results)
    for task in ALL_TASKS:
        metrics = {k: v for k, v in results[task].items() if k.endswith(",none")}
        assert metrics, (task, results[task])
    for task in ("bison", "svo_probes", "nlvr2", "eqben", "cola", "cadvi_seed_video_2frame"):
        accuracy = summary_of(results[task], "accuracy")
        assert accuracy["n"] == 2 and {"ci_low", "ci_high", "unparseable"} <= accuracy.keys(), (task, accuracy)
    for task in (*ALL_TASKS[:5], *ALL_TASKS[6:]):  # CaD-QA's metrics are its own (eval_tasks/cadqa/)
        assert plain_number_problems(results[task], allow_empty=True) == [], task
    assert summary_of(results["eqben"], "group_accuracy")["n"] == 1
    assert results["cadqa"]["judge_valid,none"] + results["cadqa"]["judge_invalid,none"] == 2
    assert results["cadqa"]["judge_invalid,none"] == 2, "gibberish judgements are invalid, not 0"
    shutil.rmtree(tmp_path / "videos")
