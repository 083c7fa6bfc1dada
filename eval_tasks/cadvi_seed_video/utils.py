"""SEED-Bench (v1) video questions fed to an image LMM as one or two frames (CaD-VI, Table 3).

What is evaluated
    The three video dimensions of SEED-Bench v1 (Li et al., 2023): question type 10, action recognition
    (Something-Something v2 ``.webm`` clips), 11, action prediction (Epic-Kitchens 100 long videos, a
    ``segment`` in seconds) and 12, procedure understanding (Breakfast videos at 15 fps, a ``segment`` in
    frames). Four options per question; metric: accuracy overall and per question type, each with a 95%
    bootstrap interval and the count of unparseable answers (:mod:`eval_tasks.scoring`).

Which frames (taken from the original code, not guessed)
    The CaD-VI repository (GitHub ``wlin-at/CaD-VI``, commit 884227a) ships SEED-Bench frame extractors:
    ``playground/data/eval/seed_bench/extract_video_frames_2frames.py`` (two frames) and
    ``extract_video_frames.py`` (one frame, LLaVA-1.5's "frame in the middle"). Both are the official
    SEED-Bench extractor (``model/instruct_blip_interface.py`` of ``AILab-CVC/SEED-Bench``) with
    ``num_segments`` set to 2 or 1; :func:`official_offsets` is its ``get_index``::

        seg = (n - 1) / k;  offsets = [int(seg / 2) + round(seg * i) for i in range(k)]

    (``round`` halves to even, like ``np.round``: n = 10, k = 2 gives [2, 6]). ``n`` and the first
    frame of the clip come from :func:`clip_window`, per question type, exactly as those scripts do:

    * type 10: the whole clip; ``n = len(video) - 1`` (the official code passes ``len - 1``);
    * type 11: ``segment`` is in seconds: ``first = int(clamp(start * fps))``,
      ``last = int(clamp(end * fps))`` with ``clamp`` to ``[0, len - 1]`` and ``fps`` the stream's
      average frame rate; ``n = last - first``;
    * type 12: ``segment`` is in frames: ``first = start``, ``n = min(end, len) - start``.

    One frame is therefore frame ``first + int((n - 1) / 2)``; two frames are
    ``first + int(seg / 2)`` and ``first + int(seg / 2) + round(seg)`` with ``seg = (n - 1) / 2``.
    Decoding follows the originals too: decord for types 10 and 11 (its frame count and average fps),
    PyAV for type 12 (frames counted by decoding). Where the original would return fewer frames than
    asked (a clip shorter than the number of frames) we repeat the last one, so a two-frame prompt
    always has two images; an empty clip is an error.

Prompt (ours where the original is unknown)
    Two frames: ``"Image 1: <image>\\nImage 2: <image>\\n"`` + question + ``"\\nA. ...\\nB. ...\\nC. ...\\nD. ..."``
    + ``"\\nAnswer with the option's letter from the given choices directly."``. The image prefix is the
    original's two-image prompt (``get_full_prompt(two_imagse=True)`` in its ``perplexity_utils.py``), the
    options block is LLaVA-1.5's SEED-Bench format. One frame: ``"<image>\\n"`` + the same question block
    (LLaVA-1.5's SEED-Bench prompt). The original's two-frame SEED inference code is *not* released (its
    SEED loaders read one image per question, and it has both a generation and a likelihood-ranking
    mode), so whether Table 3 used exactly this prompt, and generation rather than ranking, is unknown.
    We generate greedily and parse the letter with the shared parser (the original's SEED scorer
    compares the answer text to the letter by exact match; see :mod:`eval_tasks.scoring` for why not).

Data
    Questions: ``SEED-Bench.json`` of the Hub dataset ``AILab-CVC/SEED-Bench`` via ``hf_hub_download``
    (Hugging Face cache). We could not resolve a commit of that repo from our build machine, so the
    default revision is ``main``: set ``CADVI_SEED_REVISION=<commit>`` to pin it (recommended for
    published numbers; the file's sha256 is logged at every load). ``CADVI_EVAL_DATA_DIR=<folder>``
    (shared with the other tasks) reads ``<folder>/SEED-Bench.json`` instead.

    Videos (never shipped): the official releases of each source, under one root per source, where the
    question's ``data_id`` is the path below that root (as in the official ``eval.py``):
    ``CADVI_SEED_SSV2_ROOT`` (``94328.webm``), ``CADVI_SEED_EPIC_KITCHENS_ROOT`` (``P03/P03_24.MP4``; a
    flat folder of ``P03_24.MP4`` works too) and ``CADVI_SEED_BREAKFAST_ROOT`` (``P06/cam01/P06_cereals.avi``,
    the 15 fps ``BreakfastII_15fps_qvga_sync`` release: type-12 segments count frames of it). Unset, they
    default to ``SSv2/``, ``Epic_kitchen/`` and ``Breakfast/`` under ``CADVI_SEED_VIDEO_ROOT`` (the
    original's own folder names), else under ``$CADVI_EVAL_IMAGE_ROOT/seed_video/``. Every video is
    checked when the docs are built: a missing one fails before any model runs, naming the benchmark,
    the root and the file.

    Pre-extracted frames: ``CADVI_SEED_FRAMES_ROOT=<folder>`` reads frames instead of videos, in the
    original's flat layout: ``<type>_<question_id>.png`` (one frame, e.g. ``10_v1738.png``, LLaVA-1.5's
    ``SEED-Bench-video-image`` layout) and ``<type>_<question_id>_0.png`` / ``_1.png`` (two frames,
    ``extract_video_frames_2frames.py``); ``.jpg`` is accepted too. ``python -m
    eval_tasks.cadvi_seed_video.utils --frames 2 --out DIR`` writes that layout from the videos with the
    rule above (SEED-Bench's own ``v1_video.zip`` holds 8 frames per question, sampled with ``k = 8``;
    they do not in general include these frames, so they cannot stand in for them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from builders.release.sources import file_sha256
from builders.release.validate import UnsafeImageNameError, checked_relative_name
from eval_tasks import data, scoring
from eval_tasks.data import BenchmarkDataError, MissingBenchmarkImageError

logger = logging.getLogger(__name__)

__all__ = [
    "accuracy",
    "accuracy_action_prediction",
    "accuracy_action_recognition",
    "accuracy_procedure_understanding",
    "clip_window",
    "doc_to_messages",
    "doc_to_text",
    "doc_to_visual",
    "frame_indices",
    "load_docs",
    "official_offsets",
    "process_docs_1frame",
    "process_docs_2frame",
    "process_results",
    "read_questions",
    "sample_offsets",
]

BENCHMARK = "seed_video"
QUESTION_FILE = "SEED-Bench.json"
HUB_REPO = "AILab-CVC/SEED-Bench"
HUB_REVISION = "main"  # no commit could be resolved offline; pin with CADVI_SEED_REVISION
REVISION_ENV = "CADVI_SEED_REVISION"
VIDEO_ROOT_ENV = "CADVI_SEED_VIDEO_ROOT"
FRAMES_ROOT_ENV = "CADVI_SEED_FRAMES_ROOT"
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
OPTIONS = scoring.LETTER_OPTIONS_4
CHOICE_FIELDS = ("choice_a", "choice_b", "choice_c", "choice_d")
ANSWER_INSTRUCTION = "Answer with the option's letter from the given choices directly."
IMAGE = data.IMAGE_PLACEHOLDER
# The frames' placeholders before the question: the original's two-image prefix, LLaVA's one-image prefix.
FRAME_PREFIX = {1: f"{IMAGE}\n", 2: f"Image 1: {IMAGE}\nImage 2: {IMAGE}\n"}
QUESTION_BLOCK = "{question}\nA. {choice_a}\nB. {choice_b}\nC. {choice_c}\nD. {choice_d}\n" + ANSWER_INSTRUCTION


class QuestionType(NamedTuple):
    """One SEED-Bench v1 video dimension and where its videos live.

    A NamedTuple, not a dataclass: lmms-eval executes this file without registering it in
    ``sys.modules``, where ``dataclasses`` looks up string annotations.
    """

    type_id: int
    name: str  # the key of the per-type metric
    title: str  # the name in SEED-Bench.json's ``question_type`` table
    source: str
    root_env: str
    default_folder: str  # the original CaD-VI folder name under the video root


QUESTION_TYPES: dict[int, QuestionType] = {
    spec.type_id: spec
    for spec in (
        QuestionType(
            10,
            "action_recognition",
            "Action Recognition",
            "Something-Something v2 validation videos (<id>.webm)",
            "CADVI_SEED_SSV2_ROOT",
            "SSv2",
        ),
        QuestionType(
            11,
            "action_prediction",
            "Action Prediction",
            "Epic-Kitchens 100 videos (P<xx>/P<xx>_<yy>.MP4)",
            "CADVI_SEED_EPIC_KITCHENS_ROOT",
            "Epic_kitchen",
        ),
        QuestionType(
            12,
            "procedure_understanding",
            "Procedure Understanding",
            "Breakfast 15 fps videos (BreakfastII_15fps_qvga_sync: P<xx>/<camera>/<name>.avi)",
            "CADVI_SEED_BREAKFAST_ROOT",
            "Breakfast",
        ),
    )
}


class EmptyClipError(ValueError):
    """A question whose clip has no frame to sample (segment outside the video)."""


# ---------------------------------------------------------------------------------------------------
# Which frames


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


# ---------------------------------------------------------------------------------------------------
# Decoding


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


# ---------------------------------------------------------------------------------------------------
# Questions


def question_file() -> Path:
    """``SEED-Bench.json``: ``$CADVI_EVAL_DATA_DIR/SEED-Bench.json``, else the (cached) Hub download."""
    override = os.environ.get(data.ANNOTATION_DIR_ENV)
    if override:
        path = Path(override).expanduser() / QUESTION_FILE
        if not path.is_file():
            raise BenchmarkDataError(
                f"{BENCHMARK}: {data.ANNOTATION_DIR_ENV}={override!r} has no {QUESTION_FILE}; put SEED-Bench's "
                f"question file there or unset {data.ANNOTATION_DIR_ENV} to download it from {HUB_REPO}"
            )
        return path
    from huggingface_hub import hf_hub_download

    revision = os.environ.get(REVISION_ENV) or HUB_REVISION
    try:
        return Path(hf_hub_download(HUB_REPO, QUESTION_FILE, repo_type="dataset", revision=revision))
    except Exception as error:
        raise BenchmarkDataError(
            f"{BENCHMARK}: could not get {QUESTION_FILE} from the Hub dataset {HUB_REPO} at revision {revision!r} "
            f"({type(error).__name__}: {error}); set {data.ANNOTATION_DIR_ENV} to a folder holding it"
        ) from error


def read_questions(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The validated video questions (types 10, 11, 12) of a SEED-Bench v1 question file."""
    path = Path(path) if path is not None else question_file()
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except json.JSONDecodeError as error:
        raise BenchmarkDataError(f"{BENCHMARK}: {path} is not valid JSON ({error.msg})") from error
    questions = content.get("questions") if isinstance(content, dict) else content
    if not isinstance(questions, list):
        raise BenchmarkDataError(f"{BENCHMARK}: {path} has no 'questions' list (SEED-Bench v1 format)")
    _check_type_table(path, content)
    rows, seen = [], set()
    for position, question in enumerate(questions):
        if not isinstance(question, dict) or question.get("question_type_id") not in QUESTION_TYPES:
            continue
        problem = _question_problem(question)
        if problem:
            raise BenchmarkDataError(
                f"{BENCHMARK}: {path}: question {question.get('question_id', f'#{position}')!r}: {problem}"
            )
        if str(question["question_id"]) in seen:
            raise BenchmarkDataError(f"{BENCHMARK}: {path}: duplicate question_id {question['question_id']!r}")
        seen.add(str(question["question_id"]))
        rows.append(question)
    if not rows:
        raise BenchmarkDataError(f"{BENCHMARK}: {path} holds no video questions (types 10, 11, 12)")
    counts = {type_id: sum(row["question_type_id"] == type_id for row in rows) for type_id in QUESTION_TYPES}
    logger.info("%s: %s (sha256 %s): %s video questions %s", BENCHMARK, path, file_sha256(path), len(rows), counts)
    return rows


