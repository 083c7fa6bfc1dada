"""The start point and the fork -> llava-hf conversions, on tiny real models in the fork's real file layout.

The fixtures write what the LLaVA / CaD-VI fork and its inputs write: a Vicuna folder (``LlamaForCausalLM``
+ tokenizer), a full ``CLIPModel`` folder with its ``preprocessor_config.json``, a stage-1 ``mm_projector.bin``,
a LoRA folder as ``liuhaotian/llava-v1.5-7b-lora`` and a merged fork model (sharded safetensors). Every
comparison is against the fork's own computation, written out here: the merged Llama, CLIP's
``hidden_states[-2][:, 1:]`` through Linear-GELU-Linear, ``expand2square`` + ``CLIPImageProcessor``.
Everything is float32, so the equalities are exact (``torch.equal``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from builders.llm.tiny import DEFAULT_TEXTS, LLAVA_TEXTS, train_tokenizer
from eval_tasks.recipe.checkpoints import PROJECTOR_KEYS, image_settings
from eval_tasks.recipe.convert import convert_fork_lora, convert_fork_model
from eval_tasks.recipe.start import build_start_point
from eval_tasks.recipe.template import CHAT_TEMPLATE

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    AutoProcessor,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

HIDDEN, VISION_HIDDEN, IMAGE_SIZE, PATCH = 64, 32, 32, 8
RANK, ALPHA = 4, 8
TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj")
TARGETS += ("mlp.up_proj", "mlp.down_proj")
FORK_VISION = "model.vision_tower.vision_tower.vision_model."


@dataclass(frozen=True)
class Artefacts:
    vicuna: Path
    clip: Path
    projector: Path
    lora: Path
    fork: Path


def _projector(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = ((HIDDEN, VISION_HIDDEN), (HIDDEN,), (HIDDEN, HIDDEN), (HIDDEN,))
    return {
        key: torch.randn(shape, generator=generator) * 0.2 for key, shape in zip(PROJECTOR_KEYS, shapes, strict=True)
    }


def _fork_config(vicuna: Path, clip: Path) -> dict:
    """The fork's LlavaConfig as its LoRA / merged folders hold it: Llama's keys plus the mm_* ones."""
    config = json.loads((vicuna / "config.json").read_text())
    config |= {
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava_llama",
        "mm_hidden_size": VISION_HIDDEN,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_vision_tower": str(clip),
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "mm_patch_merge_type": "flat",
        "image_aspect_ratio": "pad",
        "tune_mm_mlp_adapter": False,
        "freeze_mm_mlp_adapter": False,
        "tokenizer_model_max_length": 2048,
        "tokenizer_padding_side": "right",
    }
    return config


def _lora_tensors(seed: int) -> dict[str, torch.Tensor]:
    """Random, non-zero A and B for every target of both layers, under the fork's (old peft's) key names."""
    generator = torch.Generator().manual_seed(seed)
    sizes = {"q_proj": (HIDDEN, HIDDEN), "k_proj": (HIDDEN, HIDDEN), "v_proj": (HIDDEN, HIDDEN)}
    sizes |= {"o_proj": (HIDDEN, HIDDEN), "gate_proj": (128, HIDDEN), "up_proj": (128, HIDDEN)}
    sizes |= {"down_proj": (HIDDEN, 128)}
    tensors = {}
    for layer in range(2):
        for target in TARGETS:
            out_features, in_features = sizes[target.split(".")[1]]
            prefix = f"base_model.model.model.layers.{layer}.{target}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(RANK, in_features, generator=generator) * 0.1
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(out_features, RANK, generator=generator) * 0.1
    return tensors


def fork_merge(vicuna_state: dict[str, torch.Tensor], lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fork's merge by hand: ``W + scale * B @ A`` on the Vicuna weights, ``scale = lora_alpha / r``."""
    merged = dict(vicuna_state)
    scale = ALPHA / RANK
    for key in lora:
        if key.endswith(".lora_A.weight"):
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            b = lora[key.replace("lora_A", "lora_B")]
            merged[module + ".weight"] = vicuna_state[module + ".weight"] + scale * (b @ lora[key])
    return merged


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Artefacts:
    root = tmp_path_factory.mktemp("fork")
    torch.manual_seed(0)

    vicuna = root / "vicuna-7b-v1.5"
    tokenizer = train_tokenizer((*DEFAULT_TEXTS, *LLAVA_TEXTS), vocab_size=300)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    llama = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # non-trivial norms, so a norm mapped to the wrong place shows
        for name, parameter in llama.named_parameters():
            if name.endswith("norm.weight"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    llama.save_pretrained(vicuna)
    tokenizer.save_pretrained(vicuna)

    clip = root / "clip-vit-large-patch14-336"
    clip_config = CLIPConfig(
        text_config={"vocab_size": 99, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
        | {"num_attention_heads": 2, "max_position_embeddings": 16},
        vision_config={"image_size": IMAGE_SIZE, "patch_size": PATCH, "hidden_size": VISION_HIDDEN}
        | {"intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
        projection_dim=32,
    )
    CLIPModel(clip_config).save_pretrained(clip)
    size = {"size": {"shortest_edge": IMAGE_SIZE}, "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}}
    CLIPImageProcessorPil(**size).save_pretrained(clip)

    projector = root / "llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5" / "mm_projector.bin"
    projector.parent.mkdir()
    torch.save(_projector(1), projector)

    fork_config = _fork_config(vicuna, clip)
    lora = root / "cadvi-vicuna-7b-lora"
    lora.mkdir()
    adapter_config = {
        "base_model_name_or_path": str(vicuna),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "lora_alpha": ALPHA,
        "lora_dropout": 0.05,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": RANK,
        "target_modules": sorted({target.split(".")[1] for target in TARGETS}),
        "task_type": "CAUSAL_LM",
    }
    (lora / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    lora_tensors = _lora_tensors(2)
    torch.save(lora_tensors, lora / "adapter_model.bin")
    torch.save(
        {"base_model.model." + key: value for key, value in _projector(3).items()}, lora / "non_lora_trainables.bin"
    )
    (lora / "config.json").write_text(json.dumps(fork_config, indent=2))

    # A merged fork model: the merged Llama, the trained projector, its own (here: changed) vision tower and the
    # stale buffers old checkpoints carry, in two safetensors shards with an index.
    fork = root / "cadvi-vicuna-7b-merged"
    fork.mkdir()
    state = fork_merge(dict(llama.state_dict()), lora_tensors) | _projector(3)
    generator = torch.Generator().manual_seed(4)
    vision_state = CLIPVisionModel.from_pretrained(clip).state_dict()
    for key, value in vision_state.items():
        state[FORK_VISION + key] = value + torch.randn(value.shape, generator=generator) * 0.01
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    state[FORK_VISION + "embeddings.position_ids"] = torch.arange(17)[None]
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({key: state[key].contiguous() for key in keys}, fork / shard, metadata={"format": "pt"})
    weight_map = {key: shard for shard, keys in shards.items() for key in keys}
    (fork / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (fork / "config.json").write_text(json.dumps(fork_config, indent=2))
    tokenizer.save_pretrained(fork)
    return Artefacts(vicuna, clip, projector, lora, fork)


@pytest.fixture(scope="module")
def start(artefacts: Artefacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("start") / "llava-start"
    return build_start_point(artefacts.vicuna, artefacts.clip, artefacts.projector, out, dtype="float32")


def _load(folder: Path) -> LlavaForConditionalGeneration:
    return LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()


def _images() -> list[Image.Image]:
    rng = np.random.RandomState(0)
    return [
        Image.fromarray(rng.randint(0, 256, (24, 40, 3), dtype=np.uint8)),  # wide
        Image.fromarray(rng.randint(0, 256, (50, 30, 3), dtype=np.uint8)),  # tall
    ]


def expand2square(image: Image.Image, background: tuple[int, ...]) -> Image.Image:
    """The fork's ``llava.mm_utils.expand2square``, verbatim in behaviour."""
    width, height = image.size
    if width == height:
        return image
    if width > height:
        result = Image.new(image.mode, (width, width), background)
        result.paste(image, (0, (width - height) // 2))
        return result
    result = Image.new(image.mode, (height, height), background)
    result.paste(image, ((height - width) // 2, 0))
    return result


def fork_pixels(clip: Path) -> torch.Tensor:
    """The fork's ``process_images`` with ``image_aspect_ratio pad``: expand2square (CLIP mean) + CLIP processor."""
    processor = CLIPImageProcessorPil.from_pretrained(clip)
    background = tuple(int(x * 255) for x in processor.image_mean)
    padded = [expand2square(image, background) for image in _images()]
    return processor(padded, return_tensors="pt").pixel_values


def fork_features(vision: CLIPVisionModel, projector: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
    """The fork's encode_images: CLIP ``hidden_states[-2]`` without CLS -> Linear -> GELU -> Linear."""
    w1, b1, w2, b2 = (projector[key] for key in PROJECTOR_KEYS)
    with torch.no_grad():
        features = vision(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        return F.linear(F.gelu(F.linear(features, w1, b1)), w2, b2)


def llava_features(model: LlavaForConditionalGeneration, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack(list(model.get_image_features(pixel_values=pixels).pooler_output))


def _token_ids(folder: Path) -> torch.Tensor:
    processor = AutoProcessor.from_pretrained(folder)
    return processor.tokenizer(list(LLAVA_TEXTS[1:3]), return_tensors="pt", padding=True).input_ids


def _assert_text_logits_equal(llava: LlavaForConditionalGeneration, llama: LlamaForCausalLM, ids: torch.Tensor) -> None:
    with torch.no_grad():
        want = llama(input_ids=ids).logits
        got = llava(input_ids=ids).logits
    assert got.shape[-1] % 64 == 0 and got.shape[-1] > want.shape[-1]
    assert torch.equal(got[..., : want.shape[-1]], want), (got[..., : want.shape[-1]] - want).abs().max()


# ---------------------------------------------------------------- start point


def test_start_point_loads_with_llava_15_config(start: Path, artefacts: Artefacts) -> None:
    model = _load(start)
    processor = AutoProcessor.from_pretrained(start)
    tokenizer = processor.tokenizer
    config = model.config
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    vicuna_vocab = LlamaConfig.from_pretrained(artefacts.vicuna).vocab_size
    assert image_id == vicuna_vocab == config.image_token_index  # appended, as llava-1.5-hf's 32000
    assert tokenizer.pad_token == "<pad>" and config.pad_token_id == tokenizer.pad_token_id
    assert "<image>" in tokenizer.all_special_tokens
    assert tokenizer("Image 1: <image>\n", add_special_tokens=False).input_ids.count(image_id) == 1
    assert config.text_config.vocab_size == 320 and model.lm_head.weight.shape[0] == 320  # 301 rounded up to 64
    assert (config.projector_hidden_act, config.vision_feature_layer) == ("gelu", -2)
    assert config.vision_feature_select_strategy == "default" and config.image_seq_length == 16
    assert processor.chat_template == CHAT_TEMPLATE and tokenizer.chat_template == CHAT_TEMPLATE
    assert processor.patch_size == PATCH and processor.num_additional_image_tokens == 1
    assert type(processor.image_processor).__name__ == "LlavaImageProcessorPil" and processor.image_processor.do_pad
    # New rows: the mean of Vicuna's rows (deterministic version of the historical mean + 1e-5 cov sample).
    llama = LlamaForCausalLM.from_pretrained(artefacts.vicuna, dtype=torch.float32)
    for grown, old in (
        (model.lm_head.weight, llama.lm_head.weight),
        (model.get_input_embeddings().weight, llama.get_input_embeddings().weight),
    ):
        rows = old.shape[0]
        assert torch.equal(grown[:rows], old)
        assert torch.equal(grown[rows:], old.mean(0).expand(320 - rows, -1))
    assert {tensor.dtype for tensor in load_file(start / "model.safetensors").values()} == {torch.float32}


def test_start_point_text_logits_equal_vicuna(start: Path, artefacts: Artefacts) -> None:
    llama = LlamaForCausalLM.from_pretrained(artefacts.vicuna, dtype=torch.float32).eval()
    _assert_text_logits_equal(_load(start), llama, _token_ids(start))


def test_start_point_image_features_equal_the_forks(start: Path, artefacts: Artefacts) -> None:
    pixels = fork_pixels(artefacts.clip)
    vision = CLIPVisionModel.from_pretrained(artefacts.clip, dtype=torch.float32).eval()  # as the fork loads it
    want = fork_features(vision, torch.load(artefacts.projector, weights_only=True), pixels)
    got = llava_features(_load(start), pixels)
    assert got.shape == (2, 16, HIDDEN)
    assert torch.equal(got, want), (got - want).abs().max()


def test_start_point_processor_pads_like_expand2square(start: Path, artefacts: Artefacts) -> None:
    processor = AutoProcessor.from_pretrained(start)
    got = processor.image_processor(_images(), return_tensors="pt").pixel_values
    want = fork_pixels(artefacts.clip)
    assert torch.equal(got, want)
    unpadded = CLIPImageProcessorPil.from_pretrained(artefacts.clip)(_images(), return_tensors="pt").pixel_values
    assert not torch.equal(got, unpadded)  # the padding is really there


def test_start_point_generates_from_two_images(start: Path) -> None:
    model = _load(start)
    processor = AutoProcessor.from_pretrained(start)
    content = [{"type": "text", "text": "Image 1: "}, {"type": "image"}, {"type": "text", "text": "\nImage 2: "}]
    content += [{"type": "image"}, {"type": "text", "text": "\nSummarize the differences."}]
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    assert prompt.endswith("USER: Image 1: <image>\nImage 2: <image>\nSummarize the differences. ASSISTANT:")
    inputs = processor(text=prompt, images=_images(), return_tensors="pt")
    assert int((inputs.input_ids == model.config.image_token_index).sum()) == 32
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert output.shape[0] == 1 and output.shape[1] > inputs.input_ids.shape[1]


def test_start_point_bfloat16(artefacts: Artefacts, tmp_path: Path) -> None:
    out = build_start_point(artefacts.vicuna, artefacts.clip, artefacts.projector, tmp_path / "bf16")
    tensors = load_file(out / "model.safetensors")
    assert {tensor.dtype for tensor in tensors.values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert LlavaForConditionalGeneration.from_pretrained(out).dtype == torch.bfloat16


def test_start_point_square_does_not_pad(artefacts: Artefacts, tmp_path: Path) -> None:
    out = build_start_point(
        artefacts.vicuna, artefacts.clip, artefacts.projector, tmp_path / "square", image_aspect_ratio="square"
    )
    got = AutoProcessor.from_pretrained(out).image_processor(_images(), return_tensors="pt").pixel_values
    unpadded = CLIPImageProcessorPil.from_pretrained(artefacts.clip)(_images(), return_tensors="pt").pixel_values
    assert torch.equal(got, unpadded)  # resize + centre crop, the fork without "pad"


def _first_parameter_devices(build: Callable[[], object]) -> list[str]:
    """The device of every parameter when it was first registered on its module, across everything ``build`` does.

    torch calls a global registration hook for each ``register_parameter``: module constructors register
    their parameters first; ``load_state_dict(assign=True)`` registers the loaded ones later (ignored here).
    """
    first: dict[tuple[int, str], str] = {}
    keep = []  # hold the modules, so no id is reused during the build

    def hook(module: torch.nn.Module, name: str, parameter: torch.nn.Parameter | None) -> None:
        if parameter is not None:
            keep.append(module)
            first.setdefault((id(module), name), parameter.device.type)

    handle = torch.nn.modules.module.register_module_parameter_registration_hook(hook)
    try:
        build()
    finally:
        handle.remove()
    return list(first.values())


def test_start_point_never_builds_a_random_model(artefacts: Artefacts, tmp_path: Path) -> None:
    devices = _first_parameter_devices(
        lambda: build_start_point(artefacts.vicuna, artefacts.clip, artefacts.projector, tmp_path / "out")
    )
    config = LlavaConfig.from_pretrained(tmp_path / "out")
    with torch.device("meta"):
        parameters = len(list(LlavaForConditionalGeneration(config).parameters()))
    assert len(devices) == parameters  # the Llava model was built once ...
    assert set(devices) == {"meta"}  # ... on the meta device, and nothing else was
    # The check can fail: building the model the plain way allocates (and randomly fills) real parameters.
    assert set(_first_parameter_devices(lambda: LlavaForConditionalGeneration(config))) == {"cpu"}


def test_image_settings_read_openai_style_sizes(tmp_path: Path) -> None:
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": 336, "crop_size": 336, "resample": 3}))
    settings = image_settings(tmp_path)
    assert settings == {"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}, "resample": 3}


# ---------------------------------------------------------------- LoRA conversion


@pytest.fixture(scope="module")
def lora_converted(artefacts: Artefacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lora") / "llava-lora"
    return convert_fork_lora(artefacts.lora, artefacts.vicuna, artefacts.clip, out, dtype="float32")


def test_lora_conversion_logits_equal_the_forks_merge(lora_converted: Path, artefacts: Artefacts) -> None:
    llama = LlamaForCausalLM.from_pretrained(artefacts.vicuna, dtype=torch.float32).eval()
    lora = torch.load(artefacts.lora / "adapter_model.bin", weights_only=True)
    merged = fork_merge(dict(llama.state_dict()), lora)
    assert not torch.equal(merged["model.layers.1.mlp.down_proj.weight"], llama.model.layers[1].mlp.down_proj.weight)
    llama.load_state_dict(merged, strict=True)
    _assert_text_logits_equal(_load(lora_converted), llama, _token_ids(lora_converted))


def test_lora_conversion_matches_peft_merge_and_unload(lora_converted: Path, artefacts: Artefacts) -> None:
    """peft itself, reading the fork's adapter folder, merges to the same weights: the scale is honoured."""
    peft = pytest.importorskip("peft")
    base = LlamaForCausalLM.from_pretrained(artefacts.vicuna, dtype=torch.float32)
    merged = peft.PeftModel.from_pretrained(base, artefacts.lora).merge_and_unload().state_dict()
    got = _load(lora_converted).state_dict()
    for key, want in merged.items():
        if key.startswith("model."):
            name = "model.language_model." + key.removeprefix("model.")
            assert torch.equal(got[name][: want.shape[0]], want), key


def test_lora_conversion_image_features_use_the_trained_projector(lora_converted: Path, artefacts: Artefacts) -> None:
    pixels = fork_pixels(artefacts.clip)
    vision = CLIPVisionModel.from_pretrained(artefacts.clip, dtype=torch.float32).eval()
    trained = torch.load(artefacts.lora / "non_lora_trainables.bin", weights_only=True)
    projector = {key: trained["base_model.model." + key] for key in PROJECTOR_KEYS}
    got = llava_features(_load(lora_converted), pixels)
    assert torch.equal(got, fork_features(vision, projector, pixels))
    assert AutoProcessor.from_pretrained(lora_converted).image_processor.do_pad  # the fork config's "pad"


# ---------------------------------------------------------------- merged fork model conversion


@pytest.fixture(scope="module")
def fork_converted(artefacts: Artefacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fork-out") / "llava-fork"
    return convert_fork_model(artefacts.fork, artefacts.clip, out, dtype="float32")


def _fork_state(fork: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(fork.glob("*.safetensors")):
        state |= load_file(shard)
    return state


def test_fork_model_conversion_logits_equal_the_fork_llm(fork_converted: Path, artefacts: Artefacts) -> None:
    state = _fork_state(artefacts.fork)
    llama = LlamaForCausalLM.from_pretrained(artefacts.vicuna, dtype=torch.float32).eval()
    lm = {key: value for key, value in state.items() if key.startswith(("model.layers.", "model.embed", "model.norm"))}
    lm = {key: value for key, value in lm.items() if not key.endswith("inv_freq")}
    llama.load_state_dict(lm | {"lm_head.weight": state["lm_head.weight"]}, strict=True)
    _assert_text_logits_equal(_load(fork_converted), llama, _token_ids(fork_converted))


def test_fork_model_conversion_image_features_use_the_forks_vision_tower(
    fork_converted: Path, artefacts: Artefacts
) -> None:
    state = _fork_state(artefacts.fork)
    vision = CLIPVisionModel.from_pretrained(artefacts.clip, dtype=torch.float32).eval()
    own = {key.removeprefix(FORK_VISION): value for key, value in state.items() if key.startswith(FORK_VISION)}
    own.pop("embeddings.position_ids")
    assert not torch.equal(own["embeddings.class_embedding"], vision.state_dict()["embeddings.class_embedding"])
    vision.load_state_dict(own, strict=True)
    pixels = fork_pixels(artefacts.clip)
    want = fork_features(vision, {key: state[key] for key in PROJECTOR_KEYS}, pixels)
    assert torch.equal(llava_features(_load(fork_converted), pixels), want)


# ---------------------------------------------------------------- bad input


def test_projector_with_other_keys_is_refused(artefacts: Artefacts, tmp_path: Path) -> None:
    bad = tmp_path / "mm_projector.bin"
    torch.save({key.replace("model.mm_projector", "multi_modal_projector"): v for key, v in _projector(1).items()}, bad)
    with pytest.raises(ValueError, match=r"mm_projector\.bin: not a LLaVA mlp2x_gelu projector"):
        build_start_point(artefacts.vicuna, artefacts.clip, bad, tmp_path / "out")


def test_projector_of_the_wrong_size_is_refused(artefacts: Artefacts, tmp_path: Path) -> None:
    bad = tmp_path / "mm_projector.bin"
    tensors = _projector(1)
    tensors["model.mm_projector.0.weight"] = torch.zeros(HIDDEN, VISION_HIDDEN + 1)
    torch.save(tensors, bad)
    message = (
        r"mm_projector\.bin: model\.mm_projector\.0\.weight has shape \[64, 33\], the llava-hf model needs \[64, 32\] "
    )
    with pytest.raises(ValueError, match=message):
        build_start_point(artefacts.vicuna, artefacts.clip, bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_non_lora_trainables_is_refused(artefacts: Artefacts, tmp_path: Path) -> None:
    lora = tmp_path / "lora"
    shutil.copytree(artefacts.lora, lora)
    (lora / "non_lora_trainables.bin").unlink()
    with pytest.raises(ValueError, match=r"non_lora_trainables\.bin: no such file"):
        convert_fork_lora(lora, artefacts.vicuna, artefacts.clip, tmp_path / "out")


def test_lora_on_the_wrong_base_is_refused(artefacts: Artefacts, tmp_path: Path) -> None:
    lora = tmp_path / "lora"
    shutil.copytree(artefacts.lora, lora)
    tensors = torch.load(lora / "adapter_model.bin", weights_only=True)
    key = "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight"
    tensors[key] = torch.zeros(HIDDEN, RANK)  # up_proj's output is 128
    torch.save(tensors, lora / "adapter_model.bin")
    with pytest.raises(ValueError, match=r"adapter_model\.bin: model\.layers\.0\.mlp\.up_proj: lora_A"):
        convert_fork_lora(lora, artefacts.vicuna, artefacts.clip, tmp_path / "out")


@pytest.mark.parametrize("missing", ["vision", "llm"])
def test_missing_folders_are_named(artefacts: Artefacts, tmp_path: Path, missing: str) -> None:
    folders = {"llm": artefacts.vicuna, "vision": artefacts.clip} | {missing: tmp_path / "nowhere"}
    with pytest.raises(ValueError, match="nowhere: no such folder"):
        build_start_point(folders["llm"], folders["vision"], artefacts.projector, tmp_path / "out")


def test_fork_config_with_another_projector_is_refused(artefacts: Artefacts, tmp_path: Path) -> None:
    lora = tmp_path / "lora"
    shutil.copytree(artefacts.lora, lora)
    config = json.loads((lora / "config.json").read_text())
    config.pop("mm_projector_type")  # the fork's default: a single linear layer (LLaVA-1.0)
    (lora / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"lora/config\.json: mm_projector_type is 'linear'"):
        convert_fork_lora(lora, artefacts.vicuna, artefacts.clip, tmp_path / "out")


def test_an_existing_output_folder_is_not_overwritten(artefacts: Artefacts, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"out: exists and is not an empty folder"):
        build_start_point(artefacts.vicuna, artefacts.clip, artefacts.projector, out)
    assert (out / "keep.txt").read_text() == "mine"
