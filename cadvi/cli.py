"""The ``cadvi`` command line: thin wrappers over the Python calls, and what a user sees of them.

Each command group registers its own parsers (``cadvi/commands/``: datasets, generation, judge, demo).
Results go to stdout; progress, warnings and errors go to stderr, one line each and never
hard-wrapped, so ``file:row: reason`` lines can be grepped. Every argument is checked before a
model loads. A user's mistake ends in one error line and exit status 1, never a traceback
(``-vv`` adds it, for bug reports); a run stopped because the model server failed exits with 75
(``EX_TEMPFAIL``: rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import sys

from jinja2 import TemplateError

from cadvi.commands import audit, datasets, demo, generation, images, judge, loop, train
from cadvi.options import (
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    HelpFormatter,
    Parser,
    configure_output,
    console,
    report_error,
    verbosity_options,
)

COMMAND_GROUPS = (datasets, generation, judge, train, loop, images, audit, demo)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``cadvi`` parser: the global options, then every command group's commands."""
    parser = Parser(
        prog="cadvi", description="CaD-VI datasets, generation and evaluation.", formatter_class=HelpFormatter
    )
    verbosity_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", 0)
    args.progress_console = configure_output(verbose=verbose, quiet=getattr(args, "quiet", False))
    from builders.llm.base import BackendRefusedError, BackendUnavailableError

    try:
        return args.handler(args)
    except BackendRefusedError as error:
        return report_error(error, verbose, EXIT_ERROR)
    except BackendUnavailableError as error:
        summary = getattr(error, "summary", None)
        if summary is not None:
            console.print(summary.line())
        left = f"; {summary.left:,} {summary.noun} left to do" if summary is not None else ""
        return report_error(f"{error}{left}: rerun the same command to resume", verbose, EXIT_INCOMPLETE)
    except KeyboardInterrupt:
        return report_error("interrupted; rerun the same command to resume", verbose, 130)
    except (OSError, ValueError, TemplateError, ImportError) as error:  # bad input, path, option, template, extra
        return report_error(error, verbose, EXIT_ERROR)


if __name__ == "__main__":
    sys.exit(main())
