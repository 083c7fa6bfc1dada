"""Reading the artefacts a llava-hf folder is built from, under llava-hf names: fork and CLIP checkpoints.

:mod:`.start` (the CaD-VI stage-2 start point) and :mod:`.convert` (fork checkpoints -> llava-hf) both read
through here, so there is one key map: :func:`fork_key` / :func:`clip_key` turn fork names
(``LlavaLlamaForCausalLM``; a plain ``LlamaForCausalLM`` such as Vicuna-1.5 uses the same names, and the
stage-1 ``mm_projector.bin`` holds ``model.mm_projector.{0,2}.{weight,bias}``) and CLIP names (a full
``CLIPModel`` such as ``openai/clip-vit-large-patch14-336``, or a ``CLIPVisionModel``) into
``LlavaForConditionalGeneration`` names, and drop the buffers old checkpoints saved and CLIP's text tower.
:func:`read_tensors` / :func:`weight_files` read memory-mapped, sharded checkpoints (``.bin`` memory-mapped,
``.safetensors`` read tensor by tensor), so nothing here copies a model; :class:`Weights` keeps each tensor's
file and source name for errors. The language model's config, tokenizer (``<image>`` and ``<pad>`` added;
:mod:`.start` says why) and generation config, and the CLIP folder's image settings, are read here too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval_tasks.recipe.images import IMAGE_SETTINGS

if TYPE_CHECKING:
    import torch
    from transformers import GenerationConfig, PretrainedConfig, PreTrainedTokenizerBase

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
PROJECTOR_KEYS = (
    "model.mm_projector.0.weight",
    "model.mm_projector.0.bias",
    "model.mm_projector.2.weight",
    "model.mm_projector.2.bias",
)
LM_PREFIXES = ("model.language_model.", "lm_head.")
VISION_PREFIX = "model.vision_tower."
PROJECTOR_PREFIX = "model.multi_modal_projector."
EMBEDDINGS = ("model.language_model.embed_tokens.weight", "lm_head.weight")
# Checked in this order: safetensors before pickles, an index (sharded) before a single file.
WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)

# Fork (LlavaLlamaForCausalLM; a plain LlamaForCausalLM uses the same names) -> LlavaForConditionalGeneration.
_FORK_PREFIXES = (
    ("model.vision_tower.vision_tower.vision_model.", VISION_PREFIX),
    ("model.mm_projector.0.", PROJECTOR_PREFIX + "linear_1."),
    ("model.mm_projector.2.", PROJECTOR_PREFIX + "linear_2."),
    ("model.layers.", "model.language_model.layers."),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
)
# Buffers old checkpoints saved and transformers 5.x recomputes (non-persistent now).
_DROPPED_BUFFERS = re.compile(r"(^|\.)(rotary_emb\.inv_freq|position_ids)$")
# CLIPModel parts LLaVA does not use; CLIPVisionModel's own top-level modules (5.x saves them unprefixed).
_CLIP_UNUSED = ("text_model.", "text_projection.", "visual_projection.", "logit_scale")
_CLIP_VISION_MODULES = ("embeddings.", "pre_layrnorm.", "encoder.", "post_layernorm.")


def fork_key(key: str) -> str | None:
    """The llava-hf name of a fork parameter, ``None`` for a stale buffer; ``KeyError`` if it is not a fork name."""
    if _DROPPED_BUFFERS.search(key):
        return None
    for old, new in _FORK_PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    raise KeyError(key)


def clip_key(key: str) -> str | None:
    """The llava-hf name of a CLIPModel / CLIPVisionModel parameter, ``None`` for the text tower and buffers."""
    if _DROPPED_BUFFERS.search(key) or key.startswith(_CLIP_UNUSED):
        return None
    key = key.removeprefix("vision_model.")
    if key.startswith(_CLIP_VISION_MODULES):
        return VISION_PREFIX + key
    raise KeyError(key)


@dataclass
class Weights:
    """Tensors under their llava-hf names, each with the file it came from and its name there (for errors)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    origin: dict[str, tuple[Path, str]] = field(default_factory=dict)

    def add(self, name: str, tensor: torch.Tensor, file: Path, source_name: str) -> None:
        self.tensors[name] = tensor
        self.origin[name] = (file, source_name)

    def overlay(self, other: Weights) -> None:
        """Put ``other``'s tensors over these (the fork's projector over the stage-1 one, ...); shapes must agree."""
        for name, tensor in other.tensors.items():
            old = self.tensors.get(name)
            if old is not None and old.shape != tensor.shape:
                file, source = other.origin[name]
                raise ValueError(
                    f"{file}: {source} has shape {list(tensor.shape)}, but {self.origin[name][0]} gives it "
                    f"{list(old.shape)}"
                )
            self.add(name, tensor, *other.origin[name])

    def select(self, prefixes: Sequence[str]) -> Weights:
        """The tensors whose llava-hf names start with one of ``prefixes``."""
        chosen = Weights()
        for name, tensor in self.tensors.items():
            if name.startswith(tuple(prefixes)):
                chosen.add(name, tensor, *self.origin[name])
        return chosen


