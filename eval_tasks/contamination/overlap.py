"""Which benchmark images a training set has seen: by canonical identity, and by perceptual hash.

Identity first (:mod:`builders.images.identity`): every name of both sides is read under its dataset's
naming schemes and joined through Visual Genome's COCO/Flickr links, so ``COCO_val2014_000000143961.jpg``
(BISON) meets ``000000143961.jpg`` (CaD-Inst phase 2) and ``0_2390970.jpg`` (COLA) meets
``VG_100K/2390970.jpg`` (CaD-QA) or, through ``coco_id``, a COCO file name. Then, where image folders are
given for both sides, perceptual hashes (:mod:`builders.images.phash`) find the copies no name gives away
(resized, re-encoded, renamed). A question is contaminated when any of its images was seen.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.images.identity import Links, identify, schemes_of
from builders.images.needs import Need
from builders.images.phash import DEFAULT_THRESHOLD, HashCache, hash_files, near_duplicates
from builders.release.images import ImageResolver

__all__ = ["BenchmarkImages", "BenchmarkOverlap", "Match", "Overlaps", "TrainingSet", "find_overlaps"]

EXAMPLES = 10


@dataclass
class TrainingSet:
    """The images of one training set (``label``: its kind, e.g. ``cadinst-phase2``) and where its files are."""

    label: str
    files: list[str]
    needs: list[Need]
    image_roots: list[Path] = field(default_factory=list)


@dataclass
class BenchmarkImages:
    """A benchmark's questions (its question-file rows by ``question_id``) and, optionally, its image folder."""

    name: str
    file: str
    rows: dict[str, dict[str, Any]]  # question_id -> its row of the question file
    image_root: Path | None = None
    candidate_names: Callable[[str], Sequence[str]] = lambda name: [name]

    @property
    def questions(self) -> dict[str, list[str]]:
        """question_id -> its image names."""
        return {question: list(row["image"]) for question, row in self.rows.items()}

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(name for names in self.questions.values() for name in names))


@dataclass(frozen=True)
class Match:
    """One benchmark image seen in a training set: how (``identity`` or ``hash``) and as which file."""

    benchmark_image: str
    training_set: str
    training_image: str
    how: str
    identity: str | None = None
    distance: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value is not None}


@dataclass
class HashStats:
    """How many of one side's images were hashed, had no file, or could not be read (and why)."""

    hashed: int = 0
    missing: int = 0  # names with no file under the image folders
    unreadable: dict[str, str] = field(default_factory=dict)


@dataclass
class BenchmarkOverlap:
    """A benchmark's seen images (name -> its matches) and, when its folder was given, its hashing counts."""

    matches: dict[str, list[Match]]
    hash_stats: HashStats | None


@dataclass
class Overlaps:
    benchmarks: dict[str, BenchmarkOverlap]
    training_hashes: dict[str, HashStats]


def _identity_index(training: Sequence[TrainingSet], links: Links) -> dict[str, list[tuple[str, str]]]:
    """canonical identity -> [(training set, first file name with it)], one entry per training set."""
    index: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for train in training:
        for need in train.needs:
            entries = index[links.canonical(need.identity)]
            if not entries or entries[-1][0] != train.label:
                entries.append((train.label, need.name))
    return index


def _files(names: Sequence[str], resolve: Callable[[str], Path | None], stats: HashStats) -> dict[str, str]:
    """name -> absolute file path, for the names found under the folders."""
    found = {}
    for name in names:
        path = resolve(name)
        if path is None:
            stats.missing += 1
        else:
            found[name] = str(path.resolve())
    return found


def _benchmark_resolver(benchmark: BenchmarkImages) -> Callable[[str], Path | None]:
    resolver = ImageResolver([benchmark.image_root])

    def resolve(name: str) -> Path | None:
        for candidate in benchmark.candidate_names(name):
            path = resolver.resolve(candidate)
            if path is not None:
                return path
        return None

    return resolve


def find_overlaps(
    training: Sequence[TrainingSet],
    benchmarks: Sequence[BenchmarkImages],
    *,
    links: Links,
    threshold: int = DEFAULT_THRESHOLD,
    cache: HashCache | None = None,
    on_progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> Overlaps:
    """Every benchmark's matches (by identity; by hash where not by identity) and the hashing counts.

    ``on_progress(label, total)`` is called before the files of a side are hashed and returns the callback
    that hashing advances (the command's progress bar).
    """
    index = _identity_index(training, links)
    train_hashes: dict[str, int] = {}
    train_name_of: dict[str, tuple[str, str]] = {}  # file path -> (training set, name)
    train_stats: dict[str, HashStats] = {}
    hashing = [b for b in benchmarks if b.image_root is not None]
    for train in training:
        if not (train.image_roots and hashing):
            continue
        stats = train_stats[train.label] = HashStats()
        files = _files([need.name for need in train.needs], ImageResolver(train.image_roots).resolve, stats)
        progress = on_progress(train.label, len(files)) if on_progress else None
        hashes, stats.unreadable = hash_files(files.values(), cache=cache, on_progress=progress)
        stats.hashed = len(hashes)
        train_hashes.update(hashes)
        for name, path in files.items():
            train_name_of.setdefault(path, (train.label, name))

    results: dict[str, BenchmarkOverlap] = {}
    for benchmark in benchmarks:
        schemes = schemes_of(benchmark.name)
        matches: dict[str, list[Match]] = defaultdict(list)
        for name in benchmark.names:
            identity = identify(name, schemes)
            for label, train_name in index.get(links.canonical(identity), ()):
                matches[name].append(Match(name, label, train_name, "identity", identity=identity))
        stats = HashStats()
        if benchmark.image_root is not None and train_hashes:
            files = _files(benchmark.names, _benchmark_resolver(benchmark), stats)
            progress = on_progress(benchmark.name, len(files)) if on_progress else None
            hashes, stats.unreadable = hash_files(files.values(), cache=cache, on_progress=progress)
            stats.hashed = len(hashes)
            name_of = {path: name for name, path in files.items()}
            for path, train_path, distance in near_duplicates(hashes, train_hashes, threshold=threshold):
                name = name_of[path]
                label, train_name = train_name_of[train_path]
                if any(m.training_set == label and m.how == "identity" for m in matches[name]):
                    continue  # already seen under its name
                if not any(m.training_set == label and m.how == "hash" for m in matches[name]):
                    matches[name].append(Match(name, label, train_name, "hash", distance=distance))
        results[benchmark.name] = BenchmarkOverlap(dict(matches), stats if benchmark.image_root is not None else None)
    return Overlaps(results, train_stats)
