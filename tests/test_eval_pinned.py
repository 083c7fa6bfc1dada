"""The one resolver of the downloaded question files (``eval_tasks/pinned.py``), offline: a local folder, a
fake Hugging Face cache (SEED-Bench's file, trust on first use or pinned through the environment) and a
``file://`` mirror standing in for GitHub. The network is never used."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from builders.release.sources import file_sha256
from eval_tasks import data
from eval_tasks.cadvi_seed_video import questions as seed_questions
from eval_tasks.pinned import HUB, RECORD_SUFFIX, PinnedFile
from tests.eval_fixtures import SHARED_EVAL
from tests.test_eval_seed_video import QUESTIONS, write_questions

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in [key for key in os.environ if key.startswith("CADVI_")]:
        monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
def hub_cache(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A Hugging Face cache holding SEED-Bench.json at ``COMMIT``, with ``main`` pointing at it, as a
    download leaves it."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repo = cache / f"datasets--{seed_questions.HUB_REPO.replace('/', '--')}"
    write_questions(repo / "snapshots" / COMMIT, QUESTIONS)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    clean_env.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return repo / "snapshots" / COMMIT / seed_questions.QUESTION_FILE


def test_seed_file_is_trusted_on_first_use_then_checked(hub_cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    record = hub_cache.parent / "SEED-Bench.json.sha256"
    with caplog.at_level(logging.WARNING, logger="eval_tasks.pinned"):
        assert seed_questions.question_file() == hub_cache  # revision main, resolved through refs/main
    actual = file_sha256(hub_cache)
    assert record.read_text() == f"{actual}  SEED-Bench.json\n"  # sha256sum's format, next to the cached file
    assert "trusting this first download" in caplog.text and f"CADVI_SEED_SHA256={actual}" in caplog.text

    caplog.clear()
    assert seed_questions.question_file() == hub_cache  # checked against the record, quietly
    assert "trusting" not in caplog.text
    assert len(seed_questions.read_questions()) == 5

    hub_cache.write_text(hub_cache.read_text().replace("v1738", "v9999"))
    with pytest.raises(data.BenchmarkDataError, match="sha256 mismatch") as error:
        seed_questions.question_file()
    message = str(error.value)
    assert actual in message and str(record) in message and data.ANNOTATION_DIR_ENV in message


def test_seed_file_pinned_through_the_environment(hub_cache: Path, clean_env: pytest.MonkeyPatch) -> None:
    actual = file_sha256(hub_cache)
    clean_env.setenv(seed_questions.REVISION_ENV, COMMIT)
    clean_env.setenv(seed_questions.SHA256_ENV, actual)
    assert seed_questions.question_source().revision == COMMIT
    assert seed_questions.question_file() == hub_cache
    assert not (hub_cache.parent / "SEED-Bench.json.sha256").exists()  # pinned: nothing to record

    clean_env.setenv(seed_questions.SHA256_ENV, "f" * 64)
    with pytest.raises(data.BenchmarkDataError, match=rf"expected f{{64}} \(pinned for the Hub dataset .*{COMMIT}"):
        seed_questions.question_file()
    clean_env.setenv(seed_questions.REVISION_ENV, "1" * 40)  # not in the cache, and offline
    with pytest.raises(data.BenchmarkDataError, match=r"AILab-CVC/SEED-Bench at revision '1{40}'.*CADVI_EVAL_DATA_DIR"):
        seed_questions.question_file()


def test_local_folder_wins_and_is_not_enforced(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "local"
    write_questions(folder, QUESTIONS[:2])
    clean_env.setenv(data.ANNOTATION_DIR_ENV, str(folder))
    clean_env.setenv(seed_questions.SHA256_ENV, "f" * 64)
    with caplog.at_level(logging.INFO, logger="eval_tasks.pinned"):
        assert seed_questions.question_file() == folder / "SEED-Bench.json"
    assert "is not the pinned file" in caplog.text  # a hand-made subset works, and is said to differ
    assert not list(folder.glob(f"*{RECORD_SUFFIX}"))

    source = data.benchmark("cadqa").source  # the Hub-hosted CaD-QA file goes through the same rules
    assert (source.host, source.sha256, source.name) == (HUB, data.benchmark("cadqa").sha256, "CaD_QA_eval.jsonl")
    with pytest.raises(data.BenchmarkDataError, match=r"has no CaD_QA_eval\.jsonl"):
        data.annotation_file("cadqa")


def test_github_file_trusted_on_first_use(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A GitHub-hosted file with no published hash: recorded in our cache at the first download."""
    clean_env.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    clean_env.setenv(data.BASE_URL_ENV, SHARED_EVAL.as_uri())
    unpinned = PinnedFile("bison", "wlin-at/CaD-VI", "eval_json_files/BISON.jsonl", COMMIT, None)
    path = unpinned.resolve()
    assert path == tmp_path / "cache" / COMMIT[:12] / "BISON.jsonl"
    assert path.with_name("BISON.jsonl.sha256").read_text().split()[0] == data.benchmark("bison").sha256
    path.unlink()  # deleted, downloaded again: still the recorded bytes
    assert unpinned.resolve() == path

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(SHARED_EVAL / "BISON.jsonl", mirror / "BISON.jsonl")
    with open(mirror / "BISON.jsonl", "a") as handle:
        handle.write("\n")
    clean_env.setenv(data.BASE_URL_ENV, mirror.as_uri())
    path.unlink()
    with pytest.raises(data.BenchmarkDataError, match=r"mismatch for the download .*\(recorded at the first download"):
        unpinned.resolve()
    assert not path.exists()  # a download that differs from the record is never kept


def test_host_is_checked() -> None:
    with pytest.raises(ValueError, match="host must be"):
        PinnedFile("x", "a/b", "f.json", "main", None, host="gitlab")