def _check_type_table(path: Path, content: Any) -> None:
    """Refuse a SEED-Bench-2 file: its type ids 10-12 are other dimensions (celebrities, landmarks, charts)."""
    table = content.get("question_type") if isinstance(content, dict) else None
    if not isinstance(table, dict):
        return
    by_id = {type_id: title for title, type_id in table.items()}
    for type_id, spec in QUESTION_TYPES.items():
        if type_id in by_id and by_id[type_id] != spec.title:
            raise BenchmarkDataError(
                f"{BENCHMARK}: {path}: question type {type_id} is {by_id[type_id]!r}, not {spec.title!r}; "
                "this is not SEED-Bench v1's question file"
            )


def _question_problem(question: dict[str, Any]) -> str | None:
    missing = [key for key in ("question_id", "question", *CHOICE_FIELDS, "answer", "data_id") if key not in question]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    if question.get("data_type", "video") != "video":
        return f"data_type {question['data_type']!r} for a video question type"
    if question["answer"] not in OPTIONS:
        return f"answer {question['answer']!r} is not one of {', '.join(OPTIONS)}"
    if not all(isinstance(question[key], str) for key in ("question", *CHOICE_FIELDS, "data_id")):
        return "question, choices and data_id must be strings"
    try:
        checked_relative_name(question["data_id"])
    except UnsafeImageNameError as error:
        return str(error)
    segment = question.get("segment")
    if question["question_type_id"] == 10:
        return None
    if (
        not isinstance(segment, list)
        or len(segment) != 2
        or not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in segment)
        or not 0 <= segment[0] < segment[1]
    ):
        return f"segment must be [start, end] with 0 <= start < end, got {segment!r}"
    if question["question_type_id"] == 12 and not all(float(value).is_integer() for value in segment):
        return f"a type-12 segment counts frames (integers), got {segment!r}"
    return None


