"""``cadvi demo``: the whole pipeline, offline, on the bundled samples."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from cadvi.options import add_command, console


def register(commands: Any) -> None:
    demo = add_command(commands, "demo", _demo, "run the pipeline end to end, offline, on bundled samples")
    demo.add_argument("--workdir", type=Path, help="keep the outputs here (default: a temporary folder, removed)")
    demo.add_argument("--model", help="any local or Hub chat model for generation (default: a tiny stand-in)")
    demo.add_argument(
        "--no-loop", action="store_true", help="stop after the datasets (skip training V1/V2, phase 2, lmms-eval)"
    )


def _demo(args: argparse.Namespace) -> int:
    from cadvi import demo

    if args.workdir is not None:
        demo.run(args.workdir, console=console, model=args.model, loop=not args.no_loop)
        return 0
    with tempfile.TemporaryDirectory(prefix="cadvi-demo-") as folder:
        demo.run(Path(folder), console=console, model=args.model, loop=not args.no_loop)
    console.print(f"removed the demo's temporary folder {folder} (pass --workdir DIR to keep the outputs)")
    return 0
