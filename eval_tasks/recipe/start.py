"""The CaD-VI stage-2 start point as a llava-hf folder: Vicuna-1.5 + CLIP + the LLaVA-1.5 stage-1 projector.

CaD-VI trains LLaVA-1.5 stage 2 (LoRA) from three separate artefacts, not from the finished llava-1.5-7b:
a Vicuna-1.5 folder (``LlamaForCausalLM`` + tokenizer), a CLIP folder (a full ``CLIPModel`` such as
``openai/clip-vit-large-patch14-336``, or a ``CLIPVisionModel``) and the stage-1 ``mm_projector.bin``
(``model.mm_projector.{0,2}.{weight,bias}``). :func:`build_start_point` joins them into one
``LlavaForConditionalGeneration`` + ``LlavaProcessor`` folder, configured as llava-hf's llava-1.5 (GELU
projector, ``vision_feature_layer -2``, CLS dropped), that ``from_pretrained`` and lmms-eval ``llava_hf`` load.

The readers and the fork -> llava-hf key map live in :mod:`.checkpoints`; the folder writer,
:func:`write_llava_folder`, lives here and :mod:`.convert` shares it, so the start point and every converted
checkpoint share one layout.

Memory: the model is built on the meta device and the checkpoint tensors (memory-mapped for ``.bin``,
read tensor by tensor for ``.safetensors``) are assigned into it with ``load_state_dict(assign=True,
strict=True)``; no random copy of the model is ever made, so a 7B build needs about one model of RAM.

Vocabulary, as transformers' historical ``convert_llava_weights_to_hf.py`` did: ``<image>`` is added to the
tokenizer as a special token (``image_token_index`` is its id), ``<pad>`` becomes the pad token (added if
missing), and the embedding and ``lm_head`` grow to a multiple of 64 rows. Every new row is the mean of the
original rows: the historical script sampled them from N(mean, 1e-5 * covariance), i.e. the mean plus
negligible noise; the plain mean is the same thing made deterministic. The fork never embeds these tokens
(``<image>`` positions are overwritten by image features, pad positions are masked), so they matter only if the
model samples them.

Images: with ``image_aspect_ratio="pad"`` the processor is ``LlavaImageProcessor(do_pad=True)``, the fork's
``expand2square`` with the CLIP mean colour, bit-identical with the PIL backend (the one transformers picks
without torchvision; with torchvision installed, load with ``AutoProcessor.from_pretrained(path,
backend="pil")`` to keep the fork's PIL resize).
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval_tasks.recipe.checkpoints import (
    EMBEDDINGS,
    IMAGE_TOKEN,
    LM_PREFIXES,
    PROJECTOR_PREFIX,
    VISION_PREFIX,
    Weights,
    read_fork_weights,
    read_generation_config,
    read_projector,
    read_text_config,
    read_tokenizer,
    read_vision,
    weight_files,
)
from eval_tasks.recipe.images import ASPECT_RATIOS, padding_image_processor
from eval_tasks.recipe.template import CHAT_TEMPLATE

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

DTYPES = ("bfloat16", "float16", "float32")
VOCAB_MULTIPLE = 64


def build_start_point(
    llm: str | Path,
    vision: str | Path,
    projector: str | Path,
    out: str | Path,
    *,
    dtype: str = "bfloat16",
    image_aspect_ratio: str = "pad",
) -> Path:
    """Vicuna folder + CLIP folder + stage-1 ``mm_projector.bin`` -> a llava-hf folder in ``out``; returns ``out``.

    ``out`` must not exist or be empty; it appears only once complete (built in a sibling folder and renamed).
    """
    llm, vision, projector = Path(llm), Path(vision), Path(projector)
    text_config = read_text_config(llm)
    vision_config, weights, settings = read_vision(vision)
    weights.overlay(read_projector(projector))  # the small file first: a wrong one fails before the LLM is read
    weights.overlay(read_fork_weights(weight_files(llm), prefixes=LM_PREFIXES))
    return write_llava_folder(
        out,
        text_config=text_config,
        vision_config=vision_config,
        weights=weights,
        language_folder=llm,
        image_settings=settings,
        dtype=dtype,
        image_aspect_ratio=image_aspect_ratio,
        vision_folder=vision,
        projector_source=projector,
    )


def write_llava_folder(
    out: str | Path,
    *,
    text_config: PretrainedConfig,
    vision_config: PretrainedConfig,
    weights: Weights,
    language_folder: Path,
    image_settings: dict[str, Any],
    dtype: str,
    image_aspect_ratio: str,
    vision_folder: Path,
    projector_source: Path,
    vision_feature_layer: int = -2,
    vision_feature_select_strategy: str = "default",
) -> Path:
    """Write llava-hf-named ``weights`` + configs + processor as a ``LlavaForConditionalGeneration`` folder.

    ``language_folder`` gives the tokenizer (with ``<image>`` and ``<pad>`` added, :func:`read_tokenizer`: the
    new ids get the mean embedding, see the module docstring) and the generation config. The three
    folders (and the projector's file) are named when their tensors are missing. The model is built on the
    meta device and the tensors assigned into it, strictly, so every name and shape is checked against the real
    architecture.
    """
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    out = Path(out)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if image_aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"image_aspect_ratio must be one of {ASPECT_RATIOS}, got {image_aspect_ratio!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an empty folder")
    torch_dtype = getattr(torch, dtype)

    tokenizer, base_vocab = read_tokenizer(language_folder)
    generation_config = read_generation_config(language_folder, text_config)
    text_config = copy.deepcopy(text_config)  # the caller's stays as it was
    text_config._name_or_path = ""  # not the build machine's paths
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if text_config.tie_word_embeddings and "lm_head.weight" not in weights.tensors and EMBEDDINGS[0] in weights.tensors:
        weights.add("lm_head.weight", weights.tensors[EMBEDDINGS[0]], *weights.origin[EMBEDDINGS[0]])
    if EMBEDDINGS[0] in weights.tensors:
        text_config.vocab_size = _grow_vocabulary(weights, len(tokenizer), range(base_vocab, len(tokenizer)))
    text_config.pad_token_id = tokenizer.pad_token_id
    for name, tensor in weights.tensors.items():  # one tensor at a time: the source copy is freed as we go
        if tensor.is_floating_point():
            weights.tensors[name] = tensor.to(torch_dtype)
    patches = (vision_config.image_size // vision_config.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=image_id,
        image_seq_length=patches + (vision_feature_select_strategy == "full"),
        projector_hidden_act="gelu",
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy=vision_feature_select_strategy,
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(text_config.tie_word_embeddings),
    )
    config.pad_token_id = tokenizer.pad_token_id
    config.dtype = torch_dtype
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    sources = {
        LM_PREFIXES[0]: language_folder,
        LM_PREFIXES[1]: language_folder,
        VISION_PREFIX: vision_folder,
        PROJECTOR_PREFIX: projector_source,
    }
    _check_against(model.state_dict(), weights, sources, text_config.hidden_size, vision_config.hidden_size)
    model.load_state_dict(weights.tensors, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config = generation_config

    processor = _processor(
        tokenizer, image_settings, vision_config.patch_size, image_aspect_ratio, vision_feature_select_strategy
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _grow_vocabulary(weights: Weights, tokens: int, new_ids: Iterable[int]) -> int:
    """Grow the embedding and ``lm_head`` to hold ``tokens`` ids, rounded up to 64 rows; new rows get the mean.

    Returns the new row count. Rows of ids in ``new_ids`` that already existed (a model with spare rows) are
    set to the mean too: they were never trained for these tokens.
    """
    import torch

    old_rows = weights.tensors[EMBEDDINGS[0]].shape[0]
    rows = math.ceil(max(old_rows, tokens) / VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    reused = [index for index in new_ids if index < old_rows]
    for name in EMBEDDINGS:
        old = weights.tensors.get(name)
        if old is None:
            continue
        if old.shape[0] != old_rows:
            raise ValueError(f"{weights.origin[name][0]}: {name} has {old.shape[0]} rows, the embedding {old_rows}")
        mean = old.float().mean(dim=0).to(old.dtype)
        grown = torch.cat([old, mean.expand(rows - old_rows, -1)]) if rows > old_rows else old.clone()
        grown[reused] = mean
        weights.tensors[name] = grown
    return rows


def _check_against(
    expected: Mapping[str, torch.Tensor], weights: Weights, sources: Mapping[str, Path], text: int, vision: int
) -> None:
    """One-line ValueErrors naming the input for missing, unexpected or mis-shaped tensors (before loading)."""
    missing = sorted(set(expected) - set(weights.tensors))
    if missing:
        source = next((path for prefix, path in sources.items() if missing[0].startswith(prefix)), "the inputs")
        raise ValueError(f"{source}: {len(missing)} tensors the llava-hf model needs are missing, e.g. {missing[:3]}")
    for name, tensor in weights.tensors.items():
        file, source_name = weights.origin[name]
        if name not in expected:
            raise ValueError(f"{file}: {source_name} has no place in a LlavaForConditionalGeneration ({name})")
        if tensor.shape != expected[name].shape:
            raise ValueError(
                f"{file}: {source_name} has shape {list(tensor.shape)}, the llava-hf model needs "
                f"{list(expected[name].shape)} (LLM hidden size {text}, vision hidden size {vision})"
            )


def _processor(
    tokenizer: PreTrainedTokenizerBase,
    settings: dict[str, Any],
    patch_size: int,
    image_aspect_ratio: str,
    vision_feature_select_strategy: str,
) -> Any:
    """``LlavaProcessor``: the CLIP folder's preprocessing, padded to square for ``pad``, and the recipe's template."""
    from transformers import LlavaProcessor

    image_processor = padding_image_processor(settings, image_aspect_ratio)
    tokenizer.chat_template = CHAT_TEMPLATE
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy=vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's CLS
        image_token=IMAGE_TOKEN,
        chat_template=CHAT_TEMPLATE,
    )
