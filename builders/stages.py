"""The file-level stages of the phase-1 pipeline, as Python calls (the CLI wraps these).

captions files --:func:`nouns_stage`--> nouns.jsonl --:func:`pairs_stage`--> pairs.jsonl
--:func:`builders.phase1.run_phase1`--> run folder --:func:`builders.export.export_phase1`--> release.
Each stage reads the previous stage's file, so any one can be rerun or replaced on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builders.captions import DEFAULT_MAX_CAPTION_CHARS, Choose, ImageCaption, LongCaptions, read_captions
from builders.outputs import check_output_file
from builders.pair_file import PairRecord, write_pairs
from builders.release.sources import iter_json_records, readable_file, write_jsonl
from builders.release.validate import ProblemCollector

if TYPE_CHECKING:  # numba-backed: imported only when pairs are mined
    from builders.pairs import PairingConfig, PairingReport


@dataclass(frozen=True)
class NounRecord:
    image: str
    caption: str
    source: str
    nouns: tuple[str, ...]


def nouns_stage(
    captions: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    fmt: str = "auto",
    choose: Choose = "first",
    model: str | None = None,
    stop_nouns: Sequence[str] = (),
    processes: int = 1,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
    max_caption_chars: int = DEFAULT_MAX_CAPTION_CHARS,
    long_captions: LongCaptions = "error",
) -> list[NounRecord]:
    """Caption files -> ``out`` (JSONL of image, caption, source, nouns), one row per image.

    Nouns are cached by content hash in ``cache_dir`` (default: beside ``out``), so a rerun or
    a run over more captions only computes the new ones. Captions longer than ``max_caption_chars``
    are problems, skipped or truncated (``long_captions``; see :func:`builders.captions.read_captions`).
    """
    from builders import nouns

    paths = [captions] if isinstance(captions, str | os.PathLike) else list(captions)
    check_output_file(out, paths)
    images: list[ImageCaption] = read_captions(
        paths,
        fmt=fmt,  # type: ignore[arg-type]
        choose=choose,
        max_chars=max_caption_chars,
        long_captions=long_captions,
    )
    out = Path(out)
    cache = Path(cache_dir) if cache_dir else out.parent / ".nouns-cache"
    lists = nouns.cached_extract_nouns(
        [c.caption for c in images],
        cache,
        model=model or nouns.DEFAULT_MODEL,
        stop_nouns=stop_nouns,
        processes=processes,
        progress=progress,
    )
    records = [NounRecord(c.image, c.caption, c.source, tuple(n)) for c, n in zip(images, lists, strict=True)]
    write_jsonl((asdict(record) for record in records), out)
    return records


def read_noun_records(path: str | os.PathLike) -> list[NounRecord]:
    problems = ProblemCollector()
    records = []
    for row, item in iter_json_records(readable_file(path, "nouns"), problems):
        try:
            records.append(NounRecord(item["image"], item["caption"], item.get("source", ""), tuple(item["nouns"])))
        except (KeyError, TypeError) as error:
            problems.add(str(path), row, f"not a nouns record (missing {error})")
    if not records and not problems:
        problems.add(str(path), None, "no nouns records in this file (run `cadvi nouns` first)")
    problems.raise_if_any()
    return records


def pairs_stage(
    nouns_file: str | os.PathLike,
    out: str | os.PathLike,
    *,
    config: PairingConfig | None = None,
    min_shared: int | None = None,
    max_uses_per_image: int | None = None,
    max_pairs: int | None = None,
    seed: int = 0,
) -> tuple[list[PairRecord], PairingReport]:
    """nouns.jsonl -> pairs.jsonl; stratified phase-1 pairs, or threshold pairs with ``min_shared``.

    Returns ``(pairs, report)``; the report says how many candidates and pairs each bin had.
    """
    from builders.pairs import NounSets, PairingConfig, mine_pairs, mine_threshold_pairs

    check_output_file(out, [nouns_file])
    records = read_noun_records(nouns_file)
    sets = NounSets.from_lists([r.nouns for r in records])
    if min_shared is not None:
        found, report = mine_threshold_pairs(
            sets, min_shared=min_shared, max_uses_per_image=max_uses_per_image or 4, max_pairs=max_pairs, seed=seed
        )
    else:
        found, report = mine_pairs(sets, config or PairingConfig(seed=seed))
    pairs = [
        PairRecord(
            PairRecord.make_id(records[p.first].image, records[p.second].image),
            (records[p.first].image, records[p.second].image),
            (records[p.first].caption, records[p.second].caption),
            tuple(p.shared),
            p.bin,
            (records[p.first].source, records[p.second].source),
        )
        for p in found
    ]
    write_pairs(pairs, out)
    return pairs, report
