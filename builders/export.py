"""``cadvi export``: a phase-1 run folder -> the CaD-Inst phase-1 release layout.

Writes ``json_files/phase1_instruct_data.json`` (the LLaVA JSON array of the original release),
which the CaD-Inst builder reads like the original files, and ``cadvi_provenance.json``: what the
rows were generated with (model, backend, template and its hash, sampling, input files, caption
sources), read from the run's manifest and records. The dataset card of a build from this folder
states those facts, not the original release's. Every row is checked with the same validator the
builder uses before anything is written.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from builders.conversations import phase1_conversation
from builders.outputs import atomic_output_dir, refuse_output_over_sources
from builders.release.origin import package_version
from builders.release.validate import ProblemCollector, cadinst_row_problems
from builders.runs import all_records, read_manifest

PHASE1_FILE = "json_files/phase1_instruct_data.json"
PROVENANCE = "cadvi_provenance.json"


def export_phase1(run: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0, overwrite: bool = False) -> int:
    """Write the release layout of every valid record of ``run`` into ``out``; returns the row count.

    Rows are ordered by pair id, so the export is the same whatever the shard layout was.
    """
    refuse_output_over_sources(out, [run], what="export")
    manifest = read_manifest(run)
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
    provenance = phase1_provenance(manifest, list(records.values()), seed=seed)
    with atomic_output_dir(Path(out), overwrite=overwrite, sources=[run], kind="export") as staging:
        path = staging / PHASE1_FILE
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        (staging / PROVENANCE).write_text(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return len(rows)


def phase1_provenance(manifest: dict[str, Any], records: list[dict[str, Any]], *, seed: int) -> dict[str, Any]:
    """What a card may say about regenerated phase-1 rows: facts of the run, never a local path."""
    identity = manifest["identity"]
    images: dict[str, str] = {}
    for record in records:
        for name, source in zip(record["images"], record.get("sources") or [None, None], strict=False):
            images.setdefault(name, source or "unknown")
    return {
        "kind": "regenerated",
        "phases": {
            "phase1": {
                "rows": len(records),
                "stage": identity.get("stage", "phase1"),
                "model": public_model_name(str(identity.get("model"))),
                "backend": identity.get("backend"),
                "template": Path(str(identity.get("template"))).name,
                "template_sha256": identity.get("template_sha256"),
                "sampling": identity.get("sampling"),
                "system_prompt": identity.get("system_prompt") is not None,
                "inputs": [{"file": Path(i["path"]).name, "sha256": i["sha256"]} for i in manifest["inputs"]],
                "caption_sources": dict(Counter(images.values()).most_common()),
                "turn2_seed": seed,
            }
        },
        "tool": {"name": "cad-vi", "version": package_version()},
    }


def public_model_name(model: str) -> str:
    """A model as a card may name it: a Hub id as is, a local folder by its name only (no local path)."""
    path = Path(model).expanduser()
    if path.is_absolute() or model.startswith((".", "~")) or path.exists():
        return f"{path.name} (a local model folder)"
    return model


def read_provenance(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance of an exported folder, or None for files that did not come from ``cadvi export``."""
    path = Path(folder) / PROVENANCE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
