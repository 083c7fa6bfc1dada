"""A contamination report (``cadvi audit contamination``) shipped beside a dataset and summarised in its card.

The card's table is read from the report's JSON, never retyped, and a report that does not audit the dataset
being built is refused: a CaD-Inst card links only a report whose training sets include CaD-Inst rows, a
CaD-QA card only one that audits CaD-QA as a benchmark. The report's two files are copied into the built
folder (``audit/contamination.json``, ``audit/contamination.md``) and published with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AUDIT_FOLDER", "AuditReport", "read_audit"]

AUDIT_FOLDER = "audit"
REPORT_FILES = ("contamination.json", "contamination.md")


@dataclass(frozen=True)
class AuditReport:
    """What a card says of a contamination report, and the files to ship with the dataset."""

    written: str
    training: list[dict[str, Any]]
    threshold: int
    rows: list[dict[str, Any]]  # one per benchmark shown in the card
    files: dict[str, Path]  # name in the built folder -> the report file

    @property
    def link(self) -> str:
        return f"{AUDIT_FOLDER}/contamination.md"


def read_audit(path: str | Path, *, dataset: str) -> AuditReport:
    """The report at ``path`` (its ``contamination.json``, or the folder holding it) for a ``dataset`` card."""
    path = Path(path)
    json_path = path / REPORT_FILES[0] if path.is_dir() else path
    md_path = json_path.with_name(REPORT_FILES[1])
    try:
        content = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{json_path}: no contamination report (run `cadvi audit contamination`)") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{json_path}: not a contamination report: not JSON ({error.msg})") from None
    if not isinstance(content, dict) or content.get("version") != 1 or not isinstance(content.get("benchmarks"), dict):
        raise ValueError(f"{json_path}: not a contamination report of this cad-vi (no version 1 'benchmarks')")
    if not md_path.is_file():
        raise FileNotFoundError(f"{md_path}: the report's Markdown half is missing beside {json_path.name}")
    labels = [entry["label"] for entry in content["training"]]
    benchmarks = content["benchmarks"]
    if dataset == "cadinst" and not any(label.startswith("cadinst") for label in labels):
        raise ValueError(
            f"{json_path}: the report audits {', '.join(labels)}, not CaD-Inst: nothing to say in its card"
        )
    if dataset == "cadqa":
        if "cadqa" not in benchmarks:
            raise ValueError(f"{json_path}: the report does not audit CaD-QA (benchmarks: {', '.join(benchmarks)})")
        benchmarks = {"cadqa": benchmarks["cadqa"]}
    rows = [
        {
            "benchmark": name,
            "images": entry["images"],
            "images_seen": entry["images_seen"],
            "by_hash_only": entry["images_seen_by_hash_only"],
            "questions": entry["questions"],
            "contaminated": entry["questions_contaminated"],
        }
        for name, entry in benchmarks.items()
    ]
    return AuditReport(
        content.get("written", ""),
        content["training"],
        content.get("hash_threshold", 0),
        rows,
        {f"{AUDIT_FOLDER}/{name}": json_path.with_name(name) for name in REPORT_FILES},
    )
