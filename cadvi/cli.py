"""The ``cadvi`` command line."""

from __future__ import annotations

import argparse
import logging
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

    demo = commands.add_parser("demo", help="run the pipeline end to end, offline, on bundled samples")
    demo.add_argument("--workdir", type=Path, help="keep the outputs here (default: a temporary folder)")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console)])
    try:
        return COMMANDS[args.command](args)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
        return 1


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


def _demo(args: argparse.Namespace) -> int:
    from cadvi import demo

    demo.run(args.workdir, console=console)
    return 0


COMMANDS = {"build": _build, "publish": _publish, "demo": _demo}

if __name__ == "__main__":
    sys.exit(main())