def weight_files(folder: str | Path) -> list[Path]:
    """The checkpoint files of a ``save_pretrained`` folder: the single file, or every shard its index names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return [path]
        try:
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a checkpoint index with a weight_map ({error})") from error
        files = [folder / shard for shard in shards]
        missing = [file.name for file in files if not file.is_file()]
        if missing:
            raise ValueError(f"{path}: names shards that are not in the folder: {', '.join(missing)}")
        return files
    raise ValueError(f"{folder}: no checkpoint in it (looked for {', '.join(WEIGHT_FILES)})")


def read_tensors(path: str | Path, keep: Callable[[str], bool] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of one ``.safetensors`` or ``.bin`` file (those whose name ``keep`` accepts), read lazily.

    ``.bin`` files are memory-mapped (``torch.load(mmap=True, weights_only=True)``: pages are read when used,
    and no pickle code runs); ``.safetensors`` files are read through ``safe_open``, one tensor at a time, so
    tensors ``keep`` refuses (CLIP's text tower) are never read at all.
    """
    import torch
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                keys = [key for key in handle.keys() if keep is None or keep(key)]  # noqa: SIM118 (not a dict)
                return {key: handle.get_tensor(key) for key in keys}
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as error:  # the formats raise many types; the caller needs the file named
        raise ValueError(f"{path}: cannot be read as a checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(state, Mapping) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{path}: is not a flat state dict of tensors")
    return {key: value for key, value in state.items() if keep is None or keep(key)}


def read_fork_weights(
    files: Iterable[Path], *, prefixes: Sequence[str] | None = None, strip: Sequence[str] = ()
) -> Weights:
    """Fork-named tensors (a fork checkpoint, a Vicuna ``LlamaForCausalLM``, a projector) under llava-hf names.

    ``strip``: prefixes removed first, in order, when present (``non_lora_trainables.bin`` carries peft's
    ``base_model.model.``). ``prefixes``: the llava-hf prefixes allowed, so a wrong file fails here, by name.
    """
    weights = Weights()
    for file in files:
        unknown = []
        for key, tensor in read_tensors(file).items():
            name = key
            for prefix in strip:
                name = name.removeprefix(prefix)
            try:
                new = fork_key(name)
            except KeyError:
                unknown.append(key)
                continue
            if new is None:
                continue
            if prefixes is not None and not new.startswith(tuple(prefixes)):
                unknown.append(key)
                continue
            weights.add(new, tensor, file, key)
        if unknown:
            raise ValueError(f"{file}: {len(unknown)} tensor names this file should not hold, e.g. {unknown[:3]}")
    return weights


