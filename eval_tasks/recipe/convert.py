"""Fork-format (LLaVA / CaD-VI repository) checkpoints -> llava-hf folders, for evaluation and comparison.

The fork saves two kinds of checkpoint, and lmms-eval ``llava_hf`` / ``LlavaForConditionalGeneration`` read
neither:

* :func:`convert_fork_lora`: a LoRA run's output folder, laid out as ``liuhaotian/llava-v1.5-7b-lora``
  (``adapter_config.json``, ``adapter_model.bin`` with ``base_model.model.model.layers.N....lora_{A,B}.weight``,
  ``non_lora_trainables.bin`` with the trained projector, the fork's ``config.json``), merged into the base
  Vicuna as the fork's ``merge_lora_weights.py`` does: ``W' = W + (B @ A) * scale``, ``scale = lora_alpha / r``
  (``lora_alpha / sqrt(r)`` with ``use_rslora``), peft's own formula. The merge is done here in plain torch,
  in float32, with one rounding to the output dtype: exact for float32, and no peft key guessing.
* :func:`convert_fork_model`: a merged fork model (``LlavaLlamaForCausalLM`` state dict, its tokenizer).

Both go through :mod:`.checkpoints`' key map and :mod:`.start`'s folder writer, so the start point and every
converted checkpoint share one layout. The fork's ``config.json`` is checked for what a llava-hf LLaVA-1.5 can
express (the ``mlp2x_gelu`` projector, no ``<im_start>`` tokens, flat patches); its ``mm_vision_select_layer`` /
``mm_vision_select_feature`` and ``image_aspect_ratio`` carry over.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from eval_tasks.recipe.checkpoints import (
    LM_PREFIXES,
    PROJECTOR_KEYS,
    PROJECTOR_PREFIX,
    Weights,
    fork_key,
    read_fork_weights,
    read_tensors,
    read_text_config,
    read_vision,
    weight_files,
)
from eval_tasks.recipe.start import write_llava_folder

# peft's names for a LoRA pair; old peft (the fork's) saves no adapter name, newer ones ".default".
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<side>[AB])(?:\.default)?\.weight$")
_PEFT_PREFIX = "base_model.model."  # non_lora_trainables.bin: "base_model.model.model.mm_projector.0.weight"
_SELECT_FEATURE = {"patch": "default", "cls_patch": "full"}
# Keys of the fork's LlavaConfig that are not LlamaConfig's (dropped when its config.json becomes a LlamaConfig).
_FORK_CONFIG_KEYS = re.compile(
    r"^(mm_.*|image_aspect_ratio|image_grid_pinpoints|tune_mm_mlp_adapter|freeze_mm_mlp_adapter|use_mm_proj|"
    r"unfreeze_mm_vision_tower|tokenizer_model_max_length|tokenizer_padding_side|model_type|architectures|"
    r"_name_or_path|transformers_version)$"
)


def convert_fork_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    vision: str | Path,
    llm: str | Path | None = None,
    dtype: str = "bfloat16",
    image_aspect_ratio: str | None = None,
) -> Path:
    """A fork checkpoint folder of either kind -> llava-hf: a LoRA folder (``adapter_config.json``; needs ``llm``,
    its base Vicuna folder) or a full fork model."""
    checkpoint = Path(checkpoint)
    if (checkpoint / "adapter_config.json").is_file():
        if llm is None:
            raise ValueError(f"{checkpoint}: a fork LoRA folder needs its base language model (--llm VICUNA_FOLDER)")
        return convert_fork_lora(checkpoint, llm, vision, out, dtype=dtype, image_aspect_ratio=image_aspect_ratio)
    return convert_fork_model(checkpoint, vision, out, dtype=dtype, image_aspect_ratio=image_aspect_ratio)


def convert_fork_lora(
    lora_dir: str | Path,
    llm: str | Path,
    vision: str | Path,
    out: str | Path,
    *,
    dtype: str = "bfloat16",
    image_aspect_ratio: str | None = None,
) -> Path:
    """A fork LoRA folder + its base Vicuna folder + the CLIP folder -> a merged llava-hf folder in ``out``.

    ``image_aspect_ratio``: ``None`` takes the fork config's (as the fork's evaluation does: absent = no pad).
    """
    lora_dir, llm, vision = Path(lora_dir), Path(llm), Path(vision)
    fork = fork_settings(lora_dir / "config.json")
    text_config = read_text_config(llm)
    vision_config, weights, settings = read_vision(vision)
    _check_hidden_sizes(fork, lora_dir / "config.json", text_config.hidden_size, vision_config.hidden_size)
    weights.overlay(read_non_lora_trainables(lora_dir / "non_lora_trainables.bin"))  # small inputs first: fail fast
    weights.overlay(merge_lora(read_fork_weights(weight_files(llm), prefixes=LM_PREFIXES), lora_dir, dtype=dtype))
    return write_llava_folder(
        out,
        text_config=text_config,
        vision_config=vision_config,
        weights=weights,
        language_folder=llm,
        image_settings=settings,
        dtype=dtype,
        image_aspect_ratio=image_aspect_ratio or fork["image_aspect_ratio"],
        vision_folder=vision,
        projector_source=lora_dir / "non_lora_trainables.bin",
        vision_feature_layer=fork["vision_feature_layer"],
        vision_feature_select_strategy=fork["vision_feature_select_strategy"],
    )


def convert_fork_model(
    fork_dir: str | Path,
    vision: str | Path,
    out: str | Path,
    *,
    dtype: str = "bfloat16",
    image_aspect_ratio: str | None = None,
) -> Path:
    """A merged fork model folder (weights, fork ``config.json``, tokenizer) + the CLIP folder -> llava-hf ``out``.

    The CLIP folder gives the vision config and image preprocessing, and the vision weights unless the fork
    checkpoint holds its own (``model.vision_tower.vision_tower.vision_model.*``), which then win.
    """
    from transformers import LlamaConfig

    fork_dir, vision = Path(fork_dir), Path(vision)
    config_file = fork_dir / "config.json"
    fork = fork_settings(config_file)
    text_config = LlamaConfig(**{key: value for key, value in fork["raw"].items() if not _FORK_CONFIG_KEYS.match(key)})
    vision_config, weights, settings = read_vision(vision)
    _check_hidden_sizes(fork, config_file, text_config.hidden_size, vision_config.hidden_size)
    files = weight_files(fork_dir)
    own = read_fork_weights(files)
    if not own.select([PROJECTOR_PREFIX]).tensors:
        raise ValueError(f"{files[0]}: no model.mm_projector tensors: not a merged fork (LlavaLlamaForCausalLM) model")
    weights.overlay(own)
    del own  # the writer casts tensor by tensor; a second reference would keep every original alive
    return write_llava_folder(
        out,
        text_config=text_config,
        vision_config=vision_config,
        weights=weights,
        language_folder=fork_dir,
        image_settings=settings,
        dtype=dtype,
        image_aspect_ratio=image_aspect_ratio or fork["image_aspect_ratio"],
        vision_folder=vision,
        projector_source=fork_dir,
        vision_feature_layer=fork["vision_feature_layer"],
        vision_feature_select_strategy=fork["vision_feature_select_strategy"],
    )


def fork_settings(config_file: str | Path) -> dict[str, Any]:
    """The fork ``config.json``'s multimodal settings as llava-hf ones; ValueError for what llava-hf cannot express.

    Defaults are the fork's own: a missing ``mm_projector_type`` is ``linear`` (refused), a missing
    ``mm_vision_select_feature`` is ``patch``, a missing ``image_aspect_ratio`` means no padding.
    """
    path = Path(config_file)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (the fork's config.json)")
    try:
        raw = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path}: not JSON ({error})") from error
    projector = raw.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise ValueError(f"{path}: mm_projector_type is {projector!r}; only LLaVA-1.5's 'mlp2x_gelu' is supported")
    if raw.get("mm_use_im_start_end"):
        raise ValueError(f"{path}: mm_use_im_start_end is true; llava-hf has no <im_start>/<im_end> tokens")
    if raw.get("mm_patch_merge_type", "flat") != "flat":
        raise ValueError(f"{path}: mm_patch_merge_type is {raw['mm_patch_merge_type']!r}; only 'flat' is supported")
    feature = raw.get("mm_vision_select_feature", "patch")
    if feature not in _SELECT_FEATURE:
        raise ValueError(f"{path}: mm_vision_select_feature is {feature!r}, expected one of {list(_SELECT_FEATURE)}")
    layer = raw.get("mm_vision_select_layer")
    if not isinstance(layer, int):
        raise ValueError(f"{path}: mm_vision_select_layer is {layer!r}, expected an int (LLaVA-1.5: -2)")
    aspect = raw.get("image_aspect_ratio") or "square"
    return {
        "raw": raw,
        "vision_feature_layer": layer,
        "vision_feature_select_strategy": _SELECT_FEATURE[feature],
        "image_aspect_ratio": aspect,
    }


def read_non_lora_trainables(path: str | Path) -> Weights:
    """``non_lora_trainables.bin``: the trained projector (and anything else trained in full), llava-hf names."""
    path = Path(path)
    weights = read_fork_weights([path], strip=(_PEFT_PREFIX,))
    missing = [key for key in PROJECTOR_KEYS if fork_key(key) not in weights.tensors]
    if missing:
        raise ValueError(f"{path}: the projector is missing from it ({', '.join(missing)})")
    return weights


def merge_lora(language: Weights, lora_dir: str | Path, *, dtype: str) -> Weights:
    """Fold the fork's LoRA into ``language`` (llava-hf names), in place: ``W + (B @ A) * scale``, in float32.

    Returns ``language``. Each merged weight is rounded once, to ``dtype``; the original is released.

    Every adapter tensor must be a LoRA A/B pair on a weight the base model has, with the config's rank and
    matching shapes: anything else (DoRA, rank patterns, LoRA biases, embedding LoRA) is refused, not skipped.
    """
    import torch

    lora_dir = Path(lora_dir)
    config_file = lora_dir / "adapter_config.json"
    scale, rank, transpose = lora_scale(config_file)
    adapter_file = next(
        (lora_dir / name for name in ("adapter_model.safetensors", "adapter_model.bin") if (lora_dir / name).is_file()),
        lora_dir / "adapter_model.bin",
    )
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in read_tensors(adapter_file).items():
        match = _LORA_KEY.match(key)
        if match is None:
            raise ValueError(f"{adapter_file}: {key} is not a LoRA A/B weight of the fork's adapter")
        pairs.setdefault(match["module"], {})[match["side"]] = tensor
    if not pairs:
        raise ValueError(f"{adapter_file}: holds no LoRA weights")
    target = getattr(torch, dtype)
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise ValueError(f"{adapter_file}: {module} has lora_{''.join(pair)} but not its pair")
        try:
            name = fork_key(module + ".weight")
        except KeyError:
            name = None
        if name is None or name not in language.tensors:
            raise ValueError(f"{adapter_file}: {module} is not a weight of the base language model")
        weight, a, b = language.tensors[name], pair["A"].float(), pair["B"].float()
        delta_shape = (b.shape[0], a.shape[1]) if not transpose else (a.shape[1], b.shape[0])
        if a.shape[0] != rank or b.shape[1] != rank or tuple(weight.shape) != delta_shape:
            raise ValueError(
                f"{adapter_file}: {module}: lora_A {list(a.shape)} / lora_B {list(b.shape)} do not fit rank {rank} "
                f"and the base weight {list(weight.shape)}"
            )
        delta = (b @ a) * scale
        if transpose:
            delta = delta.T
        language.tensors[name] = (weight.float() + delta).to(target if weight.is_floating_point() else weight.dtype)
    return language


def lora_scale(config_file: str | Path) -> tuple[float, int, bool]:
    """``adapter_config.json`` -> (scale, rank, fan_in_fan_out): ``lora_alpha / r``, or ``/ sqrt(r)`` for rsLoRA."""
    path = Path(config_file)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (the LoRA adapter's config)")
    try:
        config = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path}: not JSON ({error})") from error
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{path}: peft_type is {config['peft_type']!r}, expected 'LORA'")
    for unsupported in ("use_dora", "rank_pattern", "alpha_pattern"):
        if config.get(unsupported):
            raise ValueError(f"{path}: {unsupported} is set; only plain LoRA (one r, one lora_alpha) is supported")
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(rank, int) or rank <= 0 or not isinstance(alpha, (int, float)):
        raise ValueError(f"{path}: needs a positive int r and a numeric lora_alpha, got r={rank!r}, alpha={alpha!r}")
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    return scale, rank, bool(config.get("fan_in_fan_out"))


def _check_hidden_sizes(fork: dict[str, Any], path: Path, text: int, vision: int) -> None:
    """The fork config's sizes must be those of the folders it is combined with (a wrong base is caught here)."""
    raw = fork["raw"]
    if raw.get("mm_hidden_size", vision) != vision:
        raise ValueError(f"{path}: mm_hidden_size is {raw['mm_hidden_size']}, the CLIP folder's hidden size {vision}")
    if raw.get("hidden_size", text) != text:
        raise ValueError(f"{path}: hidden_size is {raw['hidden_size']}, the language model's {text}")
