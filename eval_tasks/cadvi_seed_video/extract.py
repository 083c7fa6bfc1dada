"""Decode once, evaluate many times: write every question's frames in the ``CADVI_SEED_FRAMES_ROOT`` layout.

Run as ``python -m eval_tasks.cadvi_seed_video.utils --frames 2 --out DIR`` (the documented command) or
``python -m eval_tasks.cadvi_seed_video.extract``; then evaluate with ``CADVI_SEED_FRAMES_ROOT=DIR``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from eval_tasks.cadvi_seed_video.questions import read_questions
from eval_tasks.cadvi_seed_video.videos import FRAMES_ROOT_ENV, VideoFinder, frame_names, video_frames


def extract_frames(out_root: str | Path, num_frames: int, *, questions: str | Path | None = None) -> int:
    """Write every question's frames to ``out_root`` in the :data:`FRAMES_ROOT_ENV` layout; returns the count.

    Videos are found as for evaluation (the video-root variables); existing files are kept, so an
    interrupted run resumes.
    """
    out = Path(out_root).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    find_video = VideoFinder()
    for question in read_questions(questions):
        names = frame_names(question, num_frames)
        if all((out / f"{name}.png").is_file() for name in names):
            continue
        frames = video_frames(find_video(question), question["question_type_id"], num_frames, question.get("segment"))
        for name, frame in zip(names, frames, strict=True):
            frame.save(out / f"{name}.png")
            written += 1
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval_tasks.cadvi_seed_video.utils",
        description=f"Extract SEED-Bench video frames for {FRAMES_ROOT_ENV} (videos from the video-root variables).",
    )
    parser.add_argument("--frames", type=int, choices=(1, 2), required=True, help="frames per question")
    parser.add_argument("--out", required=True, help="output folder (flat: <type>_<question_id>[_<k>].png)")
    parser.add_argument("--questions", default=None, help="SEED-Bench.json (default: as the tasks find it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    count = extract_frames(args.out, args.frames, questions=args.questions)
    print(f"wrote {count} frames to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
