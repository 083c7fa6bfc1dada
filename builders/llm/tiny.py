"""A tiny, random, Mixtral-shaped chat model built on the fly: for the demo, ``transformers serve`` and tests.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on a few sentences and the weights
are random, so the text it writes is gibberish, but every code path of a real chat model runs:
a chat template with BOS, a template that rejects the ``system`` role like Mixtral's original one
(so system-prompt folding is exercised), EOS and pad ids, ``save_pretrained`` files any loader reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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
# Files whose presence means a previous build finished (written last: the marker).
_MARKER = "cadvi_tiny.json"
_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def build_tiny_chat_model(
    path: str | Path,
    *,
    texts: Sequence[str] | None = None,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Build (or reuse) a tiny random ``MistralForCausalLM`` chat model in ``path`` and return the path.

    A folder that already holds a complete build with the same settings is returned untouched, so
    session fixtures and the demo can call this freely. The build goes to a temporary sibling folder
    that is renamed into place, so an interrupted or concurrent build never leaves half a model.
    """
    path = Path(path)
    texts = tuple(texts) if texts is not None else DEFAULT_TEXTS
    settings = {"texts_sha256": _digest(texts), "vocab_size": vocab_size, "seed": seed, "version": 2}
    if _is_complete(path, settings):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        _build(staging, texts, vocab_size, seed)
        (staging / _MARKER).write_text(json.dumps(settings, indent=2) + "\n")
        if path.exists():
            if _is_complete(path, settings):  # a concurrent build won the race
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


def _build(folder: Path, texts: tuple[str, ...], vocab_size: int, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, MistralConfig, MistralForCausalLM

    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    bos_id = tokenizer.bos_token_id
    tokenizer.chat_template = MIXTRAL_CHAT_TEMPLATE

    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,  # grouped-query attention, as in Mixtral
        head_dim=32,  # vLLM's CPU backend needs head size >= 32
        max_position_embeddings=2048,
        sliding_window=None,
        tie_word_embeddings=False,
        bos_token_id=bos_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = MistralForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=bos_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    with _quiet_progress_bars():
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


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


def _is_complete(path: Path, settings: dict) -> bool:
    marker = path / _MARKER
    if not marker.is_file() or not all((path / name).is_file() for name in _FILES):
        return False
    try:
        return json.loads(marker.read_text()) == settings
    except (OSError, ValueError):
        return False


def _digest(texts: tuple[str, ...]) -> str:
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()
