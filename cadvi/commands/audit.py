"""``cadvi audit contamination``: the benchmark images (and questions) a training set has seen.

Identity matching needs only the files that list the images (``--train KIND=FILE``, the benchmarks' question
files); perceptual hashing also needs the image folders (``--train-images``, ``--benchmark-images``); the
score without the contaminated questions needs lmms-eval's samples files (``--samples``). The report is
``contamination.json`` and ``contamination.md`` in ``--out``; ``cadvi build ... --audit`` links it from a
dataset card. See :mod:`eval_tasks.contamination`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cadvi.options import (
    HelpFormatter,
    Parser,
    add_command,
    console,
    input_file,
    input_folder,
    non_negative_int,
    progress_bar,
)

TRAINING_KINDS = ("cadinst-phase1", "cadinst-phase2", "cadqa", "llava")
BENCHMARKS = ("bison", "svo_probes", "nlvr2", "eqben", "cola", "cadqa")


def key_value(keys: tuple[str, ...], value_type: Callable[[str], Any]) -> Callable[[str], tuple[str, Any]]:
    """An argparse type for ``KEY=VALUE`` with ``KEY`` one of ``keys``."""

    def parse(text: str) -> tuple[str, Any]:
        key, separator, value = text.partition("=")
        if not separator or key not in keys:
            raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE with KEY one of {', '.join(keys)}")
        return key, value_type(value)

    return parse


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="audit what training data has seen", formatter_class=HelpFormatter)
    actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    parser = add_command(
        actions, "contamination", _contamination, "benchmark images and questions a training set has seen"
    )
    parser.add_argument(
        "--train",
        type=key_value(TRAINING_KINDS, input_file),
        action="append",
        required=True,
        metavar="KIND=FILE",
        help=f"a training file listing its images (KIND: {', '.join(TRAINING_KINDS)}); repeatable",
    )
    parser.add_argument(
        "--train-images",
        type=key_value(TRAINING_KINDS, input_folder),
        action="append",
        default=[],
        metavar="KIND=DIR",
        help="an image folder of a training set (for perceptual hashing); repeatable, tried in order",
    )
    parser.add_argument(
        "--benchmarks", default=",".join(BENCHMARKS), help="comma-separated benchmarks to audit (default: all six)"
    )
    per_benchmark = (
        ("--benchmark-file", input_file, "FILE", "a benchmark's question file (default: its pinned official file)"),
        ("--benchmark-images", input_folder, "DIR", "a benchmark's image root (for perceptual hashing)"),
        (
            "--samples",
            input_file,
            "FILE",
            "an lmms-eval samples file (--log_samples) of the benchmark: its score is recomputed without the "
            "contaminated questions",
        ),
    )
    for option, value_type, metavar, text in per_benchmark:
        parser.add_argument(
            option,
            type=key_value(BENCHMARKS, value_type),
            action="append",
            default=[],
            metavar=f"NAME={metavar}",
            help=f"{text}; repeatable",
        )
    parser.add_argument(
        "--visual-genome",
        type=input_file,
        action="append",
        default=[],
        help="Visual Genome image_data.json: joins VG ids with their COCO and Flickr ids",
    )
    parser.add_argument(
        "--threshold", type=non_negative_int, default=8, help="perceptual-hash Hamming distance (of 64 bits) to match"
    )
    parser.add_argument("--out", required=True, type=Path, help="report folder (contamination.json, .md)")
    parser.add_argument("--hash-cache", type=Path, help="hash cache, reused by reruns (default: in --out)")


def _benchmark_images(name: str, file: Path | None, root: Path | None):
    from eval_tasks.benchmarks import benchmark
    from eval_tasks.contamination.overlap import BenchmarkImages
    from eval_tasks.question_files import annotation_file, read_rows

    path = file or annotation_file(name)
    rows = read_rows(name, path)
    by_id = {str(row["question_id"]): row for row in rows}
    return BenchmarkImages(name, str(path), by_id, root, benchmark(name).candidate_names)


def _contamination(args: argparse.Namespace) -> int:
    from builders.images.identity import Links
    from builders.images.needs import read_needs
    from builders.images.phash import HashCache
    from builders.images.sources import read_visual_genome
    from builders.outputs import check_writable_folder
    from eval_tasks.contamination.overlap import TrainingSet, find_overlaps
    from eval_tasks.contamination.report import benchmark_report, contaminated_questions, report, write_report
    from eval_tasks.contamination.rescore import rescore

    names = [name.strip() for name in args.benchmarks.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown or not names:
        raise ValueError(
            f"--benchmarks: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(BENCHMARKS)}"
        )
    for option in ("benchmark_file", "benchmark_images", "samples"):
        for name, _ in getattr(args, option):
            if name not in names:
                raise ValueError(f"--{option.replace('_', '-')} {name}=...: {name} is not in --benchmarks")
    out = check_writable_folder(args.out, "report")  # before any reading or hashing

    files: dict[str, list[Path]] = {}
    for kind, path in args.train:
        files.setdefault(kind, []).append(path)
    roots: dict[str, list[Path]] = {}
    for kind, folder in args.train_images:
        if kind not in files:
            raise ValueError(f"--train-images {kind}=...: no --train {kind}=FILE lists that set's images")
        roots.setdefault(kind, []).append(folder)
    training = [
        TrainingSet(kind, [str(p) for p in paths], read_needs(kind, paths), roots.get(kind, []))
        for kind, paths in files.items()
    ]
    links = Links()
    for path in args.visual_genome:
        for first, second in read_visual_genome(path).links:
            links.join(first, second)
    question_files, image_roots = dict(args.benchmark_file), dict(args.benchmark_images)
    benchmarks = [_benchmark_images(name, question_files.get(name), image_roots.get(name)) for name in names]

    cache = HashCache(args.hash_cache or out / "phash-cache.jsonl")
    with progress_bar(args) as progress:

        def on_progress(label: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(f"hash {label}", total=total)
            return lambda advance: progress.advance(task, advance)

        overlaps = find_overlaps(
            training, benchmarks, links=links, threshold=args.threshold, cache=cache, on_progress=on_progress
        )
    samples = dict(args.samples)
    sections = {}
    for benchmark in benchmarks:
        dirty = set(contaminated_questions(benchmark, set(overlaps.benchmarks[benchmark.name].matches))[0])
        rescored = None
        if benchmark.name in samples:
            rescored = {
                "file": str(samples[benchmark.name]),
                **rescore(benchmark.name, samples[benchmark.name], benchmark.rows, dirty),
            }
        sections[benchmark.name] = benchmark_report(benchmark, overlaps, rescored)
    content = report(
        training,
        sections,
        overlaps,
        threshold=args.threshold,
        links={"files": [Path(p).name for p in args.visual_genome], "joined": links.count},
    )
    json_path, md_path = write_report(out, content)
    for name, section in sections.items():
        console.print(
            f"{name}: {section['images_seen']:,} of {section['images']:,} images seen in training "
            f"({section['images_seen_by_hash_only']:,} by hash only); {section['questions_contaminated']:,} of "
            f"{section['questions']:,} questions contaminated"
        )
    console.print(f"report: {json_path} and {md_path}")
    return 0
