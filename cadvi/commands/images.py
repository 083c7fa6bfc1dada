"""``cadvi images fetch``: every image a dataset or benchmark needs, from its canonical public source.

The names come from the dataset's own file (``--data``; a benchmark's pinned question file by default), the
URLs from the sources' annotation files the user points at (``--coco``, ``--visual-genome``,
``--open-images``, ``--nlvr2``), the files land under ``--to`` as the dataset names them, and
``cadvi-fetch-<dataset>.json`` there says what is missing and why. Rerun the same command to fetch what is
still missing (partial files are resumed by HTTP range).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from builders.images.identity import DATASET_SCHEMES
from cadvi.commands.audit import BENCHMARKS
from cadvi.options import (
    EXIT_INCOMPLETE,
    HelpFormatter,
    Parser,
    add_command,
    console,
    input_file,
    positive_int,
    progress_bar,
    report_error,
)

DATASET_NAMES = tuple(DATASET_SCHEMES)  # cadinst-phase1, ..., the benchmarks, llava
ANNOTATION_OPTIONS = {
    "coco": "COCO annotation JSON (instances_/captions_/image_info_*.json): its images' coco_url",
    "visual-genome": "Visual Genome image_data.json: its images' url",
    "open-images": "Open Images image-id CSV (ImageID, Subset, OriginalURL, OriginalSize, OriginalMD5)",
    "nlvr2": "NLVR2 split file (test1.json, JSON Lines with identifier, left_url, right_url)",
}


def register(commands: Any) -> None:
    images = commands.add_parser(
        "images", help="get the images of a dataset or benchmark from their sources", formatter_class=HelpFormatter
    )
    actions = images.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    fetch = add_command(actions, "fetch", _fetch, "download the images a dataset needs into the layout it expects")
    fetch.add_argument("dataset", choices=DATASET_NAMES, help="whose images")
    fetch.add_argument("--to", required=True, type=Path, help="the image folder (the dataset's image root)")
    fetch.add_argument(
        "--data",
        type=input_file,
        action="append",
        help="the dataset's file(s) listing its images (release JSON/JSONL/parquet, question file); default for a "
        "benchmark: its pinned question file",
    )
    sources = fetch.add_argument_group("where the images are (the sources' own annotation files; repeatable)")
    for kind, text in ANNOTATION_OPTIONS.items():
        sources.add_argument(f"--{kind}", type=input_file, action="append", default=[], help=text)
    fetch.add_argument("--only", action="append", default=[], metavar="NAME", help="fetch only these image names")
    fetch.add_argument("--concurrency", type=positive_int, default=32, help="downloads in flight")
    fetch.add_argument("--retries", type=positive_int, default=5, help="attempts per URL (with backoff)")
    fetch.add_argument("--timeout", type=float, default=30.0, help="seconds without data before an attempt fails")
    fetch.add_argument("--manifest", type=Path, help="where to write the manifest (default: in --to)")
    fetch.add_argument("--dry-run", action="store_true", help="say what would be fetched, fetch nothing")


def _data_files(args: argparse.Namespace) -> list[Path]:
    if args.data:
        return list(args.data)
    if args.dataset not in BENCHMARKS:
        raise ValueError(f"{args.dataset}: give the file listing its images with --data")
    from eval_tasks.question_files import annotation_file

    return [annotation_file(args.dataset)]


def _fetch(args: argparse.Namespace) -> int:
    from builders.images.download import fetch_files
    from builders.images.needs import read_needs
    from builders.images.plan import manifest, manifest_path, plan_fetch, write_manifest
    from builders.images.sources import read_sources
    from builders.outputs import check_writable_folder

    data = _data_files(args)
    needs = read_needs(args.dataset, data)
    given = {kind: getattr(args, kind.replace("-", "_")) for kind in ANNOTATION_OPTIONS}
    sources = read_sources({kind: paths for kind, paths in given.items() if paths})
    plan = plan_fetch(needs, sources, {kind for kind, paths in given.items() if paths})
    if args.only:
        plan = plan.only(args.only)  # raises for a name the dataset does not list or no source knows
    total = len(plan.jobs) + len(plan.unfetchable)
    console.print(
        f"{args.dataset}: {total:,} images needed; {len(plan.jobs):,} have a source, {len(plan.unfetchable):,} not"
    )
    if args.dry_run:
        for job in plan.jobs[:20]:
            console.print(f"  {job.name} <- {job.candidates[0].url}")
        return 0
    folder = check_writable_folder(args.to, "images")
    where = args.manifest or manifest_path(folder, args.dataset)
    check_writable_folder(Path(where).parent, "manifest")
    with progress_bar(args) as progress:
        task = progress.add_task(f"fetch {args.dataset}", total=len(plan.jobs))
        outcomes = fetch_files(
            plan.jobs,
            folder,
            concurrency=args.concurrency,
            retries=args.retries,
            timeout=args.timeout,
            on_done=lambda outcome: progress.advance(task),
        )
    content = manifest(args.dataset, [str(p) for p in data], plan, outcomes, sources)
    write_manifest(Path(where), content)
    counts = content["counts"]
    console.print(
        f"{args.dataset}: {content['complete']:,} of {content['needed']:,} images in {folder} "
        f"({counts['present']:,} already there, {counts['downloaded']:,} downloaded, {counts['linked']:,} linked); "
        f"{counts['missing']:,} missing, see {where}"
    )
    failed = content["missing_by_reason"].get("download failed", 0)
    if failed:  # failed after retries (a 5xx, a dropped connection, ...): a later run may fetch them
        return report_error(f"{failed:,} downloads failed; rerun the same command to fetch them", 0, EXIT_INCOMPLETE)
    return 0
