"""From what a dataset needs to what to download, and the manifest of what stayed missing and why.

The files land under the folder exactly as the dataset names them (``VG_100K/2550.jpg``,
``COCO_val2014_000000143961.jpg``), so the folder is the dataset's ``image_roots`` as it is. The folder is
the state: a final file only exists complete and verified (:mod:`builders.images.download`), so a rerun
fetches exactly what is not there yet, and a killed run's ``.part`` files are resumed by range.

The manifest (``cadvi-fetch-<dataset>.json`` in the folder, written atomically after every run) counts what is
there and lists every missing file with its reason: a download that failed, an image no annotation file
given lists, or a source with no per-image URLs (and where to get those by hand).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from builders.images.download import FetchJob, FetchOutcome
from builders.images.needs import MANUAL, Need
from builders.images.sources import KINDS, ImageSources
from builders.outputs import write_text_atomically

__all__ = ["FetchPlan", "UnknownSourceError", "manifest", "manifest_path", "plan_fetch", "write_manifest"]

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Unfetchable:
    """A needed file that no given source can fetch, and why (also how to get it by hand)."""

    name: str
    identity: str
    reason: str

    @property
    def why(self) -> str:
        """The reason's kind, for the manifest's counts."""
        if self.reason.startswith("no per-image URL"):
            return "no per-image URL published"
        if self.reason.startswith("not in"):
            return "not in the annotation files given"
        return "no annotation file given"


class UnknownSourceError(ValueError):
    """An image asked for by name that the dataset does not list, or that no given source can fetch."""


@dataclass(frozen=True)
class FetchPlan:
    jobs: list[FetchJob]
    unfetchable: list[Unfetchable]
    identities: dict[str, str]  # name -> identity, for the manifest

    def only(self, names: Sequence[str]) -> FetchPlan:
        """The plan for ``names`` alone; a name the dataset does not list, or no source can fetch, is an error."""
        unknown = [name for name in names if name not in self.identities]
        if unknown:
            raise UnknownSourceError(f"{unknown[0]}: the dataset lists no image of that name")
        for entry in self.unfetchable:
            if entry.name in names:
                raise UnknownSourceError(f"{entry.name} ({entry.identity}): no source knows it: {entry.reason}")
        wanted = set(names)
        jobs = [job for job in self.jobs if job.name in wanted]
        return FetchPlan(jobs, [], {name: self.identities[name] for name in names})


def _no_source_reason(identity: str, given: set[str]) -> str:
    source = identity.split(":", 1)[0]
    if source in MANUAL:
        return f"no per-image URL is published: {MANUAL[source]}"
    kinds = [kind for kind, (_, serves, _) in KINDS.items() if serves == source]
    if kinds and kinds[0] in given:
        return f"not in the --{kinds[0]} file(s) given"
    if kinds:
        return f"give the {KINDS[kinds[0]][0]} with --{kinds[0]}"
    return f"no source is known for {source!r} images"


def plan_fetch(needs: Sequence[Need], sources: ImageSources, given_kinds: set[str]) -> FetchPlan:
    """One :class:`FetchJob` per needed file a source lists, and the rest as :class:`Unfetchable`."""
    jobs, unfetchable = [], []
    for need in needs:
        candidates = sources.locations.get(need.identity)
        if candidates:
            jobs.append(FetchJob(need.name, candidates))
        else:
            unfetchable.append(Unfetchable(need.name, need.identity, _no_source_reason(need.identity, given_kinds)))
    return FetchPlan(jobs, unfetchable, {need.name: need.identity for need in needs})


def manifest_path(folder: Path, dataset: str) -> Path:
    return Path(folder) / f"cadvi-fetch-{dataset}.json"


def manifest(
    dataset: str, data: Sequence[str], plan: FetchPlan, outcomes: Sequence[FetchOutcome], sources: ImageSources
) -> dict[str, Any]:
    """The manifest of one run: counts, what is missing and why, and what this run downloaded."""
    status = Counter(outcome.status for outcome in outcomes)
    missing = [
        {
            "name": o.name,
            "identity": plan.identities[o.name],
            "why": "download failed" if o.retryable else "source refused",
            "reason": o.reason or "failed",
            "attempts": o.attempts,
        }
        for o in outcomes
        if o.status == "missing"
    ] + [{**asdict(u), "why": u.why} for u in plan.unfetchable]
    by_reason = Counter(entry["why"] for entry in missing)
    return {
        "version": MANIFEST_VERSION,
        "dataset": dataset,
        "data": list(data),
        "annotation_files": sources.files,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "needed": len(plan.identities),
        "complete": status["present"] + status["downloaded"] + status["linked"],
        "counts": {
            "present": status["present"],
            "downloaded": status["downloaded"],
            "linked": status["linked"],
            "missing": len(missing),
        },
        "received_bytes": sum(o.received for o in outcomes),
        "missing_by_reason": dict(by_reason.most_common()),
        "missing": sorted(missing, key=lambda entry: entry["name"]),
        "downloaded": [
            {"name": o.name, "url": o.url, "sha256": o.sha256, "attempts": o.attempts}
            for o in sorted(outcomes, key=lambda o: o.name)
            if o.status in ("downloaded", "linked")
        ],
    }


def write_manifest(path: Path, content: dict[str, Any]) -> Path:
    return write_text_atomically(path, json.dumps(content, indent=1, ensure_ascii=False) + "\n")
