"""``cadvi export``: a phase-1 run folder -> the CaD-Inst phase-1 release layout.

Writes ``json_files/phase1_instruct_data.json`` (the LLaVA JSON array of the original release),
which the CaD-Inst builder reads like the original files. Every row is checked with the same
validator the builder uses before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from builders.conversations import phase1_conversation
from builders.release.hub import atomic_output_dir
from builders.release.validate import ProblemCollector, cadinst_row_problems
from builders.runs import all_records

PHASE1_FILE = "json_files/phase1_instruct_data.json"


def export_phase1(run: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0, overwrite: bool = False) -> int:
    """Write the release layout of every valid record of ``run`` into ``out``; returns the row count.

    Rows are ordered by pair id, so the export is the same whatever the shard layout was.
    """
    records: dict[str, dict] = {}
    for record in all_records(run):
        records.setdefault(record["pair_id"], record)
    if not records:
        raise FileNotFoundError(f"no valid records in {str(run)!r} (records/shard-*.jsonl)")
    rows = [
        phase1_conversation(pair_id, tuple(r["images"]), tuple(r["captions"]), r["text"].strip(), seed=seed)
        for pair_id, r in sorted(records.items())
    ]
    problems = ProblemCollector()
    for number, row in enumerate(rows, start=1):
        problems.add_all(f"{run} (pair {row['id']})", number, cadinst_row_problems(row))
    problems.raise_if_any()
    with atomic_output_dir(Path(out), overwrite=overwrite) as staging:
        path = staging / PHASE1_FILE
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return len(rows)