def read_projector(path: str | Path, *, strip: Sequence[str] = ()) -> Weights:
    """A stage-1 ``mm_projector.bin``: exactly the fork's four ``model.mm_projector.{0,2}`` tensors."""
    path = Path(path)
    keys = []
    for key in read_tensors(path):
        for prefix in strip:
            key = key.removeprefix(prefix)
        keys.append(key)
    if sorted(keys) != sorted(PROJECTOR_KEYS):
        raise ValueError(
            f"{path}: not a LLaVA mlp2x_gelu projector: expected the keys {list(PROJECTOR_KEYS)}, "
            f"found {sorted(keys)[:6]}"
        )
    return read_fork_weights([path], strip=strip)


def read_vision(folder: str | Path) -> tuple[PretrainedConfig, Weights, dict[str, Any]]:
    """A CLIP folder -> (its vision config, its vision tensors under llava-hf names, its image settings).

    A full ``CLIPModel`` (``vision_model.*`` + ``text_model.*``) keeps only the vision tower, which is what
    the fork's ``CLIPVisionModel.from_pretrained`` loads from the same folder.
    """
    from transformers import CLIPConfig, CLIPVisionConfig

    folder = Path(folder)
    config_file = _config_file(folder)
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type == "clip":
        vision_config = CLIPConfig.from_pretrained(folder).vision_config
    elif model_type == "clip_vision_model":
        vision_config = CLIPVisionConfig.from_pretrained(folder)
    else:
        raise ValueError(f"{config_file}: model_type is {model_type!r}, expected 'clip' or 'clip_vision_model'")
    weights = Weights()
    for file in weight_files(folder):
        unknown = []
        for key, tensor in read_tensors(file, keep=lambda key: not key.startswith(_CLIP_UNUSED)).items():
            try:
                name = clip_key(key)
            except KeyError:
                unknown.append(key)
                continue
            if name is not None:
                weights.add(name, tensor, file, key)
        if unknown:
            raise ValueError(f"{file}: {len(unknown)} tensor names that are not CLIP's, e.g. {unknown[:3]}")
    return vision_config, weights, image_settings(folder)


def image_settings(folder: str | Path) -> dict[str, Any]:
    """The CLIP folder's ``preprocessor_config.json`` as image-processor settings, in the current size format.

    Old files (openai's own) write ``size: 336`` and ``crop_size: 336``: that is ``shortest_edge`` 336 and a
    336 x 336 crop, as ``CLIPImageProcessor`` reads them.
    """
    path = Path(folder) / "preprocessor_config.json"
    if not path.is_file():
        raise ValueError(f"{path}: no such file (the CLIP folder's image preprocessing settings)")
    try:
        raw = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path}: not JSON ({error})") from error
    settings = {key: raw[key] for key in IMAGE_SETTINGS if key in raw}
    if isinstance(settings.get("size"), int):
        settings["size"] = {"shortest_edge": settings["size"]}
    if isinstance(settings.get("crop_size"), int):
        settings["crop_size"] = {"height": settings["crop_size"], "width": settings["crop_size"]}
    return settings


def read_text_config(folder: str | Path) -> PretrainedConfig:
    """The language model's config (Vicuna-1.5: a ``LlamaConfig``)."""
    from transformers import AutoConfig

    folder = Path(folder)
    _config_file(folder)
    return AutoConfig.from_pretrained(folder)


def read_tokenizer(folder: str | Path) -> tuple[PreTrainedTokenizerBase, int]:
    """The LLM's tokenizer with ``<image>`` (a named special token) and ``<pad>`` (the pad token) added.

    Returns it and its length before adding, so the caller knows which ids are new.
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    try:
        before = len(AutoTokenizer.from_pretrained(folder))
        tokenizer = AutoTokenizer.from_pretrained(folder, extra_special_tokens={"image_token": IMAGE_TOKEN})
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{folder}: no usable tokenizer in it ({error})") from error
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return tokenizer, before


def read_generation_config(folder: str | Path, text_config: PretrainedConfig) -> GenerationConfig:
    """The folder's ``generation_config.json`` (Vicuna's), or one derived from the model config."""
    from transformers import GenerationConfig

    if (Path(folder) / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(folder)
    return GenerationConfig.from_model_config(text_config)


def _config_file(folder: Path) -> Path:
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    path = folder / "config.json"
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return path
