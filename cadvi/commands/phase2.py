"""``cadvi generate phase2``: MIMIC-IT CGD-style annotations + both images -> a multimodal model -> CaD summaries.

Registered under ``cadvi generate`` by :mod:`cadvi.commands.generation`; the run folder, resume, retries and
outages are the one runner's, as for phase 1. Then ``cadvi export phase2 --run RUN --out OUT [--add]`` and
``cadvi build cadinst`` as for phase 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cadvi.options import add_command, add_llm_arguments, positive_int, sampling_from


def register_stage(stages: Any, run_locally: Any) -> None:
    phase2 = add_command(
        stages, "phase2", lambda args: _generate(args, run_locally), "image pairs + annotations -> CaD summaries (LMM)"
    )
    source = phase2.add_argument_group("source")
    source.add_argument(
        "--source", required=True, type=Path, help="CGD_instructions.json, a the_cauldron mimic_cgd parquet, or JSONL"
    )
    source.add_argument("--kind", default="auto", choices=["auto", "cgd", "cauldron", "jsonl"], help="source format")
    source.add_argument("--coco-root", type=Path, help="COCO train2017 folder (CGD: the original images, preferred)")
    source.add_argument("--cgd-images", type=Path, help="CGD.json of base64 images (CGD: the 224 px copies)")
    source.add_argument("--image-root", type=Path, help="folder the JSONL's image names are relative to")
    phase2.add_argument("--out", required=True, type=Path, help="run folder (resumed when it exists)")
    phase2.add_argument("--extend", action="store_true", help="add a new --source to an existing run")
    add_llm_arguments(phase2, max_tokens=1024, temperature=0.2, top_p=1.0)
    run = phase2.add_argument_group("run")
    run.add_argument(
        "--mode", default="refine", choices=["refine", "scratch"], help="refine: the annotation as context"
    )
    run.add_argument("--template", help="package template name or a .jinja file (default: the mode's)")
    run.add_argument("--max-attempts", type=positive_int, default=3, help="tries per pair before it is rejected")
    run.add_argument("--min-words", type=positive_int, default=30, help="shortest valid summary, in words")
    run.add_argument("--max-words", type=positive_int, default=600, help="longest valid summary, in words")
    run.add_argument(
        "--image-max-side",
        type=positive_int,
        default=336,
        help="openai backend: images whose longest side is larger are resized to it before sending; 336 is exact "
        "for CaD-LLaVA's processor (pad to square, then 336 px); a processor that resizes the shortest side and "
        "crops (llava-hf's own llava-1.5) would upsample such images: raise it for those",
    )
    run.add_argument("--num-shards", type=positive_int, default=1, help="processes or machines sharing the run")
    run.add_argument("--shard-index", type=int, default=0, help="this process's shard, 0-based")


def _generate(args: argparse.Namespace, run_locally: Any) -> int:
    from builders.phase2.sources import read_phase2_source
    from builders.phase2.task import Phase2Settings, Phase2Task
    from builders.runs import InputFile
    from builders.summary import SummaryBounds

    if not 0 <= args.shard_index < args.num_shards:
        raise ValueError(f"--shard-index {args.shard_index} is outside 0..{args.num_shards - 1} (--num-shards)")
    items = read_phase2_source(
        args.source, kind=args.kind, images=args.cgd_images, coco_root=args.coco_root, image_root=args.image_root
    )
    settings = Phase2Settings(
        mode=args.mode,
        template=args.template,
        sampling=sampling_from(args),
        max_attempts=args.max_attempts,
        bounds=SummaryBounds(args.min_words, args.max_words),
    )
    files = sorted(args.source.rglob("*.parquet")) if args.source.is_dir() else [args.source]
    inputs = [InputFile.of(file) for file in files]
    return run_locally(args, Phase2Task(settings), items, inputs)
