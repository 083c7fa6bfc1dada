"""Rows of the training mix -> model inputs: images, the ``conv_vicuna_v1`` prompt, and labels.

Per sample, as the fork does, but through the processor: the images are opened (RGB) and, with
``image_aspect_ratio: pad``, padded to a square with the CLIP mean colour by the processor itself
(``do_pad``; bit-identical to the fork's ``expand2square`` + ``CLIPImageProcessor``); the prompt is
rendered by :data:`~eval_tasks.recipe.template.CHAT_TEMPLATE` and tokenized with each ``<image>``
expanded to the model's image tokens; labels are the answer tokens and their ``</s>`` (the template's
generation mask), ``-100`` elsewhere. Any number of images per sample works, none included.

A sample longer than ``max_length`` is cut only after its last image token: cutting an image would
leave the model with fewer image tokens than image features (it raises), so such a sample is an
error that names it (:class:`SampleTooLongError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eval_tasks.recipe.images import expand_to_square, open_rgb
from eval_tasks.recipe.template import CHAT_TEMPLATE, to_messages

IGNORE_INDEX = -100


class SampleTooLongError(ValueError):
    """A sample whose image tokens do not fit ``max_length``."""


@dataclass
class CadCollator:
    """Collates mix rows (``id``, ``source``, ``images`` paths, ``conversations``) into a padded batch."""

    processor: Any
    max_length: int = 2048
    chat_template: str = CHAT_TEMPLATE

    def __post_init__(self) -> None:
        tokenizer = self.processor.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.image_id = tokenizer.convert_tokens_to_ids(self.processor.image_token)

    def encode(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """One sample: ``input_ids`` and ``labels`` (1-D), ``pixel_values`` (images x 3 x H x W) or None.

        What ``processor.apply_chat_template(..., return_assistant_tokens_mask=True)`` returns (a test proves
        the equality), 2.5x faster: transformers builds that mask token by token in Python. Here the prompt
        is tokenized once with ``<image>`` unexpanded (a special token: the text around it tokenizes the same
        either way), the answer spans become labels through the offsets in one vectorised step, and each
        ``<image>`` is then repeated to the model's number of image tokens.
        """
        from transformers.utils.chat_template_utils import render_jinja_template

        tokenizer = self.processor.tokenizer
        messages = to_messages(row["conversations"])
        (prompt,), (spans,) = render_jinja_template(
            conversations=[messages],
            chat_template=self.chat_template,
            return_assistant_tokens_mask=True,
            **tokenizer.special_tokens_map,
        )
        encoded = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=True)
        ids = np.asarray(encoded["input_ids"], dtype=np.int64)
        offsets = np.asarray(encoded["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        supervised = np.zeros(len(ids), dtype=bool)
        for start, end in spans:  # tokens overlapping an answer (+ its </s>), as the assistant mask counts them
            supervised |= (offsets[:, 1] > start) & (offsets[:, 0] < end) & (offsets[:, 1] > offsets[:, 0])
        pixel_values = None
        if row["images"]:
            image_processor = self.processor.image_processor
            images = [open_rgb(path) for path in row["images"]]
            if getattr(image_processor, "do_pad", False):
                images = [expand_to_square(image, image_processor.image_mean) for image in images]
            # Already RGB: the processor's own conversion would copy each image once more.
            pixel_values = image_processor(images, do_convert_rgb=False, return_tensors="pt")["pixel_values"]
            placeholders = int((ids == self.image_id).sum())
            if placeholders != len(images):
                raise ValueError(f"sample {row.get('id')!r}: {len(images)} image(s) but {placeholders} '<image>'")
            repeats = np.where(ids == self.image_id, self.image_tokens(pixel_values), 1)
            ids, supervised = np.repeat(ids, repeats), np.repeat(supervised, repeats)
        input_ids = torch.from_numpy(ids)
        labels = torch.where(torch.from_numpy(supervised), input_ids, IGNORE_INDEX)
        if len(input_ids) > self.max_length:
            image_positions = (input_ids == self.image_id).nonzero()
            if len(image_positions) and int(image_positions[-1]) >= self.max_length:
                raise SampleTooLongError(
                    f"sample {row.get('id')!r} ({row.get('source', 'unknown source')}): {len(input_ids)} tokens, "
                    f"and its image tokens end at token {int(image_positions[-1]) + 1}, past max_length "
                    f"{self.max_length}; truncating would cut an image: raise max_length or remove the sample"
                )
            input_ids, labels = input_ids[: self.max_length], labels[: self.max_length]
        return {"input_ids": input_ids, "labels": labels, "pixel_values": pixel_values}

    def image_tokens(self, pixel_values: torch.Tensor) -> int:
        """Tokens per image, as ``LlavaProcessor`` counts them (patches, + CLS unless the strategy drops it)."""
        processor = self.processor
        height, width = pixel_values.shape[-2:]
        count = (height // processor.patch_size) * (width // processor.patch_size)
        count += processor.num_additional_image_tokens
        return count - 1 if processor.vision_feature_select_strategy == "default" else count

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        samples = [self.encode(row) for row in rows]
        return self.pad(samples)

    def pad(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Right padding (the fork's): ``pad`` ids, ``-100`` labels, attention 0 on padding."""
        longest = max(len(sample["input_ids"]) for sample in samples)
        input_ids = torch.full((len(samples), longest), self.pad_id, dtype=torch.long)
        labels = torch.full((len(samples), longest), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(samples), longest), dtype=torch.long)
        for index, sample in enumerate(samples):
            length = len(sample["input_ids"])
            input_ids[index, :length] = sample["input_ids"]
            labels[index, :length] = sample["labels"]
            attention[index, :length] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
        pixels = [sample["pixel_values"] for sample in samples if sample["pixel_values"] is not None]
        if pixels:
            batch["pixel_values"] = torch.cat(pixels)
        return batch
