"""``cadvi judge``: rate answer files with an LLM judge, on the one runner, resumable from its run folder.

Judgements go to a run folder (``--run-dir``, default ``<out>.run`` beside ``--out``) as they are made, so
a crash or a judge-server outage loses none: a rerun asks only for the answers not judged yet. When every
answer is judged, ``--out`` gets one judgement per answer (in the order of the predictions file) and the
summary (mean, CI, histogram) goes beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from builders.judge import JudgeItem, JudgeTask, RatingSummary, identity_folder, judge, read_predictions
from builders.outputs import check_output_file, refuse_output_over_sources
from builders.release.sources import write_jsonl
from cadvi.commands.calibrate import register_calibrate
from cadvi.options import (
    Parser,
    add_command,
    add_llm_arguments,
    backend_from,
    console,
    input_file,
    non_negative_int,
    progress_bar,
    sampling_from,
)


def register(commands: Any) -> None:
    judge = add_command(commands, "judge", _judge, "rate CaD-QA predictions against the reference answers with an LLM")
    judge.add_argument("--predictions", required=True, type=input_file, help="JSONL of {question_id, prediction}")
    judge.add_argument(
        "--references", required=True, help="CaD_QA_eval.jsonl, a CaD-QA release or built folder, or a Hub repo id"
    )
    judge.add_argument(
        "--out",
        type=Path,
        help="per-item judgements, JSONL, written when all are judged (default: <predictions>.judgements.jsonl)",
    )
    judge.add_argument(
        "--run-dir",
        type=Path,
        help="folder the judgements go to as they are made, one run per judge; a rerun resumes it "
        "(default: <out>.run beside --out)",
    )
    add_llm_arguments(judge, max_tokens=20, temperature=0.0, top_p=1.0)  # the paper's judge: 20 tokens, greedy
    judge.add_argument("--retries", type=non_negative_int, default=1, help="asks again after an unreadable rating")
    judge.add_argument("--template", default="judge_cadqa.jinja", help="package template name or a .jinja file")
    judge.add_argument("--cache-dir", type=Path, help="datasets cache folder for --references")
    register_calibrate(judge.add_subparsers(dest="judge_command", metavar="{calibrate}", parser_class=Parser))
    for action in judge._actions:  # `cadvi judge calibrate` must not need the rating run's required options
        if action.dest in ("predictions", "references", "model"):
            action.required = False


def _judge(args: argparse.Namespace) -> int:
    import cadqa

    missing = [f"--{name}" for name in ("predictions", "references", "model") if getattr(args, name) is None]
    if missing:
        raise ValueError(f"cadvi judge needs {', '.join(missing)} (or: cadvi judge calibrate ...)")

    predictions = read_predictions(args.predictions)
    out = args.out or args.predictions.with_name(f"{args.predictions.stem}.judgements.jsonl")
    summary_path = out.with_name(f"{out.stem}.summary.json")
    task = JudgeTask(template=args.template, sampling=sampling_from(args), retries=args.retries)
    runs = args.run_dir or out.with_name(f"{out.stem}.run")  # one folder per judge below it
    run_dir = identity_folder(runs, task, args.backend, args.model)
    for path in (out, summary_path):
        check_output_file(path, [args.predictions, args.references])
    refuse_output_over_sources(runs, [args.predictions, args.references], what="judge run folder")
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
    backend = backend_from(args)
    try:
        with progress_bar(args) as progress:
            task = progress.add_task("judging", total=len(items))
            report = judge(
                items,
                backend,
                retries=args.retries,
                template=args.template,
                sampling=sampling_from(args),
                run_dir=run_dir,
                progress=lambda n: progress.advance(task, n),
                on_resume=lambda done: _resumed(console, progress, task, run_dir, done, len(items)),
            )
    finally:
        backend.close()
    ordered = [record.to_record() for record in report.records]
    write_jsonl(ordered, out)
    summary = report.summary
    summary_path.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_judge_report(console, summary, report.model or args.model, len(rows))
    console.print(f"wrote {out} ({len(ordered):,} judgements) and {summary_path}")
    return 0


def _resumed(console: Console, progress, task, run_dir: Path, done: int, total: int) -> None:
    if done:
        console.print(f"resuming {run_dir}: {done:,} of {total:,} items already judged")
        progress.update(task, completed=done)


def print_judge_report(console: Console, summary: RatingSummary, model: str, references: int) -> None:
    from rich.table import Table

    table = Table(title=f"CaD-QA judge ({model}), {summary.n:,} of {references:,} questions")
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
    console.print(summary.line())
