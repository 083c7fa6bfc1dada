"""``calibrate`` (wired as ``cadvi judge calibrate``): fixed probes through the judge, and how it rated them.

The probes (the reference itself, an empty answer, another question's answer, the reference with its images
swapped, the reference padded with filler) are judged by the same judge ``cadvi judge`` builds from the same
options, on the same runner: judgements go to ``<out>/runs`` as they are made and a rerun resumes them. With
``--second-model`` a second judge rates the same items and the two are compared (weighted kappa, Spearman).
``<out>`` gets ``calibration.json``, ``histograms.png``, ``calibration.md`` and ``judgements.jsonl``; see
:mod:`builders.judge.calibration` for every figure.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from cadvi.options import (
    add_command,
    add_llm_arguments,
    backend_from,
    console,
    non_negative_int,
    progress_bar,
    sampling_from,
)

DEFAULT_SAMPLE = 500  # builders.judge.calibration.DEFAULT_SAMPLE (not imported: --help stays light)


def register_calibrate(commands: Any) -> argparse.ArgumentParser:
    """Add the ``calibrate`` command to ``commands`` (an ``add_subparsers()`` object); returns its parser."""
    parser = add_command(
        commands,
        "calibrate",
        _calibrate,
        "rate fixed probes (reference, empty, other question, swapped images, padded) to check the CaD-QA judge",
    )
    parser.add_argument(
        "--references", required=True, help="CaD_QA_eval.jsonl, a CaD-QA release or built folder, or a Hub repo id"
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="folder for calibration.json, histograms.png, calibration.md, judgements.jsonl and the judge runs",
    )
    parser.add_argument(
        "--sample",
        type=non_negative_int,
        default=DEFAULT_SAMPLE,
        help="references drawn (seeded by --seed) to make the probes from; 0: all of them",
    )
    # --seed comes with the judge options below: it seeds the sample and the other_question pairing too.
    add_llm_arguments(parser, max_tokens=20, temperature=0.0, top_p=1.0)  # the paper's judge: 20 tokens, greedy
    parser._option_string_actions[
        "--seed"
    ].help = "seeds the --sample draw, the other_question pairing and the judge's sampling"
    parser.add_argument("--retries", type=non_negative_int, default=1, help="asks again after an unreadable rating")
    parser.add_argument("--template", default="judge_cadqa.jinja", help="package template name or a .jinja file")
    parser.add_argument("--cache-dir", type=Path, help="datasets cache folder for --references")
    second = parser.add_argument_group("second judge (optional: agreement of two judges on the same items)")
    second.add_argument("--second-model", help="the second judge's model (folder, Hub id, or the name a server serves)")
    second.add_argument(
        "--second-backend",
        choices=["transformers", "openai", "vllm"],
        help="where the second judge runs (default: --backend)",
    )
    second.add_argument(
        "--second-base-url", help="OpenAI-compatible endpoint of the second judge (default: --base-url)"
    )
    return parser


def second_judge_arguments(args: argparse.Namespace) -> argparse.Namespace | None:
    """The options of the second judge (those of the first, with ``--second-*`` in place), or None without one."""
    if args.second_model is None:
        given = [name for name in ("second_backend", "second_base_url") if getattr(args, name) is not None]
        if given:
            options = " and ".join("--" + name.replace("_", "-") for name in given)
            raise ValueError(f"{options} {'needs' if len(given) == 1 else 'need'} --second-model")
        return None
    backend = args.second_backend or args.backend
    base_url = args.second_base_url or (args.base_url if backend == "openai" else None)
    if backend == "openai" and not base_url:
        raise ValueError("a second judge with --second-backend openai needs --second-base-url (or --base-url)")
    return argparse.Namespace(**{**vars(args), "model": args.second_model, "backend": backend, "base_url": base_url})


def _calibrate(args: argparse.Namespace) -> int:
    import cadqa
    from builders.judge.calibration import calibrate
    from builders.outputs import refuse_output_over_sources

    second_args = second_judge_arguments(args)  # checked before any model loads
    sampling = sampling_from(args)
    refuse_output_over_sources(args.out, [args.references], what="calibration folder")
    references = cadqa.load(args.references, cache_dir=args.cache_dir)
    with contextlib.ExitStack() as stack:
        backend = backend_from(args)
        stack.callback(backend.close)
        second = None
        if second_args is not None:
            second = backend_from(second_args)
            stack.callback(second.close)
        with progress_bar(args) as bar:
            tasks: dict[str, Any] = {}

            def progress(label: str, settled: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = bar.add_task(f"{label}: probes", total=total)
                bar.update(tasks[label], completed=settled, total=total)

            result = calibrate(
                references.select_columns(["question_id", "question", "answer"]),
                backend,
                args.out,
                sample=args.sample or None,
                seed=args.seed,
                second_backend=second,
                retries=args.retries,
                template=args.template,
                sampling=sampling,
                source=args.references,
                progress=progress,
            )
    print_calibration(result.results)
    console.print(f"wrote {', '.join(str(path) for path in result.paths.values())}")
    return 0


def print_calibration(results: dict[str, Any]) -> None:
    """The probe table of each judge and the agreement line, on stdout."""
    from rich.table import Table

    from builders.judge.calibration import COMPARED, PROBES

    def figure(value: float | None, low: float | None, high: float | None, signed: bool = False) -> str:
        if value is None:
            return "-"
        form = "{:+.2f}" if signed else "{:.2f}"
        return f"{form.format(value)} [{form.format(low)}, {form.format(high)}]"

    for name in ("judge", "second_judge"):
        block = results.get(name)
        if not block:
            continue
        table = Table(title=f"judge calibration ({block['model']}), {results['sample']:,} questions")
        for column in ("probe", "expected", "n", "invalid", "mean [95% CI]", "as expected"):
            table.add_column(column, justify="right" if column in ("n", "invalid") else "left")
        for probe in PROBES:
            summary = block["probes"][probe]
            table.add_row(
                probe,
                summary["expectation"],
                f"{summary['n']:,}",
                f"{summary['invalid']:,}",
                figure(summary["mean_rating"], summary["ci_low"], summary["ci_high"]),
                {True: "yes", False: "NO", None: "-"}[summary["meets_expectation"]],
            )
        console.print(table)
        for probe in COMPARED:
            difference = block["comparisons"][f"{probe}_minus_self"]
            shown = figure(difference["value"], difference["ci_low"], difference["ci_high"], signed=True)
            console.print(f"{probe} - self: {shown} over {difference['n']:,} questions")
    agreed = results.get("agreement")
    if agreed:
        kappa, rho = agreed["weighted_kappa"], agreed["spearman"]
        console.print(
            f"agreement over {agreed['n']:,} items: weighted kappa "
            f"{figure(kappa['value'], kappa['ci_low'], kappa['ci_high'])}, Spearman rho "
            f"{figure(rho['value'], rho['ci_low'], rho['ci_high'])}"
        )
