"""Training for real on CPU (tiny LLaVA): steps, learning rates, merge, DDP, kill and resume, lmms-eval."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from eval_tasks.recipe.config import recipe_from_mapping
from eval_tasks.recipe.train import TrainingRun, train
from tests.eval_fixtures import (
    BenchFolders,
    bench_env,  # noqa: F401 (fixture, used by name)
    cadvi_bench,  # noqa: F401 (fixture)
    run_lmms_eval,
    summary_of,
    tiny_llava_arguments,
)
from tests.recipe_fixtures import cadvi_env, recipe, run_cadvi, write_recipe


class LearningRates:
    """A Trainer callback that records every group's learning rate at each optimizer step."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Recorder(TrainerCallback):
            def __init__(self) -> None:
                self.steps: list[list[float]] = []
                self.losses: list[float] = []

            def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
                self.steps.append([group["lr"] for group in optimizer.param_groups])

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    self.losses.append(float(logs["loss"]))

        return Recorder()


@pytest.fixture(scope="module")
def trained(tiny_start, recipe_data, tmp_path_factory) -> tuple[TrainingRun, object]:
    output = tmp_path_factory.mktemp("recipe-train") / "adapter"
    config = recipe_from_mapping(recipe(tiny_start, recipe_data, output, max_steps=12, learning_rate=2.0e-2))
    recorder = LearningRates()
    return train(config, callbacks=[recorder]), recorder


def test_a_few_steps_train_lora_and_the_projector_only(trained, tiny_start):
    from transformers import LlavaForConditionalGeneration

    run, recorder = trained
    start = LlavaForConditionalGeneration.from_pretrained(str(tiny_start), dtype=torch.float32).state_dict()
    model = run.trainer.model
    assert sum(recorder.losses[-3:]) / 3 < sum(recorder.losses[:3]) / 3, recorder.losses  # the loss falls
    base = {
        name.replace("base_model.model.", "", 1).replace(".base_layer", ""): p for name, p in model.named_parameters()
    }
    projector_changed = False
    for name, before in start.items():
        if "multi_modal_projector" in name:
            trained_copy = base[name.replace("multi_modal_projector", "multi_modal_projector.modules_to_save.default")]
            projector_changed |= not torch.equal(trained_copy.detach(), before)
            continue
        if name not in base and name == "lm_head.weight":  # tied to the embeddings: checked as those
            continue
        assert torch.equal(base[name].detach(), before), f"{name} changed: base weights must stay frozen"
    assert projector_changed
    saved = load_file(str(run.output / "adapter_model.safetensors"))
    assert any("multi_modal_projector" in key for key in saved)  # the projector travels with the adapter
    assert any("lora_A" in key for key in saved) and not any("vision_tower" in key for key in saved)
    assert all(tensor.dtype == torch.float32 for tensor in saved.values())  # trainables kept in fp32


def test_both_learning_rates_follow_the_cosine_schedule(trained):
    run, recorder = trained
    args = run.trainer.args
    groups = run.trainer.optimizer.param_groups
    projector = [i for i, g in enumerate(groups) if g["lr"] != groups[0]["lr"] or "initial_lr" in g]
    steps = args.max_steps
    for step, lrs in enumerate(recorder.steps):  # transformers' cosine with warmup, written out
        factor = (
            step / args.warmup_steps
            if step < args.warmup_steps
            else 0.5 * (1 + math.cos(math.pi * (step - args.warmup_steps) / (steps - args.warmup_steps)))
        )
        assert lrs[0] == pytest.approx(args.learning_rate * factor, abs=1e-12)
        assert lrs[-1] == pytest.approx(args.projector_lr * factor, abs=1e-12)  # the projector's group is last
    assert projector and len(recorder.steps) == steps
    names = {id(p): n for n, p in run.trainer.model.named_parameters()}
    assert all("multi_modal_projector" in names[id(p)] for p in groups[-1]["params"])
    assert not any("multi_modal_projector" in names[id(p)] for p in groups[0]["params"])


