"""The training recipe on CPU with a tiny LLaVA: prompt, images, labels, training, merge, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eval_tasks.recipe.collator import IGNORE_INDEX, CadCollator, SampleTooLongError
from eval_tasks.recipe.config import load_recipe, recipe_from_mapping
from eval_tasks.recipe.data import DataConfig, Source, mix_stats, prepare_mix
from eval_tasks.recipe.template import CHAT_TEMPLATE, fork_prompt, to_messages
from eval_tasks.recipe.trainer import ModalityLengthGroupedSampler
from tests.recipe_fixtures import (
    ANSWER,
    PAIR_PROMPT,
    mixed_rows,
    pair_row,
    recipe,
    single_row,
    text_row,
)

RECIPE_DIR = Path(__file__).resolve().parents[1] / "eval_tasks" / "recipe"
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


@pytest.fixture(scope="module")
def processor(tiny_start):
    from eval_tasks.recipe.train import load_processor

    return load_processor(str(tiny_start), "pad")


# --- the prompt -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row",
    [pair_row("p", "a.jpg", "b.jpg"), single_row(1, "a.jpg"), text_row("t")],
    ids=["two images, two turns", "one image", "no image"],
)
def test_chat_template_renders_the_forks_conv_vicuna_v1_prompt(processor, row):
    rendered = processor.apply_chat_template(to_messages(row["conversations"]), tokenize=False)
    assert rendered == fork_prompt(row["conversations"])
    assert processor.chat_template == CHAT_TEMPLATE


def test_the_fork_prompt_written_out():
    # Written by hand from llava/conversation.py (conv_vicuna_v1, SeparatorStyle.TWO): not from our code.
    expected = (
        f"{SYSTEM} USER: {PAIR_PROMPT} ASSISTANT: {ANSWER}</s>"
        'USER: Which image suits the caption "a dog" better?\nA. Image 1\nB. Image 2 ASSISTANT: A</s>'
    )
    assert fork_prompt(pair_row("p", "a", "b")["conversations"]) == expected
    # A lone <image> moves to the front of its turn, as the fork's preprocess_multimodal does.
    assert fork_prompt(single_row(1, "a")["conversations"]).startswith(f"{SYSTEM} USER: <image>\nWhat is in the")


def test_generation_prompt_ends_in_assistant(processor):
    messages = to_messages([{"from": "human", "value": PAIR_PROMPT}])
    assert processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True).endswith(
        "Summarize the commonalities and differences of the two images. ASSISTANT:"
    )


# --- images and labels ------------------------------------------------------------------------------


def rows_with_paths(data: Path, rows):
    out = []
    for row in rows:
        names = row.get("image") or []
        names = [names] if isinstance(names, str) else names
        out.append({**row, "id": str(row["id"]), "images": [str(data / "images" / n) for n in names]})
    return out


def test_labels_are_the_answers_and_their_eos_and_images_expand(processor, recipe_data):
    collator = CadCollator(processor, max_length=512)
    tokenizer = processor.tokenizer
    for row in rows_with_paths(recipe_data, mixed_rows(3)):
        sample = collator.encode(row)
        supervised = sample["input_ids"][sample["labels"] != IGNORE_INDEX]
        answers = [turn["value"] for turn in row["conversations"][1::2]]
        # The fork supervises everything after "ASSISTANT:", the space included (here a token of its own).
        assert tokenizer.decode(supervised) == "".join(f" {answer}</s>" for answer in answers)
        images = int((sample["input_ids"] == collator.image_id).sum())
        assert images == 16 * len(row["images"])  # 32 px / patch 8 = 16 tokens per image
        assert (sample["pixel_values"] is None) == (not row["images"])
    batch = collator(rows_with_paths(recipe_data, mixed_rows(3)))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["pixel_values"].shape == (3, 3, 32, 32)  # 2 + 1 images, none for the text-only row
    padding = batch["attention_mask"] == 0
    assert (batch["labels"][padding] == IGNORE_INDEX).all() and padding.any()


def test_fast_encoding_equals_the_processors_own_chat_template_path(processor, recipe_data):
    collator = CadCollator(processor, max_length=512)
    for row in rows_with_paths(recipe_data, mixed_rows(3)):
        from eval_tasks.recipe.images import open_rgb

        messages = to_messages(row["conversations"])
        images = iter(open_rgb(path) for path in row["images"])
        for part in (part for message in messages for part in message["content"]):
            if part["type"] == "image":
                part["image"] = next(images)
        reference = processor.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt"
        )
        sample = collator.encode(row)
        assert torch.equal(sample["input_ids"], reference["input_ids"][0])
        assert torch.equal(sample["labels"] != IGNORE_INDEX, reference["assistant_masks"][0].bool())
        if row["images"]:
            assert torch.equal(sample["pixel_values"], reference["pixel_values"])


def test_pad_is_the_forks_expand2square_then_clip_bit_for_bit(processor, recipe_data, tiny_start):
    from PIL import Image
    from transformers import CLIPImageProcessor

    from eval_tasks.recipe.train import load_processor

    path = recipe_data / "images" / "a" / "1.jpg"
    image = Image.open(path).convert("RGB")
    assert image.width != image.height
    clip = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_pad=False
    )  # the fork's CLIPImageProcessor, configured as the tiny model's
    clip.image_mean, clip.image_std = processor.image_processor.image_mean, processor.image_processor.image_std
    background = tuple(int(x * 255) for x in clip.image_mean)
    side = max(image.size)  # the fork's expand2square
    square = Image.new(image.mode, (side, side), background)
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    expected = clip(square, return_tensors="pt")["pixel_values"]
    row = {"id": "x", "images": [str(path)], "conversations": single_row(1, "x")["conversations"]}
    assert torch.equal(CadCollator(processor).encode(row)["pixel_values"], expected)
    cropped = CadCollator(load_processor(str(tiny_start), "square"))  # the fork's default: resize + centre crop
    assert not torch.equal(cropped.encode(row)["pixel_values"], expected)


def test_truncation_never_cuts_image_tokens(processor, recipe_data):
    row = rows_with_paths(recipe_data, [pair_row("too-long-pair", "a/0.jpg", "b/1.jpg")])[0]
    with pytest.raises(SampleTooLongError, match=r"sample 'too-long-pair'.*max_length 30"):
        CadCollator(processor, max_length=30).encode(row)
    kept = CadCollator(processor, max_length=120).encode(row)  # cut after the last image token: allowed
    assert len(kept["input_ids"]) == 120 and int((kept["input_ids"] == processor.image_token_id).sum()) == 32


# --- the mix ----------------------------------------------------------------------------------------


def test_mix_is_memory_mapped_with_repeats_and_reopened_without_rebuild(recipe_data, tmp_path):
    config = DataConfig(
        sources=(Source(str(recipe_data / "mix.json"), repeat=2),), image_roots=(str(recipe_data / "images"),)
    )
    mix = prepare_mix(config, tmp_path / "mix")
    assert len(mix) == 24 and mix.cache_files  # backed by the Arrow file on disk, not by memory
    assert mix[0]["id"] == mix[12]["id"] == "pair0"
    assert mix[1]["images"] == [str(recipe_data / "images" / "a" / "1.jpg")]
    assert mix[2]["images"] == [] and mix[2]["modality_length"] < 0 < mix[0]["modality_length"]
    assert mix_stats(tmp_path / "mix")["text_only"] == {"mix.json": 4}
    stamp = (tmp_path / "mix" / "rows.arrow").stat().st_mtime_ns
    assert len(prepare_mix(config, tmp_path / "mix")) == 24
    assert (tmp_path / "mix" / "rows.arrow").stat().st_mtime_ns == stamp  # reopened, not rebuilt


def test_cadinst_sources_go_through_cadinst_load_in_every_shape(tmp_path):
    from cadvi.commands.train import register_cadinst
    from tests.recipe_fixtures import write_images

    release = Path(__file__).resolve().parents[1] / "cadinst" / "sample"
    names = [
        name
        for file in (release / "json_files").glob("*.json")
        for row in json.loads(file.read_text())
        for name in row["image"]
    ]
    write_images(tmp_path / "images", sorted(set(names)))
    register_cadinst()
    config = DataConfig(
        sources=(
            Source(str(release), kind="cadinst", config="phase1", repeat=2),
            Source(str(release), "cadinst", "phase2"),
        ),
        image_roots=(str(tmp_path / "images"),),
    )
    mix = prepare_mix(config, tmp_path / "mix")
    phase1 = len(json.loads(next((release / "json_files").glob("phase1_*.json")).read_text()))
    phase2 = len(json.loads(next((release / "json_files").glob("phase2_*.json")).read_text()))
    assert len(mix) == 2 * phase1 + phase2
    assert all(len(row["images"]) == 2 and Path(row["images"][0]).is_file() for row in mix)


def test_missing_image_names_the_row_or_is_dropped_and_counted(recipe_data, tmp_path):
    from builders.release.validate import ReleaseValidationError

    rows = [*mixed_rows(3), single_row(99, "a/not-there.jpg")]
    (tmp_path / "mix.json").write_text(json.dumps(rows))
    source = (Source(str(tmp_path / "mix.json")),)
    roots = (str(recipe_data / "images"),)
    with pytest.raises(ReleaseValidationError, match=r"mix.json:4: row '99': image 'a/not-there.jpg' is missing"):
        prepare_mix(DataConfig(source, roots), tmp_path / "mix")
    assert not (tmp_path / "mix" / "rows.arrow").exists()  # nothing half-written
    dropped = prepare_mix(DataConfig(source, roots, on_missing="drop"), tmp_path / "mix")
    assert len(dropped) == 3 and mix_stats(tmp_path / "mix")["dropped_missing_images"] == {"mix.json": 1}


def test_bad_rows_are_collected_as_file_row_problems(tmp_path):
    from builders.release.validate import ReleaseValidationError

    rows = [
        {"id": "a", "image": ["x.jpg"], "conversations": [{"from": "human", "value": "no placeholder"}]},
        {"id": "b", "conversations": [{"from": "gpt", "value": "starts with gpt"}]},
        {"id": "c", "image": "../../etc/passwd", "conversations": [{"from": "human", "value": "<image>"}]},
    ]
    (tmp_path / "bad.json").write_text(json.dumps(rows))
    (tmp_path / "images").mkdir()
    with pytest.raises(ReleaseValidationError) as raised:
        prepare_mix(DataConfig((Source(str(tmp_path / "bad.json")),), (str(tmp_path / "images"),)), tmp_path / "mix")
    text = str(raised.value)
    assert "bad.json:1: row 'a': 1 image(s) but 0 '<image>' placeholder(s)" in text
    assert "bad.json:2: row 'b': turn 0 must be" in text
    assert "bad.json:3: row 'c': image name '../../etc/passwd' contains '..'" in text


def test_modality_grouped_batches_are_pure_and_seeded():
    lengths = np.array([5, -3, 7, -2, 9, 4, -8, 6, -1, 3, 2, -4, 8, -6])
    sampler = ModalityLengthGroupedSampler(lengths, batch_size=2, world_size=2, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    assert order == list(ModalityLengthGroupedSampler(lengths, batch_size=2, world_size=2, seed=3))
    assert order != list(ModalityLengthGroupedSampler(lengths, batch_size=2, world_size=2, seed=4))
    # 8 image rows and 6 text-only ones in megabatches of 2 x 2: the last of each kind (4 + 2 rows) is the mixed tail.
    assert len(order) - 6 == 8
    megabatches = [order[i : i + 4] for i in range(0, len(order) - 6, 4)]
    for megabatch in megabatches:
        assert len({bool(lengths[i] > 0) for i in megabatch}) == 1, megabatch


# --- configs ----------------------------------------------------------------------------------------


def test_unknown_recipe_keys_are_errors(tiny_start, recipe_data, tmp_path):
    good = recipe(tiny_start, recipe_data, tmp_path / "out")
    recipe_from_mapping(good)
    with pytest.raises(ValueError, match="model: unknown key"):
        recipe_from_mapping({**good, "model": {**good["model"], "strat": "x"}})
    with pytest.raises(ValueError, match=r"warmup_ratio \(use warmup_steps"):
        recipe_from_mapping({**good, "training": {**good["training"], "warmup_ratio": 0.03}})
    with pytest.raises(ValueError, match="unknown block"):
        recipe_from_mapping({**good, "optimiser": {}})


@pytest.mark.parametrize("name", ["cad_llava_7b.yaml", "cad_llava_13b.yaml"])
def test_shipped_recipes_have_the_papers_settings(name):
    config = load_recipe(RECIPE_DIR / "configs" / name)
    training = config.training
    assert (config.lora.r, config.lora.alpha, config.lora.dropout) == (128, 256, 0.05)
    assert training["per_device_train_batch_size"] * training["gradient_accumulation_steps"] * 4 == 128
    assert (training["learning_rate"], training["projector_lr"]) == (1e-4, 2e-5)
    assert training["num_train_epochs"] == 1 and training["lr_scheduler_type"] == "cosine"
    assert training["warmup_steps"] == 0.03 and training["weight_decay"] == 0.0 and training["bf16"]
    assert config.model.max_length == 2048 and config.model.image_aspect_ratio == "pad"
    assert [(s.config, s.repeat) for s in config.data.sources] == [(None, 1), ("phase1", 2), ("phase2", 1)]
    assert "accelerate launch" in (RECIPE_DIR / "configs" / name).read_text().split("model:")[0]


def test_zero3_config_has_no_optimizer_and_no_clipping():
    zero3 = json.loads((RECIPE_DIR / "accelerate" / "zero3.json").read_text())
    assert "optimizer" not in zero3 and "gradient_clipping" not in zero3
    assert zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_recipe_yamls_are_never_lmms_eval_tasks():
    from lmms_eval.tasks import TaskManager

    from eval_tasks import registration

    manager = TaskManager(include_path=registration.tasks_dir(), include_defaults=False)
    indexed = {str(entry.get("yaml_path", "")) for entry in manager.task_index.values()}
    assert indexed and not [path for path in indexed if "/recipe/" in path]
    assert {"bison", "cadqa"} <= set(manager.all_tasks)


def test_cadvi_train_reports_a_bad_recipe_in_one_line(tiny_start, recipe_data, tmp_path):
    from tests.recipe_fixtures import run_cadvi, write_recipe

    mapping = recipe(tiny_start, recipe_data, tmp_path / "out")
    mapping["training"]["learning_rte"] = 1e-4
    bad = write_recipe(tmp_path / "bad.yaml", mapping)
    result = run_cadvi("train", "run", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.yaml" in lines[0] and "learning_rte" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
