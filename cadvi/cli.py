"""The ``cadvi`` command line: thin wrappers over the Python calls, and what a user sees of them.

Results go to stdout; progress, warnings and errors go to stderr, one line each and never
hard-wrapped, so ``file:row: reason`` lines can be grepped. Every argument is checked before a
model loads. A user's mistake ends in one error line and exit status 1, never a traceback
(``-v`` adds it, for bug reports); a run stopped because the model server failed exits with 75
(``EX_TEMPFAIL``: rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from rich.console import Console

from cadvi.options import (
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    add_build_parser,
    add_llm_arguments,
    build_parser,
    configure_output,
    progress_bar,
    report_error,
)

# Results on stdout; rich would hard-wrap lines at 80 columns when stdout is not a terminal.
console = Console(soft_wrap=True, highlight=False)
logger = logging.getLogger("cadvi")

__all__ = ["add_build_parser", "add_llm_arguments", "backend_from", "main", "parse_bins"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(COMMANDS)
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", 0)
    progress_console = configure_output(verbose=verbose, quiet=getattr(args, "quiet", False))
    args.progress_console = progress_console
    from builders.llm.base import BackendRefusedError, BackendUnavailableError

    try:
        return args.handler(args)
    except BackendRefusedError as error:
        return report_error(error, verbose, EXIT_ERROR)
    except BackendUnavailableError as error:
        summary = getattr(error, "summary", None)
        if summary is not None:
            console.print(summary.line())
        left = f"; {summary.left:,} pairs left to do" if summary is not None else ""
        return report_error(f"{error}{left}: rerun the same command to resume", verbose, EXIT_INCOMPLETE)
    except KeyboardInterrupt:
        return report_error("interrupted; rerun the same command to resume", verbose, 130)
    except (OSError, ValueError, TemplateError) as error:  # a user's mistake: bad input, path, option, template
        return report_error(error, verbose, EXIT_ERROR)


def backend_from(args: argparse.Namespace):
    """The backend the LLM options ask for; a local model reference is checked before anything loads."""
    from builders.llm.base import check_model_reference, make_backend

    if args.backend == "openai":
        if not args.base_url:
            raise ValueError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        options = {"base_url": args.base_url, "api_key_env": args.api_key_env, "max_concurrency": args.max_concurrency}
    else:
        check_model_reference(args.model)
        if args.backend == "transformers":
            options = {"batch_size": args.batch_size, "trust_remote_code": args.trust_remote_code}
        else:
            options = {
                "tensor_parallel_size": args.tensor_parallel_size,
                "trust_remote_code": args.trust_remote_code,
                "seed": args.seed,
            }
    return make_backend(args.backend, args.model, **options)


def sampling_from(args: argparse.Namespace):
    from builders.llm.base import Sampling

    return Sampling(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed)


# ----- commands -----


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
    from builders.phase1 import Phase1Settings, phase1_identity, run_phase1
    from builders.runs import InputFile, check_run_folder
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
    # Everything that can refuse the run is checked before the model loads.
    check_run_folder(args.out, phase1_identity(settings, args.backend, args.model), inputs, extend=args.extend)
    backend = backend_from(args)
    try:
        summary = run_phase1(
            pairs,
            backend,
            args.out,
            settings,
            num_shards=args.num_shards,
            shard_index=args.shard_index,
            inputs=inputs,
            extend=args.extend,
            console=args.progress_console or Console(stderr=True),
            progress=args.progress_console is not None,
        )
    finally:
        backend.close()
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
    from builders.export import export_phase1

    rows = export_phase1(args.run, args.out, seed=args.seed, overwrite=args.overwrite)
    console.print(
        f"exported {rows:,} conversations to {args.out} (load with cadinst.load({str(args.out)!r}, 'phase1'))"
    )
    return 0


def _build(args: argparse.Namespace) -> int:
    options = {
        "revision": args.revision,
        "shape": args.shape,
        "overwrite": args.overwrite,
        "cache_dir": args.cache_dir,
        "repo_id": args.repo_id,
        "license": args.license,
    }
    if args.dataset == "cadinst":
        import cadinst.hub

        built = cadinst.hub.build(args.source, args.out, **options)
        counts = {name: len(ds) for name, ds in built.items()}
    else:
        import cadqa.hub

        counts = {"test": len(cadqa.hub.build(args.source, args.out, **options))}
    console.print(f"built {args.out}: " + ", ".join(f"{k} {v:,} rows" for k, v in counts.items()))
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
    from cadvi.judging import run_judge

    return run_judge(args, console, backend_from=backend_from, sampling_from=sampling_from)


def _tiny_model(args: argparse.Namespace) -> int:
    from cadvi.demo import stand_in_model

    path = stand_in_model(args.out)
    console.print(
        f"wrote a tiny stand-in chat model to {path}: random weights fitted for seconds on the bundled sample "
        "summaries, for trying the pipeline offline (its text is not meaningful). Use it as --model "
        f"{path} with --backend transformers."
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from cadvi import demo

    if args.workdir is not None:
        demo.run(args.workdir, console=console, model=args.model)
        return 0
    with tempfile.TemporaryDirectory(prefix="cadvi-demo-") as folder:
        demo.run(Path(folder), console=console, model=args.model)
    console.print(f"removed the demo's temporary folder {folder} (pass --workdir DIR to keep the outputs)")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "build": _build,
    "publish": _publish,
    "demo": _demo,
    "judge": _judge,
    "nouns": _nouns,
    "pairs": _pairs,
    "generate": _generate,
    "export": _export,
    "tiny-model": _tiny_model,
}

if __name__ == "__main__":
    sys.exit(main())
