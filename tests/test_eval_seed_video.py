"""SEED-Bench video with one or two frames (``eval_tasks/cadvi_seed_video``): the frame rule against
hand-computed indices, real decoding of generated videos (frame ``i`` is filled with gray level ``10 * i``,
so a decoded frame tells its index), pre-extracted frames, the question loader, scoring, and the real
``lmms-eval`` CLI (which exits 0 on failure, so we assert on its results JSON).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eval_tasks import scoring
from eval_tasks.cadvi_seed_video import utils as seed
from eval_tasks.data import BenchmarkDataError, MissingBenchmarkImageError
from tests.eval_fixtures import (  # noqa: F401  (tiny_llava: a fixture)
    figures_of,
    plain_number_problems,
    run_lmms_eval,
    summary_of,
    tiny_llava,
    tiny_llava_arguments,
)

TASKS = ("cadvi_seed_video_2frame", "cadvi_seed_video_1frame")
CLI_TIMEOUT_S = 300
TASK_FOLDER = Path(seed.__file__).parent
TYPE_TABLE = {
    "Action Recognition": 10,
    "Action Prediction": 11,
    "Procedure Understanding": 12,
    "Scene Understanding": 1,
}

# --- the fixture release: videos and a SEED-Bench.json in the official v1 format -----------------------

# (path under the video root, frames, fps, codec): Something-Something v2 clips are .webm, Epic-Kitchens
# .MP4, Breakfast .avi at 15 fps.
VIDEOS = {
    "SSv2/94328.webm": (25, 10, "libvpx-vp9"),
    "SSv2/94329.webm": (3, 10, "libvpx-vp9"),
    "Epic_kitchen/P03/P03_24.MP4": (25, 10, "libx264"),
    "Breakfast/P06/cam01/P06_cereals.avi": (25, 15, "mpeg4"),
}


def video_question(question_id: str, type_id: int, data_id: str, answer: str, **extra: Any) -> dict[str, Any]:
    return {
        "answer": answer,
        "choice_a": f"{question_id} first",
        "choice_b": f"{question_id} second",
        "choice_c": f"{question_id} third",
        "choice_d": f"{question_id} fourth",
        "data_id": data_id,
        "data_type": "video",
        "question": f"What happens in {question_id}?",
        "question_id": question_id,
        "question_type_id": type_id,
        **extra,
    }


QUESTIONS = [
    {  # an image question: not ours
        "answer": "A",
        "choice_a": "One",
        "choice_b": "Two",
        "choice_c": "Three",
        "choice_d": "Four",
        "data_id": "1454426_2591111986",
        "data_type": "image",
        "question": "How many towels are in the image?",
        "question_id": "101669",
        "question_type_id": 5,
    },
    video_question("v1738", 10, "94328.webm", "A"),
    video_question("v1739", 10, "94329.webm", "B"),
    video_question("v1962", 11, "P03/P03_24.MP4", "A", segment=[0.5, 2.0]),  # seconds
    video_question("v4397", 12, "P06/cam01/P06_cereals.avi", "C", segment=[3, 20]),  # frames
    video_question("v4398", 12, "P06/cam01/P06_cereals.avi", "A", segment=[10, 40]),  # ends after the video
]

# Frame indices worked out by hand from the rule (utils.py docstring):
#   v1738: n = 25 - 1 = 24; two: seg 11.5 -> int(5.75) = 5, 5 + round(11.5) = 17; one: int(23 / 2) = 11
#   v1739: n = 3 - 1 = 2; two: seg 0.5 -> 0, 0 + round(0.5) = 0 (the same frame twice); one: 0
#   v1962: fps 10, first int(0.5 * 10) = 5, last int(2.0 * 10) = 20, n = 15; two: seg 7 -> 5 + [3, 10]; one: 5 + 7
#   v4397: first 3, n = min(20, 25) - 3 = 17; two: seg 8 -> 3 + [4, 12]; one: 3 + 8
#   v4398: first 10, n = min(40, 25) - 10 = 15; two: seg 7 -> 10 + [3, 10]; one: 10 + 7
EXPECTED_FRAMES = {
    2: {"v1738": [5, 17], "v1739": [0, 0], "v1962": [8, 15], "v4397": [7, 15], "v4398": [13, 20]},
    1: {"v1738": [11], "v1739": [0], "v1962": [12], "v4397": [11], "v4398": [17]},
}


def write_video(path: Path, frames: int, fps: int, codec: str, size: tuple[int, int] = (64, 48)) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            pixels = np.full((size[1], size[0], 3), 10 * index, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_videos(root: Path) -> None:
    """Write :data:`VIDEOS` under ``root`` in a fresh interpreter.

    In-process encoding is fragile: once decord (imported by lmms-eval's ``llava_hf``) has loaded its
    own FFmpeg libraries, PyAV's libvpx encoder fails to open (``avcodec_open2: Invalid argument``).
    """
    script = (
        f"from pathlib import Path\nfrom tests.test_eval_seed_video import VIDEOS, write_video\n"
        f"for name, spec in VIDEOS.items():\n    write_video(Path({str(root)!r}) / name, *spec)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[1], timeout=120)


def write_questions(folder: Path, questions: list[dict[str, Any]], type_table: dict[str, int] = TYPE_TABLE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / seed.QUESTION_FILE
    path.write_text(json.dumps({"questions": questions, "question_type": type_table}))
    return path


def frame_index(image: Any) -> int:
    """The index a decoded frame was drawn with (gray level 10 * i, give or take the codec's rounding)."""
    pixels = np.asarray(image, dtype=np.float64)
    assert pixels.std() < 3, "a test frame is one flat gray level"
    return round(pixels.mean() / 10)


def prompt_kwargs(model: str = "default") -> dict[str, Any]:
    """The prompt wording of the task YAML for ``model``, as lmms-eval reads it."""
    from lmms_eval.utils import load_yaml_config

    config = load_yaml_config(str(TASK_FOLDER / f"{TASKS[0]}.yaml"), mode="simple")
    return config["lmms_eval_specific_kwargs"][model]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seed-video")
    write_videos(root / "videos")
    write_questions(root / "annotations", QUESTIONS)
    return root


@pytest.fixture
def seed_env(release: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixture release selected through the environment, as a user would."""
    for key in [key for key in os.environ if key.startswith("CADVI_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CADVI_EVAL_DATA_DIR", str(release / "annotations"))
    monkeypatch.setenv(seed.VIDEO_ROOT_ENV, str(release / "videos"))
    return release


# --- the frame rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k", "expected"),
    [
        # two frames: seg = (n - 1) / 2, [int(seg / 2), int(seg / 2) + round(seg)]; round halves to even
        (2, 2, [0, 0]),  # seg 0.5: int(0.25) = 0, round(0.5) = 0
        (3, 2, [0, 1]),  # seg 1
        (10, 2, [2, 6]),  # seg 4.5: int(2.25) = 2, round(4.5) = 4
        (11, 2, [2, 7]),  # seg 5: int(2.5) = 2
        (100, 2, [24, 74]),  # seg 49.5: int(24.75) = 24, round(49.5) = 50
        # one frame: int((n - 1) / 2), the middle
        (2, 1, [0]),
        (3, 1, [1]),
        (10, 1, [4]),
        (11, 1, [5]),
        (100, 1, [49]),
    ],
)
def test_offsets_hand_computed(n: int, k: int, expected: list[int]) -> None:
    assert seed.official_offsets(n, k) == expected
    assert seed.sample_offsets(n, k) == expected


def test_short_and_empty_clips() -> None:
    assert seed.official_offsets(1, 2) == [0]  # the original returns fewer frames...
    assert seed.sample_offsets(1, 2) == [0, 0]  # ...we repeat the last one
    with pytest.raises(seed.EmptyClipError):
        seed.sample_offsets(0, 2)
    with pytest.raises(seed.EmptyClipError, match="-100 frames"):
        seed.frame_indices(12, 2, 100, segment=[200, 300])


@pytest.mark.parametrize(
    ("type_id", "video_len", "fps", "segment", "two", "one"),
    [
        # type 10, the whole clip: n = len - 1 = 100
        (10, 101, 25.0, None, [24, 74], [49]),
        # type 11, seconds: first int(648 * 59.94) = 38841, last int(658 * 59.94) = 39440, n = 599;
        # two: seg 299 -> 149 + [0, 299]; one: int(299) = 299
        (11, 200_000, 59.94, [648.0, 658.0], [38990, 39289], [39140]),
        # type 11 past the end: first 500, last clamped to 999, n = 499; seg 249 -> int(124.5) = 124
        (11, 1000, 50.0, [10.0, 30.0], [624, 873], [749]),
        # type 12, frames: first 18, n = 148; seg 73.5 -> int(36.75) = 36, round(73.5) = 74; one: int(73.5) = 73
        (12, 5000, 15.0, [18, 166], [54, 128], [91]),
        # type 12 past the end: n = min(166, 100) - 18 = 82; seg 40.5 -> 20, round(40.5) = 40; one: 40
        (12, 100, 15.0, [18, 166], [38, 78], [58]),
    ],
)
def test_clip_indices_hand_computed(
    type_id: int, video_len: int, fps: float, segment: list[float] | None, two: list[int], one: list[int]
) -> None:
    assert seed.frame_indices(type_id, 2, video_len, fps=fps, segment=segment) == two
    assert seed.frame_indices(type_id, 1, video_len, fps=fps, segment=segment) == one


# --- real decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("num_frames", [2, 1])
def test_doc_to_visual_decodes_the_expected_frames(seed_env: Path, num_frames: int) -> None:
    docs = seed.load_docs(num_frames)
    decoded = {}
    for doc in docs:
        images = seed.doc_to_visual(doc)
        assert len(images) == num_frames and all(image.mode == "RGB" for image in images)
        decoded[doc["question_id"]] = [frame_index(image) for image in images]
    assert decoded == EXPECTED_FRAMES[num_frames]


def test_messages_interleave_the_frames(seed_env: Path) -> None:
    doc = seed.load_docs(2)[0]
    (turn,) = seed.doc_to_messages(doc, prompt_kwargs())
    kinds = [part["type"] for part in turn["content"]]
    assert kinds == ["text", "image", "text", "image", "text"]
    assert turn["content"][0]["text"] == "Image 1: " and turn["content"][2]["text"] == "\nImage 2: "
    assert [frame_index(part["url"]) for part in turn["content"] if part["type"] == "image"] == [5, 17]


def test_pre_extracted_frames(seed_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    frames = tmp_path / "frames"
    for num_frames in (2, 1):
        assert seed.main(["--frames", str(num_frames), "--out", str(frames)]) == 0
    assert seed.extract_frames(frames, 2) == 0  # resumes: nothing left to write
    assert sorted(path.name for path in frames.iterdir())[:3] == ["10_v1738.png", "10_v1738_0.png", "10_v1738_1.png"]
    # A hand-made JPEG in the same layout is read too.
    (frames / "10_v1739.png").unlink()
    Image.new("RGB", (32, 24), (120, 120, 120)).save(frames / "10_v1739.jpg", quality=100)

    monkeypatch.delenv(seed.VIDEO_ROOT_ENV)  # no videos needed any more
    monkeypatch.setenv(seed.FRAMES_ROOT_ENV, str(frames))
    for num_frames in (2, 1):
        docs = seed.load_docs(num_frames)
        assert all(doc["video_path"] == "" and len(doc["frame_paths"]) == num_frames for doc in docs)
        decoded = {doc["question_id"]: [frame_index(image) for image in seed.doc_to_visual(doc)] for doc in docs}
        expected = dict(EXPECTED_FRAMES[num_frames], **({"v1739": [12]} if num_frames == 1 else {}))
        assert decoded == expected

    (frames / "12_v4398_1.png").unlink()
    with pytest.raises(MissingBenchmarkImageError, match=r"12_v4398_1\.png.*" + re.escape(str(frames))):
        seed.load_docs(2)


def test_missing_video_names_benchmark_root_and_file(seed_env: Path, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "breakfast"
    root.mkdir()
    monkeypatch.setenv("CADVI_SEED_BREAKFAST_ROOT", str(root))
    with pytest.raises(MissingBenchmarkImageError) as error:
        seed.load_docs(2)
    message = str(error.value)
    assert "seed_video" in message and str(root) in message and "P06/cam01/P06_cereals.avi" in message
    monkeypatch.setenv("CADVI_SEED_BREAKFAST_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(MissingBenchmarkImageError, match=r"nowhere.*is not a folder"):
        seed.load_docs(2)


def test_per_source_root_and_flat_epic_kitchens_folder(seed_env: Path, tmp_path: Path, monkeypatch) -> None:
    flat = tmp_path / "epic"
    flat.mkdir()
    shutil.copy(seed_env / "videos" / "Epic_kitchen" / "P03" / "P03_24.MP4", flat / "P03_24.MP4")
    monkeypatch.setenv("CADVI_SEED_EPIC_KITCHENS_ROOT", str(flat))
    doc = next(doc for doc in seed.load_docs(2) if doc["question_type_id"] == 11)
    assert doc["video_path"] == str(flat / "P03_24.MP4")
    assert [frame_index(image) for image in seed.doc_to_visual(doc)] == [8, 15]


# --- questions, prompt, scoring ----------------------------------------------------------------------


def test_loader_reads_the_official_format(seed_env: Path) -> None:
    docs = seed.load_docs(2, check_media=False)
    assert docs["question_id"] == ["v1738", "v1739", "v1962", "v4397", "v4398"]  # the image question is skipped
    assert docs["question_type_id"] == [10, 10, 11, 12, 12]
    assert docs["segment"] == [None, None, [0.5, 2.0], [3.0, 20.0], [10.0, 40.0]]
    two_text = seed.doc_to_text(docs[0], prompt_kwargs())
    assert two_text == (
        "Image 1: <image>\nImage 2: <image>\nWhat happens in v1738?\nA. v1738 first\nB. v1738 second\n"
        "C. v1738 third\nD. v1738 fourth\nAnswer with the option's letter from the given choices directly."
    )
    one = seed.load_docs(1, check_media=False)[0]
    one_text = seed.doc_to_text(one, prompt_kwargs())
    assert one_text == two_text.replace("Image 1: <image>\nImage 2: <image>\n", "<image>\n")


def test_bad_question_files_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_bench_2 = dict(TYPE_TABLE, **{"Celebrity Recognition": 10})
    del seed_bench_2["Action Recognition"]
    with pytest.raises(BenchmarkDataError, match="not SEED-Bench v1"):
        seed.read_questions(write_questions(tmp_path / "v2", QUESTIONS, seed_bench_2))
    no_segment = [video_question("v1", 11, "P01/P01_11.MP4", "A")]
    with pytest.raises(BenchmarkDataError, match=r"'v1'.*segment"):
        seed.read_questions(write_questions(tmp_path / "segment", no_segment))
    fractional = [video_question("v2", 12, "P01/cam01/P01_tea.avi", "A", segment=[1.5, 9])]
    with pytest.raises(BenchmarkDataError, match="counts frames"):
        seed.read_questions(write_questions(tmp_path / "fractional", fractional))
    bad_answer = [video_question("v3", 10, "1.webm", "E")]
    with pytest.raises(BenchmarkDataError, match="answer 'E'"):
        seed.read_questions(write_questions(tmp_path / "answer", bad_answer))
    with pytest.raises(BenchmarkDataError, match="no video questions"):
        seed.read_questions(write_questions(tmp_path / "images", QUESTIONS[:1]))

    for key in [key for key in os.environ if key.startswith("CADVI_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CADVI_EVAL_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(BenchmarkDataError, match=r"has no SEED-Bench\.json"):
        seed.question_file()


def test_every_bad_question_is_reported_at_once(tmp_path: Path) -> None:
    questions = [
        QUESTIONS[0],  # an image question: skipped, not a problem
        video_question("v1", 11, "P01/P01_11.MP4", "A"),  # no segment
        video_question("v2", 10, "1.webm", "E"),
        video_question("v3", 10, "../../etc/passwd", "A"),
        video_question("v4", 10, "4.webm", "A"),
        video_question("v4", 10, "5.webm", "B"),  # the id again
    ]
    path = write_questions(tmp_path / "bad", questions)
    with pytest.raises(BenchmarkDataError) as error:
        seed.read_questions(path)
    lines = str(error.value).splitlines()
    assert lines[0] == f"seed_video: 4 problem(s) in {path}:"
    assert lines[1].startswith(f"  seed_video: {path}:2: question 'v1': segment must be")
    assert lines[2] == f"  seed_video: {path}:3: question 'v2': answer 'E' is not one of A, B, C, D"
    assert lines[3].startswith(f"  seed_video: {path}:4: question 'v3': ")
    assert lines[4] == f"  seed_video: {path}:6: duplicate question_id 'v4' (first seen at {path}:5)"


def test_prompt_wording_comes_from_the_yaml_per_model(seed_env: Path) -> None:
    """lmms-eval picks the kwargs block named like the model, else ``default`` (the real TaskManager)."""
    import lmms_eval.models  # noqa: F401  (runs our entry point)
    from lmms_eval.tasks import TaskManager, get_task_dict

    question = "What happens in v1738?\nA. v1738 first\nB. v1738 second\nC. v1738 third\nD. v1738 fourth"
    expected = {
        "dummy": f"Image 1: <image>\nImage 2: <image>\n{question}\n"
        "Answer with the option's letter from the given choices directly.",
        "qwen3_vl": f"Image 1: <image>\nImage 2: <image>\nQuestion: {question}\nAnswer with the option letter only.",
    }
    for model, text in expected.items():
        manager = TaskManager(include_defaults=False, model_name=model)
        task = get_task_dict([TASKS[0]], manager)[TASKS[0]]
        assert task.doc_to_text(task.test_docs()[0]) == text, model


def test_prompt_needs_its_kwargs(seed_env: Path) -> None:
    doc = seed.load_docs(2, check_media=False)[0]
    with pytest.raises(ValueError, match="needs frame_prefix, pre_prompt, post_prompt"):
        seed.doc_to_text(doc)
    one_image = {**prompt_kwargs(), "frame_prefix": {1: "<image>\n", 2: "<image>\n"}}
    with pytest.raises(ValueError, match=r"frame_prefix\[2\] must be a text with 2 <image>"):
        seed.doc_to_text(doc, one_image)


def test_default_source_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [key for key in os.environ if key.startswith("CADVI_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv(seed.REVISION_ENV, "0" * 40)  # never in any cache
    with pytest.raises(BenchmarkDataError, match=r"AILab-CVC/SEED-Bench.*CADVI_EVAL_DATA_DIR"):
        seed.question_file()


def test_answer_parsing_with_the_shared_parser() -> None:
    assert [scoring.parse_choice(text, seed.OPTIONS) for text in ("B", "(C)", "The answer is D", "no idea")] == [
        "B",
        "C",
        "D",
        None,
    ]


def test_process_results_and_aggregation_hand_computed(seed_env: Path) -> None:
    docs = seed.load_docs(2, check_media=False)
    # answers A B A C A; responses right, right, wrong (parsed D), right, unparseable
    responses = ["(A)", "B", "The answer is D", "(C)", "no idea"]
    per_metric: dict[str, list[dict]] = {}
    for doc, response in zip(docs, responses, strict=True):
        for name, result in seed.process_results(doc, [response]).items():
            per_metric.setdefault(name, []).append(result)
    overall = figures_of(seed, "accuracy", per_metric)
    assert (overall["value"], overall["n"], overall["unparseable"]) == (60.0, 5, 1)
    assert (overall["ci_low"], overall["ci_high"]) == tuple(100 * x for x in scoring.bootstrap_ci([1, 1, 0, 1, 0]))
    by_type = {
        "action_recognition": (100.0, 2, 0),
        "action_prediction": (0.0, 1, 0),
        "procedure_understanding": (50.0, 2, 1),
    }
    for name, expected in by_type.items():
        summary = figures_of(seed, f"accuracy_{name}", per_metric)
        assert (summary["value"], summary["n"], summary["unparseable"]) == expected, name


def test_task_yamls() -> None:
    from lmms_eval.utils import load_yaml_config

    for task, frames in zip(TASKS, (2, 1), strict=True):
        config = load_yaml_config(str(TASK_FOLDER / f"{task}.yaml"), mode="simple")
        assert (config["task"], config["tag"], config["output_type"]) == (task, "cadvi", "generate_until")
        assert config["generation_kwargs"]["do_sample"] is False and config["generation_kwargs"]["temperature"] == 0
        assert config["generation_kwargs"]["max_new_tokens"] == 256  # CaD-VI's model_vqa_loader.py default
        assert config["metadata"]["frames"] == frames
        assert set(config["lmms_eval_specific_kwargs"]) == {"default", "qwen3_vl"}


# --- the real CLI ------------------------------------------------------------------------------------


def run_cli(args: list[str], release: Path, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """Run ``lmms-eval`` offline on the fixture release (our tasks found with no extra flag)."""
    env = {
        "CADVI_EVAL_DATA_DIR": str(release / "annotations"),
        seed.VIDEO_ROOT_ENV: str(release / "videos"),
        "LMMS_EVAL_DATASETS_CACHE": str(tmp_path / "datasets"),
    }
    return run_lmms_eval(args, env, tmp_path, timeout=CLI_TIMEOUT_S)


@pytest.mark.slow
def test_cli_dummy_known_answers(release: Path, tmp_path: Path) -> None:
    # lmms-eval 0.7.3's dummy model answers "A" to everything; read_bytes=1 makes it call doc_to_visual,
    # so the frames are decoded inside the real run. Answers A B A C A -> right, wrong, right, wrong, right.
    results, _ = run_cli(
        ["--model", "dummy", "--model_args", "read_bytes=1", "--tasks", ",".join(TASKS)], release, tmp_path
    )
    expected = {
        "accuracy": (60.0, 5),
        "accuracy_action_recognition": (50.0, 2),
        "accuracy_action_prediction": (100.0, 1),
        "accuracy_procedure_understanding": (50.0, 2),
    }
    low, high = scoring.bootstrap_ci([1, 0, 1, 0, 1])
    for task in TASKS:
        assert plain_number_problems(results[task]) == [], task
        for name, (value, n) in expected.items():
            summary = summary_of(results[task], name)
            assert (summary["value"], summary["n"], summary["unparseable"]) == (value, n, 0), (task, name)
        overall = summary_of(results[task], "accuracy")
        assert (overall["ci_low"], overall["ci_high"]) == (100 * low, 100 * high)


@pytest.mark.slow
def test_cli_llava_hf_on_cpu(release: Path, tiny_llava: Path, tmp_path: Path) -> None:  # noqa: F811
    limit = 2
    # --verbosity DEBUG re-raises generation errors instead of answering ""
    arguments = tiny_llava_arguments(tiny_llava, TASKS, limit, "--verbosity", "DEBUG")
    results, console = run_cli(arguments, release, tmp_path)
    assert "in generating" not in console
    # The chat template renders the frames where their placeholders are: the CaD-VI two-image prompt.
    assert "USER: Image 1: <image>\nImage 2: <image>\nWhat happens in v1738?" in console
    assert "USER: <image>\nWhat happens in v1738?" in console
    for task in TASKS:
        summary = summary_of(results[task], "accuracy")
        assert summary["n"] == limit and 0 <= summary["unparseable"] <= limit
        assert summary["ci_low"] <= summary["value"] <= summary["ci_high"]
        assert results[task]["accuracy_action_recognition_n,none"] == limit  # the first two are type 10
