"""SEED-Bench (v1) video questions fed to an image LMM as one or two frames (CaD-VI, Table 3): the lmms-eval face.

The task YAMLs name the functions here; each concern lives in its own module, re-exported from here:

* :mod:`~eval_tasks.cadvi_seed_video.questions` - the pinned ``SEED-Bench.json`` (``CADVI_SEED_REVISION``,
  ``CADVI_SEED_SHA256``, trust on first use) and its video questions (types 10, 11, 12) validated;
* :mod:`~eval_tasks.cadvi_seed_video.frames` - which frames: the original CaD-VI / SEED-Bench rule;
* :mod:`~eval_tasks.cadvi_seed_video.videos` - where the videos (or pre-extracted frames) are, and decoding;
* :mod:`~eval_tasks.cadvi_seed_video.extract` - ``python -m eval_tasks.cadvi_seed_video.utils --frames 2
  --out DIR`` writes the frames once.

Metrics: ``accuracy`` overall and ``accuracy_<type>`` per question type (``action_recognition``,
``action_prediction``, ``procedure_understanding``), each with its 95% bootstrap CI, ``n`` and the count of
unparseable answers, all plain numbers (:mod:`eval_tasks.metrics`). We generate greedily and parse the
letter with the shared parser (the original's SEED scorer compares the answer text to the letter by exact
match; see :mod:`eval_tasks.scoring` for why not).

Prompt (ours where the original is unknown; its wording is in the YAML's ``lmms_eval_specific_kwargs``)
    ``frame_prefix[frames] + pre_prompt + question + "\\nA. ...\\nB. ...\\nC. ...\\nD. ..." + post_prompt``.
    By default (``_cadvi_seed_video_defaults.yaml``) two frames get ``"Image 1: <image>\\nImage 2: <image>\\n"``,
    the original's two-image prompt (``get_full_prompt(two_imagse=True)`` in its ``perplexity_utils.py``),
    one frame ``"<image>\\n"`` (LLaVA-1.5's SEED-Bench prompt); ``pre_prompt`` is empty and ``post_prompt``
    is ``"\\nAnswer with the option's letter from the given choices directly."``, LLaVA-1.5's SEED-Bench
    format. Per-model overrides sit next to ``default`` (lmms-eval picks the block named like the model).
    The original's two-frame SEED inference code is *not* released (its SEED loaders read one image per
    question, and it has both a generation and a likelihood-ranking mode), so whether Table 3 used exactly
    this prompt, and generation rather than ranking, is unknown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from builders.release.validate import IMAGE_TOKEN
from eval_tasks import data, metrics
from eval_tasks.cadvi_seed_video.extract import extract_frames, main
from eval_tasks.cadvi_seed_video.frames import (
    EmptyClipError,
    clip_window,
    frame_indices,
    official_offsets,
    sample_offsets,
)
from eval_tasks.cadvi_seed_video.questions import (
    BENCHMARK,
    CHOICE_FIELDS,
    OPTIONS,
    QUESTION_FILE,
    QUESTION_TYPES,
    REVISION_ENV,
    SHA256_ENV,
    question_file,
    question_source,
    read_questions,
)
from eval_tasks.cadvi_seed_video.videos import (
    FRAMES_ROOT_ENV,
    VIDEO_ROOT_ENV,
    VideoFinder,
    find_frames,
    video_frames,
)

__all__ = [
    "FRAMES_ROOT_ENV",
    "OPTIONS",
    "QUESTION_FILE",
    "REVISION_ENV",
    "SHA256_ENV",
    "TASK",
    "VIDEO_ROOT_ENV",
    "EmptyClipError",
    "clip_window",
    "doc_to_messages",
    "doc_to_text",
    "doc_to_visual",
    "extract_frames",
    "frame_indices",
    "load_docs",
    "main",
    "official_offsets",
    "process_docs_1frame",
    "process_docs_2frame",
    "process_results",
    "prompt",
    "question_file",
    "question_source",
    "read_questions",
    "sample_offsets",
]

FRAME_COUNTS = (1, 2)
QUESTION_BLOCK = "{question}\nA. {choice_a}\nB. {choice_b}\nC. {choice_c}\nD. {choice_d}"
PROMPT_KWARGS = ("frame_prefix", "pre_prompt", "post_prompt")

TASK = metrics.ChoiceTask(
    OPTIONS,
    metrics.PlainMetrics(
        metrics.Summary("accuracy"),
        *(
            metrics.Summary(f"accuracy_{spec.name}", where=("question_type", spec.name))
            for spec in QUESTION_TYPES.values()
        ),
    ),
    fields=("question_type",),
)


def load_docs(num_frames: int, *, questions: str | Path | None = None, check_media: bool = True):
    """The video questions as a ``datasets.Dataset`` with their video or frame files.

    ``check_media=False`` skips locating videos/frames (for scoring tests).
    """
    import datasets

    if num_frames not in FRAME_COUNTS:
        raise ValueError(f"num_frames must be 1 or 2, got {num_frames}")
    frames_root = os.environ.get(FRAMES_ROOT_ENV)
    if frames_root and check_media and not Path(frames_root).expanduser().is_dir():
        raise data.MissingBenchmarkImageError(f"{BENCHMARK}: {FRAMES_ROOT_ENV}={frames_root!r} is not a folder")
    find_video = VideoFinder()
    docs = []
    for question in read_questions(questions):
        type_id = question["question_type_id"]
        video_path, frame_paths = "", []
        if check_media and frames_root:
            frame_paths = find_frames(question, num_frames, Path(frames_root).expanduser())
        elif check_media:
            video_path = str(find_video(question))
        segment = question.get("segment")
        docs.append(
            {
                "question_id": str(question["question_id"]),
                "question_type_id": type_id,
                "question_type": QUESTION_TYPES[type_id].name,
                "question": question["question"],
                **{key: question[key] for key in CHOICE_FIELDS},
                "answer": question["answer"],
                "data_id": question["data_id"],
                "segment": [float(value) for value in segment] if type_id != 10 else None,
                "num_frames": num_frames,
                "video_path": video_path,
                "frame_paths": frame_paths,
            }
        )
    return datasets.Dataset.from_list(docs)


def process_docs_2frame(_placeholder: Any) -> Any:
    return load_docs(2)


def process_docs_1frame(_placeholder: Any) -> Any:
    return load_docs(1)


def prompt(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None) -> str:
    """The user turn with one ``<image>`` placeholder per frame, worded by the task's
    ``lmms_eval_specific_kwargs`` (``frame_prefix`` by frame count, ``pre_prompt``, ``post_prompt``)."""
    kwargs = lmms_eval_specific_kwargs or {}
    missing = [key for key in PROMPT_KWARGS if key not in kwargs]
    if missing:
        raise ValueError(
            f"{BENCHMARK}: the prompt needs {', '.join(missing)} in the task's lmms_eval_specific_kwargs "
            "(eval_tasks/cadvi_seed_video/_cadvi_seed_video_defaults.yaml)"
        )
    num_frames = doc["num_frames"]
    prefix = kwargs["frame_prefix"].get(num_frames)
    if not isinstance(prefix, str) or prefix.count(IMAGE_TOKEN) != num_frames:
        raise ValueError(
            f"{BENCHMARK}: lmms_eval_specific_kwargs frame_prefix[{num_frames}] must be a text with {num_frames} "
            f"{IMAGE_TOKEN} placeholder(s), got {prefix!r}"
        )
    question = QUESTION_BLOCK.format(**{key: doc[key] for key in ("question", *CHOICE_FIELDS)})
    return prefix + kwargs["pre_prompt"] + question + kwargs["post_prompt"]


def doc_to_visual(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> list:
    """``[PIL]`` or ``[PIL, PIL]``: the pre-extracted frames if given, else decoded from the video."""
    if doc["frame_paths"]:
        return data.open_images(doc["frame_paths"])
    return video_frames(doc["video_path"], doc["question_type_id"], doc["num_frames"], doc["segment"])


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The prompt with its ``<image>`` placeholders (see :func:`eval_tasks.docs.doc_to_text`)."""
    return prompt(doc, lmms_eval_specific_kwargs)


def doc_to_messages(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> list[dict[str, Any]]:
    """For chat models: the frames where their placeholders are (:func:`eval_tasks.docs.interleaved_messages`)."""
    return data.interleaved_messages(prompt(doc, lmms_eval_specific_kwargs), doc_to_visual(doc))


process_results = TASK.process_results
__getattr__ = TASK.metrics.module_getattr()  # accuracy_action_prediction_ci_low, ...: the aggregations the YAML names


if __name__ == "__main__":
    raise SystemExit(main())
