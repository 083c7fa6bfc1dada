"""A ``Trainer`` with the fork's two additions: its own projector learning rate and modality grouping.

* :meth:`CadTrainer.create_optimizer` builds four groups, (decay | no decay) x (projector | the rest),
  the projector's at ``projector_lr`` (the paper's 2e-5 against 1e-4); all follow the same schedule.
  It is the hook the Trainer calls under plain, DDP, DeepSpeed (a config without an optimizer block)
  and FSDP runs alike (``optimizers=`` is refused under FSDP), and the groups come back identically on
  ``resume_from_checkpoint``, so the saved optimizer state loads into them.
* :class:`ModalityLengthGroupedSampler` (``group_by_modality_length``): batches hold only image samples
  or only text-only samples, of similar lengths, as LLaVA's trainer does; seeded, so a resumed run
  skips exactly the batches it already trained on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from eval_tasks.recipe.model import PROJECTOR


@dataclass
class CadTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the fork's ``mm_projector_lr`` and ``group_by_modality_length``."""

    projector_lr: float | None = field(
        default=None, metadata={"help": "projector learning rate (None: --learning_rate)"}
    )
    group_by_modality_length: bool = field(default=False, metadata={"help": "image-only / text-only batches"})


class CadTrainer(Trainer):
    """``Trainer`` with the projector's learning rate and the modality-grouped sampler (see module doc)."""

    args: CadTrainingArguments

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        projector_lr = self.args.projector_lr if self.args.projector_lr is not None else self.args.learning_rate
        groups = parameter_groups(opt_model, decay, self.args.weight_decay, projector_lr)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if not self.args.group_by_modality_length or dataset is None:
            return super()._get_train_sampler(train_dataset)
        if "modality_length" not in getattr(dataset, "column_names", ()):
            raise ValueError("group_by_modality_length needs the mix's 'modality_length' column")
        lengths = dataset.with_format("numpy")["modality_length"]
        return ModalityLengthGroupedSampler(
            lengths,
            batch_size=self.args.train_batch_size,
            world_size=self.args.world_size * self.args.gradient_accumulation_steps,
            seed=self.args.seed,
        )


def parameter_groups(
    model: torch.nn.Module, decay: set[str], weight_decay: float, projector_lr: float
) -> list[dict[str, Any]]:
    """Trainable parameters in four groups: (decay | no decay) x (projector | the rest); empty ones left out."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups.setdefault((PROJECTOR in name, name in decay), []).append(parameter)
    ordered = []
    for is_projector in (False, True):
        for decays in (True, False):
            params = groups.get((is_projector, decays))
            if params:
                group: dict[str, Any] = {"params": params, "weight_decay": weight_decay if decays else 0.0}
                if is_projector:
                    group["lr"] = projector_lr
                ordered.append(group)
    return ordered


class ModalityLengthGroupedSampler(torch.utils.data.Sampler[int]):
    """LLaVA's ``get_modality_length_grouped_indices``, seeded: a megabatch (``world_size x batch_size``) is
    all image samples (length > 0) or all text-only ones (length < 0), sorted by length and split evenly
    across ranks; megabatches are shuffled, and the two leftover partial ones form the last batch."""

    def __init__(self, lengths: Sequence[int] | np.ndarray, *, batch_size: int, world_size: int, seed: int = 0):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if (self.lengths == 0).any():
            raise ValueError("modality lengths must be non-zero (positive: with images, negative: text only)")
        self.batch_size, self.world_size, self.seed, self.epoch = batch_size, world_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(modality_grouped_indices(self.lengths, self.batch_size, self.world_size, generator))


def modality_grouped_indices(
    lengths: np.ndarray, batch_size: int, world_size: int, generator: torch.Generator
) -> list[int]:
    megabatch = batch_size * world_size
    image_rows, text_rows = np.flatnonzero(lengths > 0), np.flatnonzero(lengths < 0)
    if not len(image_rows) or not len(text_rows):
        return _length_grouped(np.arange(len(lengths)), np.abs(lengths), megabatch, world_size, generator)
    image_order = _length_grouped(image_rows, lengths[image_rows], megabatch, world_size, generator)
    text_order = _length_grouped(text_rows, -lengths[text_rows], megabatch, world_size, generator)
    image_batches = [image_order[i : i + megabatch] for i in range(0, len(image_order), megabatch)]
    text_batches = [text_order[i : i + megabatch] for i in range(0, len(text_order), megabatch)]
    leftover = image_batches.pop() + text_batches.pop()
    batches = image_batches + text_batches
    batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    if leftover:
        batches.append(sorted(leftover))
    return [index for batch in batches for index in batch]


def _length_grouped(
    rows: np.ndarray, lengths: np.ndarray, megabatch: int, world_size: int, generator: torch.Generator
) -> list[int]:
    """Rows shuffled, cut into megabatches, each sorted longest first and split evenly across ranks."""
    order = torch.randperm(len(rows), generator=generator).numpy()
    result: list[int] = []
    for start in range(0, len(order), megabatch):
        chunk = order[start : start + megabatch]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        for part in _even_chunks(chunk, lengths, world_size):
            result.extend(int(rows[i]) for i in part)
    return result


def _even_chunks(chunk: np.ndarray, lengths: np.ndarray, parts: int) -> list[list[int]]:
    """Split longest-first ``chunk`` into ``parts`` of equal size with totals as even as greedy gets them."""
    if len(chunk) % parts:
        return [chunk[i::parts].tolist() for i in range(parts)]
    size = len(chunk) // parts
    buckets: list[list[int]] = [[] for _ in range(parts)]
    totals = [0] * parts
    for index in chunk.tolist():
        open_buckets = [b for b in range(parts) if len(buckets[b]) < size]
        target = min(open_buckets, key=lambda b: totals[b])
        buckets[target].append(index)
        totals[target] += int(lengths[index])
    return buckets
