"""Tiny, random models built on the fly: for the demo, ``transformers serve`` and tests.

* :func:`build_tiny_chat_model`: Mixtral-shaped (Mistral) text chat model.
* :func:`build_tiny_llava`: LLaVA-1.5-shaped image-text model (CLIP vision tower, Llama text model).

Nothing is downloaded: the tokenizer is a byte-level BPE trained on a few sentences and the weights
are random, so the text they write is gibberish, but every code path of a real model runs:
a chat template with BOS, a template that rejects the ``system`` role like Mixtral's original one
(so system-prompt folding is exercised), EOS and pad ids, ``save_pretrained`` files any loader reads;
for the LLaVA, image tokens expanded by its processor (16 per image) and a ``vicuna_v1`` template.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# Mixtral-8x7B-Instruct-v0.1's original template: no system role, strictly alternating turns.
MIXTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
    "{% endfor %}"
)
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
DEFAULT_TEXTS: tuple[str, ...] = (
    "Summarize the commonalities and differences of the two images.",
    "Commonalities: Both images show a dog outdoors on the grass.",
    "Differences: 1. Object types: Image 1 has a dog, Image 2 has a bird.",
    "2. Counting the objects: Image 1 shows two cats; Image 2 shows one horse.",
    "3. Object locations: the first scene is a kitchen, the second a beach at sunset.",
    "Which image suits the caption better? A. Image 1 B. Image 2. Answer with the option's letter.",
    "[INST] You are a careful assistant. Describe the picture. [/INST]",
    "A man in a red shirt rides a bicycle next to a white car parked on the street.",
)
# LLaVA-1.5's vicuna_v1 prompt; content parts are rendered in order, an image as "<image>" (which the
# processor expands to the image's tokens), so interleaved images land where the caller put them.
VICUNA_V1_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first %}A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions. {% endif %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'user' %} {% else %}</s>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions. "
)
LLAVA_TEXTS: tuple[str, ...] = (
    "Image 1: <image>\nImage 2: <image>\nWhich image suits the caption better?",
    "A. Image 1\nB. Image 2\nAnswer with the option's letter from the given choices directly.",
    'Is the statement "A part of the sky is visible" True or False? Answer with "True" or "False" directly.',
    LLAVA_SYSTEM + "USER: ASSISTANT: The answer is A. The answer is B.",
    "a photo of a dove standing on the branch; a large group of people lounge on a lawn",
)
# Files whose presence means a previous build finished (written last: the marker).
_MARKER = "cadvi_tiny.json"
_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
_LLAVA_FILES = (*_FILES, "processor_config.json", "chat_template.jinja")


def build_tiny_chat_model(
    path: str | Path,
    *,
    texts: Sequence[str] | None = None,
    vocab_size: int = 512,
    seed: int = 0,
    architecture: str = "mistral",
    experts: int = 4,
) -> Path:
    """Build (or reuse) a tiny random chat model in ``path`` and return the path.

    ``architecture``: ``"mistral"`` (``MistralForCausalLM``) or ``"mixtral"`` (``MixtralForCausalLM`` with
    ``experts`` experts, 2 per token, as Mixtral-8x7B routes): the same tokenizer, template and sizes.
    A folder that already holds a complete build with the same settings is returned untouched, so
    session fixtures and the demo can call this freely. The build goes to a temporary sibling folder
    that is renamed into place, so an interrupted or concurrent build never leaves half a model.
    """
    if architecture not in ("mistral", "mixtral"):
        raise ValueError(f"architecture must be mistral or mixtral, got {architecture!r}")
    texts = tuple(texts) if texts is not None else DEFAULT_TEXTS
    settings = {"texts_sha256": _digest(texts), "vocab_size": vocab_size, "seed": seed, "version": 2}
    if architecture == "mixtral":
        settings |= {"architecture": architecture, "experts": experts}
    return _build_once(
        Path(path), settings, _FILES, lambda folder: _build(folder, texts, vocab_size, seed, architecture, experts)
    )


def build_tiny_llava(
    path: str | Path,
    *,
    texts: Sequence[str] | None = None,
    vocab_size: int = 400,
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 0,
) -> Path:
    """Build (or reuse) a tiny random ``LlavaForConditionalGeneration`` + ``LlavaProcessor`` in ``path``.

    Llama text model (hidden 64, 2 layers, context 1024) and CLIP vision tower (``image_size`` px, patch
    ``patch_size``: 16 image tokens per image by default, CLS dropped); a byte-level BPE that knows
    ``<image>`` and ``<pad>`` and adds no BOS; the ``vicuna_v1`` chat template, which accepts a system
    message. Cached and atomic like :func:`build_tiny_chat_model` (~2 s, ~1 MB).
    """
    texts = tuple(texts) if texts is not None else LLAVA_TEXTS
    settings = {
        "kind": "llava",
        "texts_sha256": _digest(texts),
        "vocab_size": vocab_size,
        "image_size": image_size,
        "patch_size": patch_size,
        "seed": seed,
        "version": 1,
    }
    return _build_once(
        Path(path),
        settings,
        _LLAVA_FILES,
        lambda folder: _build_llava(folder, texts, vocab_size, image_size, patch_size, seed),
    )


def _build_once(path: Path, settings: dict[str, Any], files: Sequence[str], build: Callable[[Path], None]) -> Path:
    """Run ``build(folder)`` unless ``path`` already holds a complete build with these ``settings``.

    The build goes to a temporary sibling folder that is renamed into place, so an interrupted or
    concurrent build never leaves half a model.
    """
    if _is_complete(path, settings, files):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        build(staging)
        (staging / _MARKER).write_text(json.dumps(settings, indent=2) + "\n")
        if path.exists():
            if _is_complete(path, settings, files):  # a concurrent build won the race
                return path
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def train_tokenizer(
    texts: Sequence[str],
    *,
    vocab_size: int,
    extra_special_tokens: dict[str, str] | None = None,
    add_bos: bool = True,
    model_max_length: int = 2048,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``texts``, as a ``PreTrainedTokenizerFast`` (left padding).

    Byte-level: every string is encodable (no ``<unk>`` surprises) and decoding restores spaces.
    ``add_bos``: plain encoding adds ``<s>`` like Llama/Mistral tokenizers (chat prompts carry it in
    the template). ``extra_special_tokens`` (e.g. ``{"image_token": "<image>"}``) follow the four
    base specials, so their ids are 4, 5, ...
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    extra = dict(extra_special_tokens or {})
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*SPECIAL_TOKENS, *extra.values()],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    if add_bos:
        bos_id = bpe.token_to_id("<s>")
        bpe.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
        )
    options = {"extra_special_tokens": extra} if extra else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="left",
        model_max_length=model_max_length,
        **options,
    )


def _build(
    folder: Path, texts: tuple[str, ...], vocab_size: int, seed: int, architecture: str = "mistral", experts: int = 4
) -> None:
    import torch
    from transformers import (
        GenerationConfig,
        MistralConfig,
        MistralForCausalLM,
        MixtralConfig,
        MixtralForCausalLM,
    )

    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    bos_id = tokenizer.bos_token_id
    tokenizer.chat_template = MIXTRAL_CHAT_TEMPLATE

    sizes = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,  # grouped-query attention, as in Mixtral
        "head_dim": 32,  # vLLM's CPU backend needs head size >= 32
        "max_position_embeddings": 2048,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "bos_token_id": bos_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    torch.manual_seed(seed)
    if architecture == "mixtral":
        config = MixtralConfig(**sizes, num_local_experts=experts, num_experts_per_tok=2)
        model = MixtralForCausalLM(config).eval()
    else:
        model = MistralForCausalLM(MistralConfig(**sizes)).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=bos_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    with _quiet_progress_bars():
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _build_llava(
    folder: Path, texts: tuple[str, ...], vocab_size: int, image_size: int, patch_size: int, seed: int
) -> None:
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = train_tokenizer(
        texts, vocab_size=vocab_size, extra_special_tokens={"image_token": "<image>"}, add_bos=False
    )
    tokenizer.chat_template = VICUNA_V1_TEMPLATE
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        **special,
    )
    vision_config = CLIPVisionConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=32,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",  # drop CLS: (image_size / patch_size) ** 2 tokens per image
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(**special, do_sample=False)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=VICUNA_V1_TEMPLATE,
    )
    with _quiet_progress_bars():
        model.save_pretrained(folder)
    processor.save_pretrained(folder)


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """No "Writing model shards" bar for a one-shard toy model (it garbles the demo's console)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _is_complete(path: Path, settings: dict, files: Sequence[str]) -> bool:
    marker = path / _MARKER
    if not marker.is_file() or not all((path / name).is_file() for name in files):
        return False
    try:
        return json.loads(marker.read_text()) == settings
    except (OSError, ValueError):
        return False


def _digest(texts: tuple[str, ...]) -> str:
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()
