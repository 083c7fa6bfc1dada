"""SEED-Bench's videos (or pre-extracted frames): where they are, and decoding the frames the rule picks.

Videos (never shipped)
    The official releases of each source, under one root per source, where the question's ``data_id`` is
    the path below that root (as in the official ``eval.py``): ``CADVI_SEED_SSV2_ROOT`` (``94328.webm``),
    ``CADVI_SEED_EPIC_KITCHENS_ROOT`` (``P03/P03_24.MP4``; a flat folder of ``P03_24.MP4`` works too) and
    ``CADVI_SEED_BREAKFAST_ROOT`` (``P06/cam01/P06_cereals.avi``, the 15 fps ``BreakfastII_15fps_qvga_sync``
    release: type-12 segments count frames of it). Unset, they default to ``SSv2/``, ``Epic_kitchen/`` and
    ``Breakfast/`` under ``CADVI_SEED_VIDEO_ROOT`` (the original's own folder names), else under
    ``$CADVI_EVAL_IMAGE_ROOT/seed_video/``. Every video is checked when the docs are built: a missing one
    fails before any model runs, naming the benchmark, the root and the file.

Decoding
    As the originals: decord for types 10 and 11 (its frame count and average fps), PyAV for type 12
    (frames counted by decoding); which frames: :mod:`eval_tasks.cadvi_seed_video.frames`.

Pre-extracted frames
    ``CADVI_SEED_FRAMES_ROOT=<folder>`` reads frames instead of videos, in the original's flat layout:
    ``<type>_<question_id>.png`` (one frame, e.g. ``10_v1738.png``, LLaVA-1.5's ``SEED-Bench-video-image``
    layout) and ``<type>_<question_id>_0.png`` / ``_1.png`` (two frames, ``extract_video_frames_2frames.py``);
    ``.jpg`` is accepted too. ``python -m eval_tasks.cadvi_seed_video.utils --frames 2 --out DIR`` writes
    that layout from the videos (:mod:`eval_tasks.cadvi_seed_video.extract`; SEED-Bench's own
    ``v1_video.zip`` holds 8 frames per question, sampled with ``k = 8``; they do not in general include
    these frames, so they cannot stand in for them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from builders.release.validate import checked_relative_name
from eval_tasks.cadvi_seed_video.frames import EmptyClipError, frame_indices
from eval_tasks.cadvi_seed_video.questions import BENCHMARK, QUESTION_TYPES
from eval_tasks.images import IMAGE_ROOT_ENV, MissingBenchmarkImageError

VIDEO_ROOT_ENV = "CADVI_SEED_VIDEO_ROOT"
FRAMES_ROOT_ENV = "CADVI_SEED_FRAMES_ROOT"
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


def _decord_frames(path: Path, question_type: int, num_frames: int, segment: Sequence[float] | None) -> list:
    """Types 10 and 11, as the original: decord's frame count and average frame rate."""
    from decord import VideoReader, cpu
    from PIL import Image

    reader = VideoReader(str(path), num_threads=1, ctx=cpu(0))
    indices = frame_indices(question_type, num_frames, len(reader), fps=reader.get_avg_fps(), segment=segment)
    batch = reader.get_batch(indices).asnumpy()
    return [Image.fromarray(frame).convert("RGB") for frame in batch]


def _pyav_frames(path: Path, num_frames: int, segment: Sequence[float]) -> list:
    """Type 12, as the original: PyAV, the video's length counted by decoding.

    The original decodes the whole video into memory; we stop at the segment's end, which gives the
    same frames: ``min(end, len)`` is ``end`` as soon as frame ``end - 1`` exists. Only if the video is
    shorter than the segment does a second pass fetch the frames of the shortened clip.
    """
    end = int(segment[1])
    wanted = frame_indices(12, num_frames, end, segment=segment)  # correct whenever len(video) >= end
    frames, decoded = _decode_pyav(path, set(wanted), stop=end)
    if decoded < end:
        wanted = frame_indices(12, num_frames, decoded, segment=segment)
        frames, _ = _decode_pyav(path, set(wanted), stop=decoded)
    return [frames[index] for index in wanted]


def _decode_pyav(path: Path, wanted: set[int], stop: int) -> tuple[dict[int, Any], int]:
    """The ``wanted`` frames (PIL, RGB) of the first ``stop`` frames, and how many frames were decoded."""
    import av

    frames: dict[int, Any] = {}
    decoded = 0
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames[index] = frame.to_image().convert("RGB")
            decoded = index + 1
            if decoded >= stop:
                break
    return frames, decoded