# ---------------------------------------------------------------------------------------------------
# Videos and frame files


def video_root(question_type: int) -> Path:
    """The folder that ``data_id`` of this question type is relative to (see the module docstring)."""
    spec = QUESTION_TYPES[question_type]
    if os.environ.get(spec.root_env):
        return Path(os.environ[spec.root_env]).expanduser()
    if os.environ.get(VIDEO_ROOT_ENV):
        return Path(os.environ[VIDEO_ROOT_ENV]).expanduser() / spec.default_folder
    if os.environ.get(data.IMAGE_ROOT_ENV):
        return Path(os.environ[data.IMAGE_ROOT_ENV]).expanduser() / BENCHMARK / spec.default_folder
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


# ---------------------------------------------------------------------------------------------------
# Docs for lmms-eval


def prompt(question: dict[str, Any], num_frames: int) -> str:
    """The user turn with one ``<image>`` placeholder per frame (see the module docstring)."""
    return FRAME_PREFIX[num_frames] + QUESTION_BLOCK.format(
        **{key: question[key] for key in ("question", *CHOICE_FIELDS)}
    )


def load_docs(num_frames: int, *, questions: str | Path | None = None, check_media: bool = True):
    """The video questions as a ``datasets.Dataset`` with their prompt and their video or frame files.

    ``check_media=False`` skips locating videos/frames (for scoring tests).
    """
    import datasets

    if num_frames not in FRAME_PREFIX:
        raise ValueError(f"num_frames must be 1 or 2, got {num_frames}")
    frames_root = os.environ.get(FRAMES_ROOT_ENV)
    if frames_root and check_media and not Path(frames_root).expanduser().is_dir():
        raise MissingBenchmarkImageError(f"{BENCHMARK}: {FRAMES_ROOT_ENV}={frames_root!r} is not a folder")
    roots: dict[int, Path] = {}
    docs = []
    for question in read_questions(questions):
        type_id = question["question_type_id"]
        video_path, frame_paths = "", []
        if check_media and frames_root:
            frame_paths = find_frames(question, num_frames, Path(frames_root).expanduser())
        elif check_media:
            if type_id not in roots:
                roots[type_id] = video_root(type_id)
                if not roots[type_id].is_dir():
                    spec = QUESTION_TYPES[type_id]
                    raise MissingBenchmarkImageError(
                        f"{BENCHMARK}: video root {str(roots[type_id])!r} for type {type_id} ({spec.title}) is not "
                        f"a folder (set {spec.root_env}; expected: {spec.source})"
                    )
            video_path = str(find_video(question, roots[type_id]))
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
                "text": prompt(question, num_frames),
                "video_path": video_path,
                "frame_paths": frame_paths,
            }
        )
    return datasets.Dataset.from_list(docs)


