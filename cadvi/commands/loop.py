"""``cadvi loop``: phase 1 -> train V1 -> phase 2 with V1 -> train V2 -> lmms-eval V1 and V2 (:mod:`cadvi.loop`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cadvi.options import add_command, console, input_file, input_folder, positive_int


def register(commands: Any) -> None:
    loop = add_command(commands, "loop", _loop, "the CaD-VI loop: V1 -> phase 2 with V1 -> V2 -> V1 vs V2 (resumable)")
    loop.add_argument("--workdir", required=True, type=Path, help="where every artefact and loop.json go")
    loop.add_argument("--recipe", required=True, type=input_file, help="a recipe YAML (its data and output are set)")
    loop.add_argument("--phase1", required=True, type=input_folder, help="CaD-Inst release or export with phase 1")
    loop.add_argument("--phase2-source", required=True, type=input_file, help="CGD_instructions.json, parquet, JSONL")
    loop.add_argument("--coco-root", type=Path, help="COCO train2017 (the CGD images)")
    loop.add_argument("--image-root", action="append", type=Path, default=[], help="training image folder (repeat)")
    loop.add_argument("--mode", default="refine", choices=["refine", "scratch"], help="phase-2 mode")
    loop.add_argument("--tasks", default="bison,svo_probes,nlvr2,eqben,cola", help="lmms-eval tasks for V1 and V2")
    loop.add_argument("--limit", type=positive_int, help="lmms-eval --limit (questions per task)")


def _loop(args: argparse.Namespace) -> int:
    import yaml

    from cadvi.loop import LoopConfig, run_loop, score_table

    options = {"coco_root": args.coco_root} if args.coco_root else {}
    config = LoopConfig(
        workdir=args.workdir,
        phase1=args.phase1,
        phase2_source=args.phase2_source,
        phase2_options=options,
        phase2_mode=args.mode,
        image_roots=tuple(args.image_root) + ((args.coco_root,) if args.coco_root else ()),
        recipe=yaml.safe_load(args.recipe.read_text(encoding="utf-8")),
        eval_tasks=tuple(task for task in args.tasks.split(",") if task),
        eval_limit=args.limit,
    )
    result = run_loop(config, say=console.print)
    for task, first, second in score_table(result):
        console.print(f"{task}: V1 {first} | V2 {second}")
    console.print(f"manifest: {result.manifest}")
    return 0
