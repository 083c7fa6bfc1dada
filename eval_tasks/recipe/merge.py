"""Adapter -> llava-hf folder: what lmms-eval's ``llava_hf``, ``vllm serve`` and transformers load.

The LoRA deltas and the trained projector (``modules_to_save``) are folded into the start point's
weights in fp32 by ``merge_and_unload``, then saved in ``dtype``. The processor saved beside the
adapter by the recipe travels with it: it pads images to square and carries the fork's prompt, so the
merged model is evaluated on the inputs it was trained on (llava-hf's own llava-1.5 processors crop).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from builders.outputs import atomic_output_dir
from eval_tasks.recipe.train import RECIPE_RECORD

MERGE_RECORD = "cadvi_merge.json"


def merge_adapter(
    adapter: str | os.PathLike,
    out: str | os.PathLike,
    *,
    base: str | os.PathLike | None = None,
    dtype: str = "bfloat16",
    overwrite: bool = False,
) -> Path:
    """Merge the recipe's adapter folder into ``base`` (default: the adapter's recorded start point) at ``out``."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter}: no adapter_config.json (not an adapter folder written by the recipe)")
    peft_config = PeftConfig.from_pretrained(str(adapter))
    base = str(base or peft_config.base_model_name_or_path)
    if not Path(base, "config.json").is_file():
        raise FileNotFoundError(f"{base}: the base model folder of {adapter} is missing (pass --base)")
    model = LlavaForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    merged: Any = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged = merged.to(getattr(torch, dtype))
    processor = AutoProcessor.from_pretrained(str(adapter))
    with atomic_output_dir(out, overwrite=overwrite, sources=[adapter, base], kind="merged model") as staging:
        merged.save_pretrained(str(staging))
        processor.save_pretrained(str(staging))
        record: dict[str, Any] = {"adapter": str(adapter), "base": base, "dtype": dtype}
        if (adapter / RECIPE_RECORD).is_file():
            record["recipe"] = json.loads((adapter / RECIPE_RECORD).read_text())
        (staging / MERGE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return Path(out)