def video_frames(path: str | Path, question_type: int, num_frames: int, segment: Sequence[float] | None) -> list:
    """The question's ``num_frames`` frames (PIL, RGB), decoded from ``path``."""
    path = Path(path)
    try:
        if question_type == 12:
            if segment is None:
                raise ValueError("question type 12 needs a [start, end] segment")
            return _pyav_frames(path, num_frames, segment)
        return _decord_frames(path, question_type, num_frames, segment)
    except EmptyClipError as error:
        raise EmptyClipError(f"{BENCHMARK}: {path}: {error}") from None
    except Exception as error:  # decord / PyAV errors name neither the benchmark nor always the file
        raise RuntimeError(f"{BENCHMARK}: could not decode {path} ({type(error).__name__}: {error})") from error


def video_root(question_type: int) -> Path:
    """The folder that ``data_id`` of this question type is relative to (see the module docstring)."""
    spec = QUESTION_TYPES[question_type]
    if os.environ.get(spec.root_env):
        return Path(os.environ[spec.root_env]).expanduser()
    if os.environ.get(VIDEO_ROOT_ENV):
        return Path(os.environ[VIDEO_ROOT_ENV]).expanduser() / spec.default_folder
    if os.environ.get(IMAGE_ROOT_ENV):
        return Path(os.environ[IMAGE_ROOT_ENV]).expanduser() / BENCHMARK / spec.default_folder
    raise MissingBenchmarkImageError(
        f"{BENCHMARK}: no video root for question type {question_type} ({spec.title}); set {spec.root_env} to "
        f"the folder of the {spec.source}, or {VIDEO_ROOT_ENV} to a folder holding '{spec.default_folder}/', "
        f"or {FRAMES_ROOT_ENV} to pre-extracted frames"
    )


def find_video(question: dict[str, Any], root: Path) -> Path:
    """The question's video under ``root`` (``data_id``, else its file name); a clear error if absent."""
    spec = QUESTION_TYPES[question["question_type_id"]]
    relative = checked_relative_name(question["data_id"])
    for candidate in (relative, Path(relative.name)):
        path = root.joinpath(*candidate.parts)
        if path.is_file():
            return path
    raise MissingBenchmarkImageError(
        f"{BENCHMARK}: video {question['data_id']!r} (question {question['question_id']!r}, type "
        f"{spec.type_id} {spec.title}) is not in the video root {str(root)!r}; expected: {spec.source} "
        f"(set {spec.root_env})"
    )


class VideoFinder:
    """Each question's video under its type's root; every root is checked to be a folder once."""

    def __init__(self) -> None:
        self._roots: dict[int, Path] = {}

    def __call__(self, question: dict[str, Any]) -> Path:
        type_id = question["question_type_id"]
        if type_id not in self._roots:
            root = video_root(type_id)
            if not root.is_dir():
                spec = QUESTION_TYPES[type_id]
                raise MissingBenchmarkImageError(
                    f"{BENCHMARK}: video root {str(root)!r} for type {type_id} ({spec.title}) is not a folder "
                    f"(set {spec.root_env}; expected: {spec.source})"
                )
            self._roots[type_id] = root
        return find_video(question, self._roots[type_id])


def frame_names(question: dict[str, Any], num_frames: int) -> list[str]:
    """File stems of the pre-extracted frames (the original CaD-VI / LLaVA-1.5 layout)."""
    stem = f"{question['question_type_id']}_{question['question_id']}"
    return [stem] if num_frames == 1 else [f"{stem}_{index}" for index in range(num_frames)]


def find_frames(question: dict[str, Any], num_frames: int, root: Path) -> list[str]:
    paths = []
    for stem in frame_names(question, num_frames):
        found = next(
            (root / f"{stem}{suffix}" for suffix in FRAME_SUFFIXES if (root / f"{stem}{suffix}").is_file()), None
        )
        if found is None:
            raise MissingBenchmarkImageError(
                f"{BENCHMARK}: frame {stem}.png (question {question['question_id']!r}) is not in the frames root "
                f"{str(root)!r} ({FRAMES_ROOT_ENV}); expected <type>_<question_id>[_<k>].png|.jpg"
            )
        paths.append(str(found))
    return paths
