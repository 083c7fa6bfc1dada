"""``cadvi export``: a phase-1 or phase-2 run folder -> the CaD-Inst release layout.

Writes ``json_files/phase1_instruct_data.json`` or ``json_files/phase2_instruct_data.json`` (the LLaVA
JSON arrays of the original release), which the CaD-Inst builder reads like the original files (configs
``phase1``, ``phase2``; ``--add`` puts phase 2 beside an earlier phase-1 export), and
``cadvi_provenance.json``: what the rows were generated with (model, backend, template and its hash,
sampling, input files, caption sources), read from the run's manifest and records. The dataset card
of a build from this folder states those facts, not the original release's. Every row is checked with
the same validator the builder uses before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from builders.conversations import phase1_conversation
from builders.outputs import MARKER, atomic_output_dir, refuse_output_over_sources
from builders.release.origin import package_version
from builders.release.validate import ProblemCollector, cadinst_row_problems, cadqa_row_problems
from builders.runs import all_records, read_manifest
from prompts import render

PHASE1_FILE = "json_files/phase1_instruct_data.json"
PHASE2_FILE = "json_files/phase2_instruct_data.json"
CADQA_FILE = "json_files/CaD_QA_eval.jsonl"
CADQA_SCOPES = "question_scopes.json"
CADQA_STATISTICS = "statistics.md"
PROVENANCE = "cadvi_provenance.json"


def export_phase1(run: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0, overwrite: bool = False) -> int:
    """Write the release layout of every valid record of ``run`` into ``out``; returns the row count.

    Rows are ordered by pair id, so the export is the same whatever the shard layout was.
    """
    records = _records(run, out)
    rows = [
        phase1_conversation(pair_id, tuple(r["images"]), tuple(r["captions"]), r["text"].strip(), seed=seed)
        for pair_id, r in sorted(records.items())
    ]
    provenance = phase1_provenance(read_manifest(run), list(records.values()), seed=seed)
    return _write(run, out, PHASE1_FILE, rows, provenance, overwrite=overwrite)


def export_phase2(run: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False, add: bool = False) -> int:
    """Write a phase-2 run's summaries as the release's phase-2 rows (one CaD turn each); returns the row count.

    ``add``: put the phase-2 file into ``out``, an earlier ``cadvi export`` folder (phase 1), keeping its
    files and adding phase 2 to its provenance, so one folder builds config ``all``.
    """
    records = _records(run, out)
    rows = [
        {
            "id": pair_id,
            "image": list(record["image_names"]),
            "conversations": [
                {"from": "human", "value": render("conversation_cad.jinja")},
                {"from": "gpt", "value": record["text"].strip()},
            ],
        }
        for pair_id, record in sorted(records.items())
    ]
    phase = _phase_facts(read_manifest(run), len(records), "phase2")
    phase["mode"] = read_manifest(run)["identity"].get("mode")
    phase["caption_sources"] = {"MIMIC-IT CGD annotations (refined)": len(records)}
    provenance = _provenance({"phase2": phase})
    if add:
        earlier = read_provenance(out)
        if earlier is None or not (Path(out) / PHASE1_FILE).is_file():
            raise FileNotFoundError(f"--add: {str(out)!r} is not an earlier `cadvi export phase1` folder")
        provenance["phases"] = {**earlier["phases"], **provenance["phases"]}
    return _write(run, out, PHASE2_FILE, rows, provenance, overwrite=overwrite or add, keep=add)


def export_cadqa(
    run: str | os.PathLike,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    official: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> int:
    """A CaD-QA stage-2 run -> ``json_files/CaD_QA_eval.jsonl`` in the official shape, one Q&A per pair.

    Beside it: ``question_scopes.json`` (each question about ``one`` image or ``both``) and the provenance,
    which holds the statistics of the rows and, with ``official`` (the official file), the official
    file's, so the dataset card can show them side by side; ``statistics.md`` is that table.
    """
    from builders.cadqa_stats import is_single_image_question, official_statistics, qa_statistics, statistics_table
    from builders.cadqa_task import official_row

    records = _records(run, out)
    rows = [official_row(record, seed) for _, record in sorted(records.items())]
    phase = _phase_facts(read_manifest(run), len(rows), "cadqa")
    phase["pick_seed"] = seed
    phase["caption_sources"] = {"captions + CaD summaries (stage 1)": len(rows)}
    provenance = _provenance({"cadqa": phase})
    provenance["statistics"] = {"ours": qa_statistics(rows)}
    if official is not None:
        provenance["statistics"]["official"] = official_statistics(official)
    scopes = {
        row["question_id"]: "one" if is_single_image_question(row["text"].split("\n", 2)[2]) else "both" for row in rows
    }
    extra = {CADQA_SCOPES: json.dumps(scopes, indent=1) + "\n"}
    if official is not None:  # how close the regeneration is, as a table (the card shows the same figures)
        extra[CADQA_STATISTICS] = statistics_table(
            provenance["statistics"]["ours"], provenance["statistics"]["official"]
        )
    return _write(run, out, CADQA_FILE, rows, provenance, overwrite=overwrite, lines=True, extra=extra)


def _records(run: str | os.PathLike, out: str | os.PathLike) -> dict[str, dict]:
    refuse_output_over_sources(out, [run], what="export")
    records: dict[str, dict] = {}
    for record in all_records(run):
        records.setdefault(record["pair_id"], record)
    if not records:
        raise FileNotFoundError(f"no valid records in {str(run)!r} (records/shard-*.jsonl)")
    return records


def _write(
    run: str | os.PathLike,
    out: str | os.PathLike,
    name: str,
    rows: list[dict[str, Any]],
    provenance: dict[str, Any],
    *,
    overwrite: bool,
    keep: bool = False,
    lines: bool = False,
    extra: dict[str, str] | None = None,
) -> int:
    """Check every row with the builder's validator, then write ``name`` (a JSON array, or JSON Lines with
    ``lines``), ``extra`` files and the provenance, atomically."""
    problems = ProblemCollector()
    for number, row in enumerate(rows, start=1):
        if lines:
            problems.add_all(f"{run} (pair {row['question_id']})", number, cadqa_row_problems(row))
        else:
            problems.add_all(f"{run} (pair {row['id']})", number, cadinst_row_problems(row))
    problems.raise_if_any()
    with atomic_output_dir(Path(out), overwrite=overwrite, sources=[run], kind="export") as staging:
        if keep:  # the earlier export's files come along (its marker is rewritten by atomic_output_dir)
            shutil.copytree(out, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MARKER))
        path = staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if lines:
            path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        else:
            path.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        for extra_name, text in (extra or {}).items():
            (staging / extra_name).write_text(text, encoding="utf-8")
        (staging / PROVENANCE).write_text(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return len(rows)


def phase1_provenance(manifest: dict[str, Any], records: list[dict[str, Any]], *, seed: int) -> dict[str, Any]:
    """What a card may say about regenerated phase-1 rows: facts of the run, never a local path."""
    images: dict[str, str] = {}
    for record in records:
        for name, source in zip(record["images"], record.get("sources") or [None, None], strict=False):
            images.setdefault(name, source or "unknown")
    phase = _phase_facts(manifest, len(records), "phase1")
    phase["system_prompt"] = manifest["identity"].get("system_prompt") is not None
    phase["caption_sources"] = dict(Counter(images.values()).most_common())
    phase["turn2_seed"] = seed
    return _provenance({"phase1": phase})


def _phase_facts(manifest: dict[str, Any], rows: int, stage: str) -> dict[str, Any]:
    identity = manifest["identity"]
    return {
        "rows": rows,
        "stage": identity.get("stage", stage),
        "model": public_model_name(str(identity.get("model"))),
        "backend": identity.get("backend"),
        "template": Path(str(identity.get("template"))).name,
        "template_sha256": identity.get("template_sha256"),
        "sampling": identity.get("sampling"),
        "inputs": [{"file": Path(i["path"]).name, "sha256": i["sha256"]} for i in manifest["inputs"]],
    }


def _provenance(phases: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "regenerated", "phases": phases, "tool": {"name": "cad-vi", "version": package_version()}}


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
