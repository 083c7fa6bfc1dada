"""The contamination report: ``contamination.json`` (every figure) and ``contamination.md`` (for people).

Per benchmark: its images and how many of them a training set has seen (by identity, by hash only), its
questions and how many are contaminated (any image seen) or fully seen (every image), examples of each
kind of match, and, given a samples file, the score over all, clean and contaminated questions. A dataset
card links the report (``cadvi build ... --audit``); its figures are taken from the JSON, never retyped.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from builders.outputs import write_text_atomically
from eval_tasks.contamination.overlap import EXAMPLES, BenchmarkImages, Overlaps, TrainingSet

__all__ = ["REPORT_JSON", "REPORT_MD", "benchmark_report", "markdown", "write_report"]

REPORT_JSON = "contamination.json"
REPORT_MD = "contamination.md"
VERSION = 1


def contaminated_questions(benchmark: BenchmarkImages, seen: set[str]) -> tuple[list[str], int]:
    """(question ids with any image seen, how many have every image seen)."""
    any_seen = [q for q, names in benchmark.questions.items() if any(name in seen for name in names)]
    all_seen = sum(all(name in seen for name in names) for names in benchmark.questions.values())
    return any_seen, all_seen


def benchmark_report(benchmark: BenchmarkImages, overlaps: Overlaps, rescored: dict | None) -> dict[str, Any]:
    overlap = overlaps.benchmarks[benchmark.name]
    matches = overlap.matches
    by_identity = {name for name, found in matches.items() if any(m.how == "identity" for m in found)}
    by_hash = set(matches) - by_identity
    questions, all_seen = contaminated_questions(benchmark, set(matches))
    per_set: dict[str, Counter] = {}
    for found in matches.values():
        for match in found:
            per_set.setdefault(match.training_set, Counter())[match.how] += 1
    examples = {how: [m for found in matches.values() for m in found if m.how == how] for how in ("identity", "hash")}
    stats = overlap.hash_stats
    return {
        "file": benchmark.file,
        "questions": len(benchmark.questions),
        "images": len(benchmark.names),
        "images_seen": len(matches),
        "images_seen_by_identity": len(by_identity),
        "images_seen_by_hash_only": len(by_hash),
        "images_seen_by_training_set": {
            label: {"by_identity": counts["identity"], "by_hash": counts["hash"]} for label, counts in per_set.items()
        },
        "questions_contaminated": len(questions),
        "questions_all_images_seen": all_seen,
        "contaminated_question_ids": questions,
        "hashing": None
        if stats is None
        else {"hashed": stats.hashed, "no_file": stats.missing, "unreadable": len(stats.unreadable)},
        "examples": [m.as_dict() for m in examples["identity"][:EXAMPLES] + examples["hash"][:EXAMPLES]],
        "rescored": rescored,
    }


def report(
    training: Sequence[TrainingSet],
    benchmarks: dict[str, dict[str, Any]],
    overlaps: Overlaps,
    *,
    threshold: int,
    links: dict[str, Any],
) -> dict[str, Any]:
    return {
        "version": VERSION,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hash_threshold": threshold,
        "links": links,
        "training": [
            {
                "label": t.label,
                "files": [Path(f).name for f in t.files],
                "images": len(t.needs),
                "hashed": overlaps.training_hashes[t.label].hashed if t.label in overlaps.training_hashes else None,
                "no_file": overlaps.training_hashes[t.label].missing if t.label in overlaps.training_hashes else None,
            }
            for t in training
        ],
        "benchmarks": benchmarks,
    }


def _percent(part: int, whole: int) -> str:
    return f"{part:,} ({100 * part / whole:.1f}%)" if whole else "0"


def _score(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("value") is None:
        return "—"
    return f"{summary['value']:.2f} [{summary['ci_low']:.2f}, {summary['ci_high']:.2f}] (n={summary['n']:,})"


def markdown(content: dict[str, Any]) -> str:
    """The report for people: a table per benchmark, examples, and the rescored figures."""
    lines = ["# Train/eval contamination audit", ""]
    training = ", ".join(f"`{t['label']}` ({t['images']:,} images)" for t in content["training"])
    lines += [f"Training sets: {training}. Perceptual-hash threshold: {content['hash_threshold']} bits of 64.", ""]
    lines += ["| benchmark | images | seen (identity / hash only) | questions | contaminated | all images seen |"]
    lines += ["|---|---:|---:|---:|---:|---:|"]
    for name, b in content["benchmarks"].items():
        lines.append(
            f"| {name} | {b['images']:,} | {_percent(b['images_seen'], b['images'])} "
            f"({b['images_seen_by_identity']:,} / {b['images_seen_by_hash_only']:,}) | {b['questions']:,} "
            f"| {_percent(b['questions_contaminated'], b['questions'])} | {b['questions_all_images_seen']:,} |"
        )
    for name, b in content["benchmarks"].items():
        lines += ["", f"## {name}", ""]
        for label, counts in b["images_seen_by_training_set"].items():
            lines.append(f"- `{label}`: {counts['by_identity']:,} images by identity, {counts['by_hash']:,} by hash")
        if b["hashing"]:
            h = b["hashing"]
            lines.append(
                f"- hashed {h['hashed']:,} images ({h['no_file']:,} without a file, {h['unreadable']} unreadable)"
            )
        if b["examples"]:
            lines += ["", "| benchmark image | training set | training image | match |", "|---|---|---|---|"]
            for e in b["examples"]:
                how = f"identity `{e['identity']}`" if e["how"] == "identity" else f"hash, distance {e['distance']}"
                lines.append(f"| `{e['benchmark_image']}` | {e['training_set']} | `{e['training_image']}` | {how} |")
        if b["rescored"]:
            r = b["rescored"]
            lines += ["", f"Score recomputed from `{Path(r['file']).name}` ({r['samples']:,} samples):", ""]
            lines += ["| metric | all | clean | contaminated |", "|---|---|---|---|"]
            for metric in r["all"]:
                cells = " | ".join(_score(r[subset].get(metric)) for subset in ("all", "clean", "contaminated"))
                lines.append(f"| {metric} | {cells} |")
    return "\n".join(lines) + "\n"


def write_report(folder: Path, content: dict[str, Any]) -> tuple[Path, Path]:
    """``contamination.json`` and ``contamination.md``, each written to a temporary name and renamed."""
    json_path = write_text_atomically(folder / REPORT_JSON, json.dumps(content, indent=1, ensure_ascii=False) + "\n")
    return json_path, write_text_atomically(folder / REPORT_MD, markdown(content))
