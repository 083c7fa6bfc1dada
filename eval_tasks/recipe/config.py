"""A recipe YAML as one typed object; an unknown or misspelt key is an error, never silently ignored.

The file has five blocks (see ``configs/cad_llava_7b.yaml``)::

    model:    start (a llava-hf folder), dtype, attn_implementation, image_aspect_ratio, max_length,
              zero_image_hook
    lora:     r, alpha, dropout, target_modules, modules_to_save
    data:     sources (path, kind, config, repeat, name), image_roots, on_missing, prepared
    training: any ``TrainingArguments`` field, plus projector_lr and group_by_modality_length
    parity:   fork_loss (the fork's per-micro-batch loss mean, for parity runs)

Relative paths are relative to the working directory (where the launch command runs), as the
Trainer's ``output_dir`` is. Values given on the command line (``--set training.learning_rate=2e-4``)
override the file's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eval_tasks.recipe.data import DataConfig, load_sources
from eval_tasks.recipe.model import LoraSettings

BLOCKS = ("model", "lora", "data", "training", "parity")


@dataclass(frozen=True)
class ModelSettings:
    """The ``model:`` block: where training starts and how inputs are shaped."""

    start: str
    dtype: str = "bfloat16"
    attn_implementation: str | None = None
    image_aspect_ratio: str = "pad"
    max_length: int = 2048
    # Off only for a mix without text-only samples: there every batch has images (see model.py).
    zero_image_hook: bool = True


@dataclass(frozen=True)
class RecipeConfig:
    """A whole recipe: the five blocks, each checked."""

    model: ModelSettings
    data: DataConfig
    training: Mapping[str, Any]
    lora: LoraSettings = field(default_factory=LoraSettings)
    fork_loss: bool = False
    prepared: str | None = None  # where the prepared mix lives (default: <output_dir>/mix)
    source: str | None = None  # the YAML file it came from

    @property
    def output_dir(self) -> str:
        return str(self.training["output_dir"])

    @property
    def mix_folder(self) -> Path:
        return Path(self.prepared) if self.prepared else Path(self.output_dir) / "mix"


def load_recipe(path: str | os.PathLike, overrides: Sequence[str] = ()) -> RecipeConfig:
    """Read and check a recipe YAML; ``overrides`` are ``block.key=value`` strings (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such recipe file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of {', '.join(BLOCKS)}")
    for override in overrides:
        _apply(raw, override, path)
    return recipe_from_mapping(raw, source=str(path))


def recipe_from_mapping(raw: Mapping[str, Any], source: str = "<recipe>") -> RecipeConfig:
    unknown = sorted(set(raw) - set(BLOCKS))
    if unknown:
        raise ValueError(f"{source}: unknown block(s) {', '.join(unknown)}; a recipe has {', '.join(BLOCKS)}")
    for block in ("model", "data", "training"):
        if not isinstance(raw.get(block), Mapping):
            raise ValueError(f"{source}: the '{block}' block is missing or not a mapping")
    data = dict(raw["data"])
    prepared = data.pop("prepared", None)
    try:
        model = _build(ModelSettings, raw["model"], "model")
        lora = _build(LoraSettings, raw.get("lora") or {}, "lora")
        parity = dict(raw.get("parity") or {})
        fork_loss = parity.pop("fork_loss", False)
        if parity:
            raise ValueError(f"parity: unknown key(s) {', '.join(sorted(parity))}")
        data_config = load_sources(data)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: {error}") from None
    training = dict(raw["training"])
    if "output_dir" not in training:
        raise ValueError(f"{source}: training.output_dir is required")
    _check_training_keys(training, source)
    return RecipeConfig(
        model=model,
        data=data_config,
        training=training,
        lora=lora,
        fork_loss=bool(fork_loss),
        prepared=prepared,
        source=source,
    )


def training_arguments(config: RecipeConfig) -> Any:
    """The ``CadTrainingArguments`` of a recipe (parsed before the model loads: ZeRO-3's ``zero.Init``)."""
    from eval_tasks.recipe.trainer import CadTrainingArguments

    training = {"remove_unused_columns": False, **config.training}  # the collator needs the raw columns
    if config.fork_loss:
        training["average_tokens_across_devices"] = False
    return CadTrainingArguments(**training)


def _build(kind: type, values: Mapping[str, Any], block: str) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{block}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    values = dict(values)
    if "modules_to_save" in values:
        values["modules_to_save"] = tuple(values["modules_to_save"])
    return kind(**values)


def _check_training_keys(training: Mapping[str, Any], source: str) -> None:
    from eval_tasks.recipe.trainer import CadTrainingArguments

    names = {f.name for f in dataclasses.fields(CadTrainingArguments) if f.init}
    unknown = sorted(set(training) - names)
    if unknown:
        hints = {"warmup_ratio": "warmup_steps (a float < 1 is a ratio)", "evaluation_strategy": "eval_strategy"}
        said = [f"{key} (use {hints[key]})" if key in hints else key for key in unknown]
        raise ValueError(f"{source}: training: unknown TrainingArguments key(s) {', '.join(said)}")


def _apply(raw: dict[str, Any], override: str, path: Path) -> None:
    key, equals, value = override.partition("=")
    block, dot, name = key.partition(".")
    if not equals or not dot or not name:
        raise ValueError(f"--set {override!r}: expected block.key=value, e.g. training.learning_rate=2e-4")
    section = raw.setdefault(block, {})
    if not isinstance(section, dict):
        raise ValueError(f"{path}: the '{block}' block is not a mapping")
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):  # YAML 1.1 reads "2e-4" as a string
        with contextlib.suppress(ValueError):
            parsed = float(parsed)
    section[name] = parsed
