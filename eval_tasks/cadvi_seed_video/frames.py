"""Which frames of a SEED-Bench video an image LMM sees: the original CaD-VI rule (taken from its code).

The CaD-VI repository (GitHub ``wlin-at/CaD-VI``, commit 884227a) ships SEED-Bench frame extractors:
``playground/data/eval/seed_bench/extract_video_frames_2frames.py`` (two frames) and
``extract_video_frames.py`` (one frame, LLaVA-1.5's "frame in the middle"). Both are the official
SEED-Bench extractor (``model/instruct_blip_interface.py`` of ``AILab-CVC/SEED-Bench``) with
``num_segments`` set to 2 or 1; :func:`official_offsets` is its ``get_index``::

    seg = (n - 1) / k;  offsets = [int(seg / 2) + round(seg * i) for i in range(k)]

(``round`` halves to even, like ``np.round``: n = 10, k = 2 gives [2, 6]). ``n`` and the first frame of
the clip come from :func:`clip_window`, per question type, exactly as those scripts do:

* type 10: the whole clip; ``n = len(video) - 1`` (the official code passes ``len - 1``);
* type 11: ``segment`` is in seconds: ``first = int(clamp(start * fps))``, ``last = int(clamp(end * fps))``
  with ``clamp`` to ``[0, len - 1]`` and ``fps`` the stream's average frame rate; ``n = last - first``;
* type 12: ``segment`` is in frames: ``first = start``, ``n = min(end, len) - start``.

One frame is therefore frame ``first + int((n - 1) / 2)``; two frames are ``first + int(seg / 2)`` and
``first + int(seg / 2) + round(seg)`` with ``seg = (n - 1) / 2``. Where the original would return fewer
frames than asked (a clip shorter than the number of frames) we repeat the last one, so a two-frame
prompt always has two images; an empty clip is an error.
"""

from __future__ import annotations

from collections.abc import Sequence


class EmptyClipError(ValueError):
    """A question whose clip has no frame to sample (segment outside the video)."""


def official_offsets(num_frames: int, num_segments: int) -> list[int]:
    """SEED-Bench's ``get_index`` (as in CaD-VI's extractors): uniform sampling, centre of each segment.

    Returns fewer than ``num_segments`` offsets (``range(num_frames)``) when the clip is shorter.
    """
    if num_segments > num_frames:
        return list(range(max(num_frames, 0)))
    seg_size = float(num_frames - 1) / num_segments
    start = int(seg_size / 2)
    return [start + round(seg_size * index) for index in range(num_segments)]


def sample_offsets(num_frames: int, num_segments: int) -> list[int]:
    """:func:`official_offsets`, padded with its last offset to exactly ``num_segments`` (our choice)."""
    if num_frames < 1:
        raise EmptyClipError(f"a clip of {num_frames} frames has no frame to sample")
    offsets = official_offsets(num_frames, num_segments)
    return offsets + [offsets[-1]] * (num_segments - len(offsets))


def clip_window(
    question_type: int, video_len: int, *, fps: float | None = None, segment: Sequence[float] | None = None
) -> tuple[int, int]:
    """``(first frame, n)`` of the clip a question is about, exactly as the original extractors compute it."""
    if question_type == 10:
        return 0, video_len - 1
    if segment is None or len(segment) != 2:
        raise ValueError(f"question type {question_type} needs a [start, end] segment, got {segment!r}")
    start, end = segment
    if question_type == 11:
        if fps is None or fps <= 0:
            raise ValueError(f"question type 11 needs the video's frame rate, got {fps!r}")
        first = int(min(max(start * fps, 0), video_len - 1))
        last = int(min(max(end * fps, 0), video_len - 1))
        return first, last - first
    if question_type == 12:
        first = int(start)
        return first, min(int(end), video_len) - first
    raise ValueError(f"question type {question_type} is not a SEED-Bench video type (10, 11, 12)")


def frame_indices(
    question_type: int,
    num_frames: int,
    video_len: int,
    *,
    fps: float | None = None,
    segment: Sequence[float] | None = None,
) -> list[int]:
    """The video frame indices fed to the model for one question (``num_frames`` of them)."""
    first, length = clip_window(question_type, video_len, fps=fps, segment=segment)
    try:
        offsets = sample_offsets(length, num_frames)
    except EmptyClipError:
        raise EmptyClipError(
            f"type {question_type} clip {segment!r} of a {video_len}-frame video has {length} frames to sample"
        ) from None
    return [first + offset for offset in offsets]