def process_docs_2frame(_placeholder: Any) -> Any:
    return load_docs(2)


def process_docs_1frame(_placeholder: Any) -> Any:
    return load_docs(1)


def doc_to_visual(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> list:
    """``[PIL]`` or ``[PIL, PIL]``: the pre-extracted frames if given, else decoded from the video."""
    if doc["frame_paths"]:
        return data.open_images({"image_paths": doc["frame_paths"]})
    return video_frames(doc["video_path"], doc["question_type_id"], doc["num_frames"], doc["segment"])


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The prompt with its ``<image>`` placeholders (see :func:`eval_tasks.data.doc_to_text`)."""
    return doc["text"]


def doc_to_messages(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> list[dict[str, Any]]:
    """For chat models: the frames where their placeholders are (:func:`eval_tasks.data.interleaved_messages`)."""
    return data.interleaved_messages(doc["text"], doc_to_visual(doc))


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict]:
    result = scoring.choice_result(
        results[0], doc["answer"], OPTIONS, question_id=doc["question_id"], question_type=str(doc["question_type_id"])
    )
    # Every metric gets the same result; the per-type aggregations keep their own question type.
    return {"accuracy": result, **{f"accuracy_{spec.name}": result for spec in QUESTION_TYPES.values()}}


accuracy = scoring.accuracy_aggregation
accuracy_action_recognition = scoring.filtered(scoring.accuracy_aggregation, "question_type", "10")
accuracy_action_prediction = scoring.filtered(scoring.accuracy_aggregation, "question_type", "11")
accuracy_procedure_understanding = scoring.filtered(scoring.accuracy_aggregation, "question_type", "12")


# ---------------------------------------------------------------------------------------------------
# Frame extraction (decode once, evaluate many times)


def extract_frames(out_root: str | Path, num_frames: int, *, questions: str | Path | None = None) -> int:
    """Write every question's frames to ``out_root`` in the :data:`FRAMES_ROOT_ENV` layout; returns the count.

    Videos are found as for evaluation (the video-root variables); existing files are kept, so an
    interrupted run resumes.
    """
    out = Path(out_root).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    roots: dict[int, Path] = {}
    for question in read_questions(questions):
        type_id = question["question_type_id"]
        names = frame_names(question, num_frames)
        if all((out / f"{name}.png").is_file() for name in names):
            continue
        root = roots.setdefault(type_id, video_root(type_id))
        segment = question.get("segment")
        frames = video_frames(find_video(question, root), type_id, num_frames, segment)
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