def test_merged_model_matches_the_trained_adapter_and_generates(trained, tmp_path, recipe_data):
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from eval_tasks.recipe.merge import merge_adapter

    run, _ = trained
    merged_dir = merge_adapter(run.output, tmp_path / "merged", dtype="float32")
    merged = LlavaForConditionalGeneration.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(str(merged_dir))
    assert processor.image_processor.do_pad  # evaluated on the inputs it was trained on
    images = [Image.open(recipe_data / "images" / "a" / "0.jpg"), Image.open(recipe_data / "images" / "b" / "1.jpg")]
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Image 1: "},
                {"type": "image"},
                {"type": "text", "text": "\nImage 2: "},
                {"type": "image"},
                {"type": "text", "text": "\nWhat differs?"},
            ],
        }
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=prompt, images=images, return_tensors="pt")
    peft_model = run.trainer.model.eval()
    with torch.no_grad():
        expected = peft_model(**inputs).logits
        got = merged(**inputs).logits
        assert (got - expected).abs().max() < 1e-5
        generated = merged.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]
    record = json.loads((merged_dir / "cadvi_merge.json").read_text())
    assert record["recipe"]["steps"] == 12 and record["base"] == str(
        run.trainer.model.peft_config["default"].base_model_name_or_path
    )


# --- the CLI end to end: prepare -> run (killed, resumed) -> merge -> lmms-eval -----------------------


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None and not path.exists():
        time.sleep(0.02)


@pytest.mark.slow
def test_cadvi_train_end_to_end_killed_and_resumed_then_evaluated(
    tiny_start,
    recipe_data,
    tmp_path,
    bench_env: BenchFolders,  # noqa: F811 (the fixture imported above)
):
    adapter = tmp_path / "adapter"
    mapping = recipe(tiny_start, recipe_data, adapter, max_steps=40, save_strategy="steps", save_steps=10)
    mapping["training"]["save_total_limit"] = 2
    recipe_file = write_recipe(tmp_path / "recipe.yaml", mapping)
    prepared = run_cadvi("train", "prepare", str(recipe_file), cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr
    assert "training mix: 24 samples" in prepared.stdout and "mix.json: 12 rows (4 text-only)" in prepared.stdout

    process = subprocess.Popen(
        [sys.executable, "-m", "cadvi", "train", "run", str(recipe_file)],
        cwd=tmp_path,
        env=cadvi_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    wait_for(adapter / "checkpoint-10" / "trainer_state.json", process)
    assert process.poll() is None, "finished before the kill"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert not (adapter / "adapter_model.safetensors").exists()  # the kill came before the end

    resumed = run_cadvi("train", "run", str(recipe_file), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((adapter / "cadvi_recipe.json").read_text())
    assert record["steps"] == 40 and record["resumed_from"].endswith(
        ("checkpoint-10", "checkpoint-20", "checkpoint-30")
    )
    state = json.loads((adapter / "checkpoint-40" / "trainer_state.json").read_text())
    logged = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged == list(range(1, 41))  # the step count continued: no step twice, none missing
    optimizer = torch.load(adapter / "checkpoint-30" / "optimizer.pt", weights_only=False)  # written after the resume
    lrs = [group["lr"] for group in optimizer["param_groups"]]
    initial = [group["initial_lr"] for group in optimizer["param_groups"]]
    assert initial[0] == 5.0e-3 and initial[-1] == 1.0e-3 and len(set(initial)) == 2  # both groups restored
    assert lrs[0] > 0 and lrs[-1] / lrs[0] == pytest.approx(1.0e-3 / 5.0e-3)  # on the one schedule

    merged_dir = tmp_path / "merged"
    merged = run_cadvi("train", "merge", str(adapter), "--out", str(merged_dir), "--dtype", "float32", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    results, console = run_lmms_eval(
        tiny_llava_arguments(merged_dir, ["bison"], 2), bench_env.env, tmp_path, timeout=600
    )
    assert "in generating" not in console
    assert summary_of(results["bison"], "accuracy")["n"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("hook", [True, False], ids=["with the zero-image hook", "without it"])
def test_ddp_with_text_only_batches_needs_the_zero_image_hook(tiny_start, recipe_data, tmp_path, hook):
    mapping = recipe(
        tiny_start,
        recipe_data,
        tmp_path / "adapter",
        max_steps=6,
        per_device_train_batch_size=1,
        ddp_find_unused_parameters=False,
        ddp_backend="gloo",
    )
    mapping["model"]["zero_image_hook"] = hook
    recipe_file = write_recipe(tmp_path / "recipe.yaml", mapping)
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port())]
    process = subprocess.run(
        [*command, "-m", "cadvi", "-vv", "train", "run", str(recipe_file)],
        cwd=tmp_path,
        env=cadvi_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if hook:
        assert process.returncode == 0, process.stderr[-4000:]
        assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    else:
        assert process.returncode != 0
        assert "Expected to have finished reduction" in process.stderr or "unused parameters" in process.stderr


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
