"""The recipe: CaD-LLaVA = LoRA on LLaVA-1.5 over the CaD-Inst + LLaVA-1.5 mix, on transformers + peft.

Read top to bottom, it is the whole method (as trl's ``sft_vlm.py`` is):

1. arguments first (under DeepSpeed ZeRO-3 they must exist before the model loads, so ``zero.Init``
   partitions it while it loads);
2. the training mix, prepared once by the main process (:mod:`.data`) and memory-mapped by every rank;
3. the processor of the start point, set to pad images to square and to the fork's prompt;
4. the model: LoRA on the LLM, the projector trained, trainables in fp32, the zero-image hook;
5. :class:`~eval_tasks.recipe.trainer.CadTrainer` (projector lr, modality grouping), resumed from the
   last checkpoint of ``output_dir`` when there is one;
6. the adapter (with the projector), the processor and ``cadvi_recipe.json`` (what produced them) saved.

Launch it through ``cadvi train run RECIPE.yaml`` (one process) or ``accelerate launch -m cadvi train run
RECIPE.yaml`` (DDP, DeepSpeed, FSDP: see the configs' headers).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval_tasks.recipe.collator import CadCollator
from eval_tasks.recipe.config import RecipeConfig, training_arguments
from eval_tasks.recipe.data import mix_stats, prepare_mix
from eval_tasks.recipe.images import use_aspect_ratio
from eval_tasks.recipe.model import add_lora, install_zero_image_hook, load_model, trainable_summary
from eval_tasks.recipe.template import CHAT_TEMPLATE
from eval_tasks.recipe.trainer import CadTrainer

if TYPE_CHECKING:
    from transformers import TrainerCallback

logger = logging.getLogger(__name__)
RECIPE_RECORD = "cadvi_recipe.json"


def load_processor(start: str, image_aspect_ratio: str) -> Any:
    """The start point's processor with the recipe's padding and chat template (saved with the model)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(start)
    processor.chat_template = CHAT_TEMPLATE
    return use_aspect_ratio(processor, image_aspect_ratio)


@dataclass
class TrainingRun:
    """What :func:`train` leaves: the output folder (adapter, projector, processor) and the trainer."""

    output: Path
    trainer: CadTrainer
    resumed_from: str | None


def train(config: RecipeConfig, *, resume: bool | str = True, callbacks: Sequence[TrainerCallback] = ()) -> TrainingRun:
    """Run the recipe. ``resume``: True = from the last checkpoint of ``output_dir`` if there is one, a path =
    from that checkpoint, False = start over (existing checkpoints are kept). ``callbacks``: Trainer callbacks."""
    from transformers.trainer_utils import get_last_checkpoint

    args = training_arguments(config)
    with args.main_process_first(desc="prepare the training mix"):
        dataset = prepare_mix(config.data, config.mix_folder)
    processor = load_processor(config.model.start, config.model.image_aspect_ratio)
    model = load_model(config.model.start, config.model.dtype, config.model.attn_implementation)
    model = add_lora(model, config.lora, gradient_checkpointing=args.gradient_checkpointing)
    if config.model.zero_image_hook:
        install_zero_image_hook(model)
    logger.info("trainable parameters: %s", trainable_summary(model))
    trainer = CadTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=CadCollator(processor, max_length=config.model.max_length),
        processing_class=processor,
        callbacks=list(callbacks),
    )
    if config.fork_loss:
        # The fork's loss: each micro-batch's own token mean (not one mean over the accumulated batch).
        trainer.model_accepts_loss_kwargs = False
    checkpoint: str | None = None
    if resume is True:
        checkpoint = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    elif resume:
        checkpoint = str(resume)
    trainer.train(resume_from_checkpoint=checkpoint)
    output = Path(args.output_dir)
    trainer.save_model(str(output))
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(output))
        record = {
            "recipe": config.source,
            "start": config.model.start,
            "model": asdict(config.model),
            "lora": {**asdict(config.lora), "modules_to_save": list(config.lora.modules_to_save)},
            "training": dict(config.training),
            "fork_loss": config.fork_loss,
            "mix": mix_stats(config.mix_folder),
            "resumed_from": checkpoint,
            "steps": trainer.state.global_step,
        }
        (output / RECIPE_RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return TrainingRun(output, trainer, checkpoint)
