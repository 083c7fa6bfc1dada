"""The model side of the recipe: LoRA on the language model, the projector trained, and image-free batches.

* LoRA targets are a regex on the language model: a plain ``["q_proj", ...]`` list would also hit
  CLIP's ``q_proj``/``k_proj``/``v_proj`` inside ``LlavaForConditionalGeneration``.
* The projector is in ``modules_to_save``: trained, saved in the adapter and folded in by
  ``merge_and_unload`` (``requires_grad_`` alone trains it, but ``save_pretrained`` drops it).
* Trainable parameters are cast to fp32 (PEFT leaves the projector copy in the load dtype).
* :func:`install_zero_image_hook`: the LLaVA-1.5 mix has ~40K text-only samples; a batch without images
  leaves the vision tower and projector out of the graph, which fails DDP ("Expected to have finished
  reduction ...") and hangs ZeRO-3/FSDP (the other ranks gather the vision weights). The hook adds
  ``0 * projector(vision(zero image))`` to the loss inside ``forward``, so every rank runs the same graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

LORA_TARGETS = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
PROJECTOR = "multi_modal_projector"


@dataclass(frozen=True)
class LoraSettings:
    """The ``lora:`` block of a recipe (the paper's: r 128, alpha 256, dropout 0.05, no bias)."""

    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: str = LORA_TARGETS
    modules_to_save: Sequence[str] = field(default_factory=lambda: (PROJECTOR,))


def load_model(path: str, dtype: str = "bfloat16", attn_implementation: str | None = None) -> Any:
    """A llava-hf folder as ``LlavaForConditionalGeneration`` in ``dtype`` (never remote code)."""
    from transformers import LlavaForConditionalGeneration

    options: dict[str, Any] = {"dtype": getattr(torch, dtype)}
    if attn_implementation:
        options["attn_implementation"] = attn_implementation
    return LlavaForConditionalGeneration.from_pretrained(path, **options)


def add_lora(model: Any, settings: LoraSettings, *, gradient_checkpointing: bool = False) -> Any:
    """``model`` wrapped in a LoRA ``PeftModel``: adapters on the LLM, the projector trained, trainables fp32."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        bias="none",
        target_modules=settings.target_modules,
        modules_to_save=list(settings.modules_to_save),
        task_type="CAUSAL_LM",
    )
    if gradient_checkpointing:
        # Frozen embeddings give checkpointed blocks inputs without grad: make them require it (as the fork).
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, config)
    for parameter in peft_model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return peft_model


def install_zero_image_hook(model: Any) -> torch.utils.hooks.RemovableHandle:
    """On image-free training forwards, add ``0 * projector(vision(zero image))`` to the loss (see module doc).

    ``model``: the ``LlavaForConditionalGeneration`` (also inside a ``PeftModel``: PEFT calls it as a module,
    so its hooks run). The zero image has the vision tower's own size and dtype.
    """
    llava = _llava(model)

    def hook(module: Any, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        if kwargs.get("pixel_values") is not None or not (module.training and torch.is_grad_enabled()):
            return output
        vision = module.config.vision_config
        tower = module.model.vision_tower
        reference = next(tower.parameters())
        zeros = torch.zeros(
            1, vision.num_channels, vision.image_size, vision.image_size, dtype=reference.dtype, device=reference.device
        )
        features = module.model.get_image_features(pixel_values=zeros)
        zero = 0.0 * sum(tensor.float().sum() for tensor in _tensors(features))
        if getattr(output, "loss", None) is not None:
            output.loss = output.loss + zero
        else:
            output.logits = output.logits + zero.to(output.logits.dtype)
        return output

    return llava.register_forward_hook(hook, with_kwargs=True)


def _llava(model: Any) -> Any:
    """The ``LlavaForConditionalGeneration`` inside ``model`` (a PeftModel or the model itself)."""
    from transformers import LlavaForConditionalGeneration

    if isinstance(model, LlavaForConditionalGeneration):
        return model
    for module in model.modules():
        if isinstance(module, LlavaForConditionalGeneration):
            return module
    raise TypeError(f"no LlavaForConditionalGeneration inside {type(model).__name__}")


def _tensors(features: Any) -> list[torch.Tensor]:
    """The feature tensors of ``get_image_features``' output (a tensor, a list, or a model output)."""
    if isinstance(features, torch.Tensor):
        return [features]
    pooled = getattr(features, "pooler_output", None)
    if pooled is not None:
        return _tensors(pooled)
    if isinstance(features, (list, tuple)):
        return [tensor for item in features for tensor in _tensors(item)]
    raise TypeError(f"unexpected image features of type {type(features).__name__}")


def trainable_summary(model: Any) -> dict[str, int]:
    """Trainable and total parameter counts, split into projector and the rest (for the run log)."""
    counts = {"projector": 0, "lora": 0, "total": 0}
    for name, parameter in model.named_parameters():
        counts["total"] += parameter.numel()
        if parameter.requires_grad:
            counts["projector" if PROJECTOR in name else "lora"] += parameter.numel()
    return counts
