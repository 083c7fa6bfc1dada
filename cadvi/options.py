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
from collections.abc import Callable
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


# Results on stdout; rich would hard-wrap lines at 80 columns when stdout is not a terminal.
console = Console(soft_wrap=True, highlight=False)
logger = logging.getLogger("cadvi")


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


def number_type(kind: type, minimum: float | None = None, maximum: float | None = None, *, above: bool = False):
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


positive_int = number_type(int, 1)
non_negative_int = number_type(int, 0)
non_negative_float = number_type(float, 0.0)
probability = number_type(float, 0.0, 1.0, above=True)


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


def verbosity_options(parser: argparse.ArgumentParser) -> None:
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


def add_command(commands: Any, name: str, handler: Callable, text: str, **kwargs: Any) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=text, description=text, formatter_class=HelpFormatter, **kwargs)
    parser.set_defaults(handler=handler)
    verbosity_options(parser)
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
        "--max-model-len", type=positive_int, help="context window of the engine (vllm backend; default: the model's)"
    )
    group.add_argument(
        "--enforce-eager", action="store_true", help="no CUDA graphs / compilation: faster start (vllm backend)"
    )
    group.add_argument(
        "--quantization",
        help="vLLM quantization, e.g. fp8: Mixtral-8x7B on one 80 GB GPU (vllm backend; default: none)",
    )
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
    parser = add_command(datasets, name, handler, f"build {pretty} into the Hub layout (parquet + dataset card)")
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
    parser.add_argument(
        "--audit",
        type=Path,
        help="a `cadvi audit contamination` report (contamination.json or its folder): shipped under audit/ and "
        "summarised in the card",
    )
    return parser


def backend_from(args: argparse.Namespace):
    """The backend the LLM options ask for; a local model reference is checked before anything loads."""
    from builders.llm.base import check_model_reference, make_backend

    if args.backend == "openai":
        if not args.base_url:
            raise ValueError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        options = {"base_url": args.base_url, "api_key_env": args.api_key_env, "max_concurrency": args.max_concurrency}
        if getattr(args, "image_max_side", None):
            options["max_image_side"] = args.image_max_side
    else:
        check_model_reference(args.model)
        if args.backend == "transformers":
            options = {"batch_size": args.batch_size, "trust_remote_code": args.trust_remote_code}
        else:
            options = {
                "tensor_parallel_size": args.tensor_parallel_size,
                "trust_remote_code": args.trust_remote_code,
                "seed": args.seed,
                "max_model_len": args.max_model_len,
                **vllm_engine_options(args),
            }
    return make_backend(args.backend, args.model, **options)


def vllm_engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The engine options given on the command line, as ``vllm.LLM`` keyword arguments."""
    options: dict[str, Any] = {}
    if args.enforce_eager:
        options["enforce_eager"] = True
    if args.quantization:
        options["quantization"] = args.quantization
    return options


def ray_engine_from(args: argparse.Namespace):
    """The Ray Data LLM step the options ask for: vLLM replicas (``--backend vllm``) or HTTP endpoints (``openai``)."""
    from builders.generate.ray_engines import RayHttpEngine, RayVLLMEngine
    from builders.llm.base import check_model_reference

    if args.backend == "openai":
        if not args.base_url:
            raise ValueError("--engine ray --backend openai needs --base-url of the running endpoint(s)")
        return RayHttpEngine(
            args.base_url,
            args.model,
            replicas=args.replicas,
            batch_size=args.ray_batch_size,
            api_key_env=args.api_key_env,
        )
    if args.backend != "vllm":
        raise ValueError("--engine ray runs --backend vllm (vLLM replicas) or --backend openai (HTTP endpoints)")
    check_model_reference(args.model)
    return RayVLLMEngine(
        args.model,
        replicas=args.replicas,
        tensor_parallel_size=args.tensor_parallel_size,
        batch_size=args.ray_batch_size,
        max_model_len=args.max_model_len,
        engine_kwargs=vllm_engine_options(args),
        trust_remote_code=args.trust_remote_code,
    )


def sampling_from(args: argparse.Namespace):
    from builders.llm.base import Sampling

    return Sampling(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed)


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
