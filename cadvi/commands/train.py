"""``cadvi train``: the reference-model recipe (``eval_tasks/recipe``), step by step.

``start`` builds the original start point (Vicuna-1.5 + CLIP + the stage-1 projector) as a llava-hf
folder; ``prepare`` checks the training mix and writes it as one memory-mapped Arrow file; ``run`` trains
(one process here, or under ``accelerate launch -m cadvi train run ...`` / ``torchrun -m cadvi ...`` on
many GPUs); ``merge`` folds the adapter into a llava-hf folder that lmms-eval and vLLM load; ``convert``
turns fork-format checkpoints (LLaVA / CaD-VI LoRA folders, full fork models) into llava-hf folders.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cadvi.options import Parser, add_command, console, input_file, input_folder


def register(commands: Any) -> None:
    group = commands.add_parser(
        "train", help="train the reference model (LoRA on LLaVA-1.5): start, prepare, run, merge"
    )
    steps = group.add_subparsers(dest="train_step", required=True, metavar="STEP", parser_class=Parser)

    start = add_command(steps, "start", _start, "build the original start point as a llava-hf folder")
    start.add_argument("--llm", required=True, type=input_folder, help="the Vicuna-1.5 folder (LlamaForCausalLM)")
    start.add_argument("--vision", required=True, type=input_folder, help="the CLIP ViT-L/14-336 folder")
    start.add_argument("--projector", required=True, type=input_file, help="the stage-1 mm_projector.bin")
    start.add_argument("--out", required=True, type=Path, help="the llava-hf folder to write")
    start.add_argument("--dtype", default="bfloat16", help="weights dtype of the folder (default: bfloat16)")

    for name, handler, text in (
        ("prepare", _prepare, "check the training mix and write it as one memory-mapped Arrow file"),
        ("run", _run, "train: LoRA on the LLM, the projector trained; resumes from the last checkpoint"),
    ):
        step = add_command(steps, name, handler, text)
        step.add_argument("recipe", type=input_file, help="a recipe YAML (eval_tasks/recipe/configs/*.yaml)")
        step.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="BLOCK.KEY=VALUE",
            help="override a recipe value, e.g. --set training.max_steps=10 (repeatable)",
        )
        if name == "run":
            step.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")

    merge = add_command(steps, "merge", _merge, "merge the adapter into a llava-hf folder for lmms-eval and vLLM")
    merge.add_argument("adapter", type=input_folder, help="the recipe's output folder (adapter + processor)")
    merge.add_argument("--out", required=True, type=Path, help="the merged llava-hf folder to write")
    merge.add_argument("--base", type=input_folder, help="the start point (default: the one the adapter records)")
    merge.add_argument("--dtype", default="bfloat16", help="weights dtype of the merged folder")
    merge.add_argument("--overwrite", action="store_true", help="replace an earlier merged folder")

    convert = add_command(steps, "convert", _convert, "convert a fork-format LLaVA / CaD-VI checkpoint to llava-hf")
    convert.add_argument("checkpoint", type=input_folder, help="a fork LoRA folder or a full fork model folder")
    convert.add_argument("--llm", type=input_folder, help="the base Vicuna folder (for a LoRA folder)")
    convert.add_argument("--vision", required=True, type=input_folder, help="the CLIP folder")
    convert.add_argument("--out", required=True, type=Path, help="the llava-hf folder to write")
    convert.add_argument("--dtype", default="bfloat16", help="weights dtype of the folder")


def register_cadinst() -> None:
    """Let recipes read ``kind: cadinst`` sources (every release shape) through ``cadinst.load``."""
    from eval_tasks.recipe.data import register_source_loader

    register_source_loader("cadinst", _cadinst_rows)


def _cadinst_rows(path: str, config: str) -> Iterable[Mapping[str, Any]]:
    import cadinst

    return cadinst.load(path, config).select_columns(["id", "image", "conversations"])


def _start(args: argparse.Namespace) -> int:
    from eval_tasks.recipe.start import build_start_point

    out = build_start_point(args.llm, args.vision, args.projector, args.out, dtype=args.dtype)
    console.print(f"start point written to {out}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from eval_tasks.recipe.config import load_recipe
    from eval_tasks.recipe.data import mix_stats, prepare_mix

    register_cadinst()
    config = load_recipe(args.recipe, args.overrides)
    dataset = prepare_mix(config.data, config.mix_folder)
    stats = mix_stats(config.mix_folder)
    console.print(f"training mix: {len(dataset):,} samples in {config.mix_folder}")
    for source, rows in stats["rows"].items():
        dropped = stats["dropped_missing_images"].get(source, 0)
        extra = f", {dropped:,} dropped (missing images)" if dropped else ""
        console.print(f"  {source}: {rows:,} rows ({stats['text_only'].get(source, 0):,} text-only{extra})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from eval_tasks.recipe.config import load_recipe
    from eval_tasks.recipe.train import train

    register_cadinst()
    config = load_recipe(args.recipe, args.overrides)
    out = train(config, resume=not args.no_resume).output
    console.print(f"adapter and processor written to {out}; next: cadvi train merge {out} --out MERGED")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from eval_tasks.recipe.merge import merge_adapter

    out = merge_adapter(args.adapter, args.out, base=args.base, dtype=args.dtype, overwrite=args.overwrite)
    console.print(f"merged model written to {out}; evaluate: lmms-eval --model llava_hf --model_args pretrained={out}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from eval_tasks.recipe.convert import convert_fork_checkpoint

    out = convert_fork_checkpoint(args.checkpoint, args.out, llm=args.llm, vision=args.vision, dtype=args.dtype)
    console.print(f"llava-hf folder written to {out}")
    return 0
