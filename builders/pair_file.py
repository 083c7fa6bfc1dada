"""The pairs file between the pairing and generation stages (JSON Lines, one pair per line)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from builders.release.sources import iter_json_records, readable_file, write_jsonl
from builders.release.validate import ProblemCollector, UnsafeImageNameError, checked_relative_name


@dataclass(frozen=True)
class PairRecord:
    """Two images, their captions, and what made them a pair."""

    pair_id: str
    images: tuple[str, str]
    captions: tuple[str, str]
    shared_nouns: tuple[str, ...] = ()
    bin: str = ""
    sources: tuple[str, ...] = ()  # the caption source of each image ("coco", "open_images", ...), if known

    @staticmethod
    def make_id(first: str, second: str) -> str:
        """``<stem 1>_<stem 2>``, as CaD-QA's question ids are made."""
        return f"{Path(first).stem}_{Path(second).stem}"


def write_pairs(pairs: Iterable[PairRecord], path: str | os.PathLike) -> Path:
    return write_jsonl((asdict(pair) for pair in pairs), path)


def read_pairs(path: str | os.PathLike) -> list[PairRecord]:
    """Pairs of a pairs file; every bad line is reported at once as ``file:row: reason``."""
    path = readable_file(path, "pairs")
    problems = ProblemCollector()
    pairs = []
    for row, record in iter_json_records(path, problems):
        try:
            pair = PairRecord(
                record["pair_id"],
                _two(record["images"]),
                _two(record["captions"]),
                tuple(record.get("shared_nouns", ())),
                str(record.get("bin", "")),
                tuple(str(source) for source in record.get("sources", ())),
            )
            for name in pair.images:
                checked_relative_name(name)
        except (KeyError, TypeError, ValueError, UnsafeImageNameError) as error:
            problems.add(str(path), row, f"not a pair record ({type(error).__name__}: {error})")
            continue
        problems.check_unique(str(path), row, "pair_id", pair.pair_id)
        pairs.append(pair)
    if not pairs and not problems:
        problems.add(str(path), None, "no pairs in this file (run `cadvi pairs` first)")
    problems.raise_if_any()
    return pairs


def _two(values: Sequence[str]) -> tuple[str, str]:
    if not isinstance(values, list) or len(values) != 2 or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"expected two non-empty strings, got {values!r}")
    return values[0], values[1]
