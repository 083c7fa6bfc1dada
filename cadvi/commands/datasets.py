"""``cadvi build`` and ``cadvi publish``: the release datasets in the Hub layout, and their upload."""

from __future__ import annotations

import argparse
from typing import Any

from cadvi.options import HelpFormatter, Parser, add_build_parser, add_command, console, input_folder


def register(commands: Any) -> None:
    build = commands.add_parser(
        "build", help="build CaD-Inst or CaD-QA into the Hub layout (parquet + card)", formatter_class=HelpFormatter
    )
    datasets = build.add_subparsers(dest="dataset", required=True, metavar="DATASET", parser_class=Parser)
    add_build_parser(datasets, "cadinst", _build)
    add_build_parser(datasets, "cadqa", _build)

    publish = add_command(commands, "publish", _publish, "upload a built folder to the Hub (never image bytes)")
    publish.add_argument("folder", type=input_folder, help="a folder written by `cadvi build`")
    publish.add_argument("--repo-id", required=True, help="dataset repo to upload to, ORG/NAME")
    publish.add_argument("--revision", help="branch to upload to, created if missing (default: main)")
    publish.add_argument("--private", action="store_true", help="create the repo as private")
    publish.add_argument("--dry-run", action="store_true", help="list what would be uploaded, upload nothing")


def _build(args: argparse.Namespace) -> int:
    options = {
        "revision": args.revision,
        "shape": args.shape,
        "overwrite": args.overwrite,
        "cache_dir": args.cache_dir,
        "repo_id": args.repo_id,
        "license": args.license,
        "audit": args.audit,
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
