"""``cadvi judge``: rate answer files with an LLM judge, keeping every judgement as soon as it is made.

Judgements are appended to ``--out`` while the judge works, so a crash or a judge-server outage
loses none: a rerun keeps every judgement made with the same template, judge model, question,
reference and prediction, and asks only for the rest. The summary (mean, CI, histogram) is written
when every item is judged.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from builders.judge import BackendAsk, JudgeItem, Judgement, RatingSummary, judge, read_predictions
from builders.outputs import check_output_file
from builders.runs import cut_torn_tail, read_jsonl
from cadvi.options import progress_bar
from prompts import load_template


def run_judge(args: argparse.Namespace, console: Console, *, backend_from: Callable, sampling_from: Callable) -> int:
    import cadqa

    predictions = read_predictions(args.predictions)
    out = args.out or args.predictions.with_name(f"{args.predictions.stem}.judgements.jsonl")
    summary_path = out.with_name(f"{out.stem}.summary.json")
    for path in (out, summary_path):
        check_output_file(path, [args.predictions, args.references])
    template_sha = load_template(args.template).sha256
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
    done = reusable_judgements(out, items, template_sha=template_sha, model=args.model)
    todo = [item for item in items if item.id not in done]
    if done:
        console.print(f"resuming {out}: {len(done):,} of {len(items):,} items already judged")
    records = dict(done)
    if todo:
        backend = backend_from(args)
        try:
            with JudgementWriter(out, list(done.values())) as writer, progress_bar(args) as progress:
                task = progress.add_task("judging", total=len(items), completed=len(done))

                def keep(judgement: Judgement) -> None:
                    records[judgement.item.id] = judgement.to_record()
                    writer.write(records[judgement.item.id])

                judge(
                    todo,
                    BackendAsk(backend, sampling=sampling_from(args)),
                    retries=args.retries,
                    template=args.template,
                    progress=lambda n: progress.advance(task, n),
                    on_settled=keep,
                )
        finally:
            backend.close()
    ordered = [records[item.id] for item in items]
    _write_jsonl(out, ordered)
    summary = RatingSummary.of(record["rating"] for record in ordered)
    report = {
        **summary.as_dict(),
        "judge_model": args.model,
        "template": args.template,
        "template_sha256": template_sha,
        "retries": args.retries,
    }
    summary_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_judge_report(console, summary, args.model, len(rows))
    console.print(f"wrote {out} ({len(ordered):,} judgements) and {summary_path}")
    return 0


def reusable_judgements(
    out: Path, items: list[JudgeItem], *, template_sha: str, model: str
) -> dict[str, dict[str, Any]]:
    """The judgements in ``out`` made for exactly these items by this template and judge model."""
    if not out.is_file():
        return {}
    cut_torn_tail(out)
    wanted = {item.id: item for item in items}
    found: dict[str, dict[str, Any]] = {}
    for record in read_jsonl(out):
        item = wanted.get(record.get("question_id"))
        same = item is not None and (
            record.get("template_sha256") == template_sha
            and record.get("judge_model") == model
            and (record.get("question"), record.get("reference"), record.get("prediction"))
            == (item.question, item.reference, item.prediction)
        )
        if same:
            found[item.id] = record
    return found


class JudgementWriter:
    """Appends judgement records to ``path``, flushed one by one; the file is only created by the first one.

    The records kept from an earlier run are written first, so that stale lines (another template or
    judge) are dropped from the file only once there is something new to keep.
    """

    def __init__(self, path: Path, kept: list[dict[str, Any]]) -> None:
        self.path = path
        self.kept = kept
        self._handle: IO[str] | None = None

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            _write_jsonl(self.path, self.kept)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def __enter__(self) -> JudgementWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    from builders.release.sources import write_jsonl

    write_jsonl(records, path)


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
