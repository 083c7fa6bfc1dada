"""CaD-QA generation (paper §4) on the command line, stage by stage.

``cadvi captions svit`` (SVIT detailed descriptions joined to Visual Genome ``image_data.json``, as caption
JSONL for ``cadvi nouns``) -> ``cadvi nouns`` -> ``cadvi pairs --min-shared 8 --max-uses-per-image 4`` ->
``cadvi generate phase1`` (stage 1: the CaD summary of the two captions) -> ``cadvi generate cadqa``
(stage 2: Q&As from captions + summary) -> ``cadvi export cadqa`` (one Q&A per pair, the official shape) ->
``cadvi build cadqa``. ``cadvi judge calibrate`` checks the judge that scores it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cadvi.options import add_command, add_llm_arguments, console, input_file, input_folder, positive_int, sampling_from


def register_captions(commands: Any) -> None:
    group = commands.add_parser("captions", help="convert caption sources into caption JSONL")
    kinds = group.add_subparsers(dest="caption_kind", required=True, metavar="KIND")
    svit = add_command(kinds, "svit", _svit, "SVIT detailed descriptions + Visual Genome image_data -> caption JSONL")
    svit.add_argument("--detail", required=True, type=input_file, help="SVIT detail_description.json")
    svit.add_argument("--image-data", required=True, type=input_file, help="Visual Genome image_data.json")
    svit.add_argument("--out", required=True, type=Path, help="caption JSONL to write ({image, caption, source})")


def register_stage(stages: Any, run_locally: Any) -> None:
    qa = add_command(
        stages, "cadqa", lambda args: _generate(args, run_locally), "pairs + their summaries -> CaD-QA Q&As (stage 2)"
    )
    qa.add_argument("--pairs", required=True, type=input_file, help="the pairs file stage 1 summarised")
    qa.add_argument("--summaries", required=True, type=input_folder, help="the stage-1 run folder (generate phase1)")
    qa.add_argument("--out", required=True, type=Path, help="run folder (resumed when it exists)")
    qa.add_argument("--extend", action="store_true", help="add a new --pairs file to an existing run")
    add_llm_arguments(qa, max_tokens=600, temperature=0.7, top_p=0.95)
    run = qa.add_argument_group("run")
    run.add_argument("--examples", type=int, default=2, help="in-context examples from cadqa_examples.json (ours)")
    run.add_argument("--structured", action="store_true", help="JSON-schema structured outputs (vLLM, servers)")
    run.add_argument("--max-attempts", type=positive_int, default=3, help="tries per pair before it is rejected")
    run.add_argument("--num-shards", type=positive_int, default=1, help="processes or machines sharing the run")
    run.add_argument("--shard-index", type=int, default=0, help="this process's shard, 0-based")


def _svit(args: argparse.Namespace) -> int:
    from builders.cadqa_sources import read_svit_captions, write_caption_jsonl

    captions = read_svit_captions(args.detail, args.image_data)
    write_caption_jsonl(captions, args.out)
    console.print(f"wrote {args.out}: {len(captions):,} captions (next: cadvi nouns --captions {args.out})")
    return 0


def _generate(args: argparse.Namespace, run_locally: Any) -> int:
    from builders.cadqa_task import QASettings, QATask, qa_items
    from builders.pair_file import read_pairs
    from builders.runs import InputFile, all_records

    if not 0 <= args.shard_index < args.num_shards:
        raise ValueError(f"--shard-index {args.shard_index} is outside 0..{args.num_shards - 1} (--num-shards)")
    pairs = read_pairs(args.pairs)
    items = qa_items(pairs, list(all_records(args.summaries)))
    if not items:
        raise ValueError(f"{args.summaries}: no stage-1 summary for any pair of {args.pairs}")
    settings = QASettings(
        examples=args.examples, sampling=sampling_from(args), max_attempts=args.max_attempts, structured=args.structured
    )
    return run_locally(args, QATask(settings), items, [InputFile.of(args.pairs)])
