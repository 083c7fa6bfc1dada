"""builders.images.download against a real HTTP server that fails on cue (tests/http_faults.py).

Every fault the downloader claims to survive is served for real over 127.0.0.1: each test checks the file that
ends up on disk (byte for byte), the outcome's counts, and the server's own log of what was asked (ranges) and
sent, so that a resume that silently re-downloads, or a retry that never happened, fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from builders.images.download import Candidate, FetchJob, FetchOutcome, fetch_files
from tests.http_faults import FaultServer, noise_jpeg, noise_png

ROOT = Path(__file__).resolve().parents[1]
FAST = {"retries": 5, "backoff": 0.01, "timeout": 5.0}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def job(server: FaultServer, name: str, *, published: bool = False, path: str | None = None) -> FetchJob:
    """A one-candidate job for ``name`` served at ``path`` (default: the same name); ``published``: with the
    file's size and MD5, as a source that publishes them."""
    data = server.files.get("/" + (path or name))
    if published:
        assert data is not None
        return FetchJob(name, (Candidate(server.url(path or name), size=len(data), md5=md5(data)),))
    return FetchJob(name, (Candidate(server.url(path or name)),))


def only(outcomes: list[FetchOutcome]) -> FetchOutcome:
    assert len(outcomes) == 1
    return outcomes[0]


def no_parts(root: Path) -> list[Path]:
    return sorted(root.rglob("*.part"))


@pytest.fixture
def server():
    files = {f"img{i}.jpg": noise_jpeg(i) for i in range(4)} | {"pic.png": noise_png(7)}
    with FaultServer(files) as running:
        yield running


# -- each fault, then success ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "503", "429"])
def test_server_errors_are_retried(server, tmp_path, fault):
    server.faults["/img0.jpg"] = [fault, fault, "ok"]
    outcome = only(fetch_files([job(server, "img0.jpg")], tmp_path, **FAST))
    data = server.files["/img0.jpg"]
    assert (outcome.status, outcome.attempts, outcome.received) == ("downloaded", 3, len(data))
    assert (tmp_path / "img0.jpg").read_bytes() == data
    assert outcome.sha256 == sha256(data)
    assert [(r.status, r.range_start) for r in server.requests("img0.jpg")] == [
        (int(fault), None),
        (int(fault), None),
        (200, None),
    ]
    assert server.sent("img0.jpg") == len(data)
    assert no_parts(tmp_path) == []


@pytest.mark.parametrize("fault", ["drop", "truncate"])
@pytest.mark.parametrize("published", [False, True])
def test_a_cut_body_is_resumed_by_range(server, tmp_path, fault, published):
    server.faults["/pic.png"] = [fault, "ok"]
    outcome = only(fetch_files([job(server, "pic.png", published=published)], tmp_path, **FAST))
    data = server.files["/pic.png"]
    assert (outcome.status, outcome.attempts) == ("downloaded", 2)
    assert (tmp_path / "pic.png").read_bytes() == data
    first, second = server.requests("pic.png")
    assert (first.status, first.range_start, first.sent) == (200, None, len(data) // 2)
    assert (second.status, second.range_start) == (206, len(data) // 2)  # from the bytes already received
    assert server.sent("pic.png") == len(data) == outcome.received  # not one byte twice
    assert no_parts(tmp_path) == []


def test_two_drops_then_ok_resume_twice(server, tmp_path):
    server.faults["/img1.jpg"] = ["drop", "drop", "ok"]
    outcome = only(fetch_files([job(server, "img1.jpg", published=True)], tmp_path, **FAST))
    data = server.files["/img1.jpg"]
    assert (outcome.status, outcome.attempts, outcome.received) == ("downloaded", 3, len(data))
    starts = [r.range_start for r in server.requests("img1.jpg")]
    half = len(data) // 2
    assert starts == [None, half, half + (len(data) - half) // 2]
    assert server.sent("img1.jpg") == len(data)
    assert (tmp_path / "img1.jpg").read_bytes() == data


def test_a_server_ignoring_the_range_restarts_from_scratch(server, tmp_path):
    server.faults["/img2.jpg"] = ["drop", "ignore_range"]
    outcome = only(fetch_files([job(server, "img2.jpg")], tmp_path, **FAST))
    data = server.files["/img2.jpg"]
    assert (outcome.status, outcome.attempts, outcome.received) == ("downloaded", 2, len(data) // 2 + len(data))
    second = server.requests("img2.jpg")[1]
    assert (second.range_start, second.status, second.sent) == (len(data) // 2, 200, len(data))
    assert (tmp_path / "img2.jpg").read_bytes() == data  # the 200 body replaced the part, not appended to it


def test_a_timeout_is_retried(server, tmp_path):
    server.faults["/img0.jpg"] = ["slow:1.5"]
    started = time.monotonic()
    outcome = only(fetch_files([job(server, "img0.jpg")], tmp_path, retries=3, backoff=0.01, timeout=0.3))
    assert time.monotonic() - started < 1.2  # the retry did not wait for the slow answer
    assert (outcome.status, outcome.attempts) == ("downloaded", 2)
    assert (tmp_path / "img0.jpg").read_bytes() == server.files["/img0.jpg"]
    time.sleep(1.3)  # the slow handler finds its client gone and sends nothing
    assert [r.fault for r in server.requests("img0.jpg")] == ["slow:1.5", "ok"]
    assert server.sent("img0.jpg") == len(server.files["/img0.jpg"])


def test_backoff_grows_exponentially(server, tmp_path):
    server.faults["/img0.jpg"] = ["500", "500", "500"]
    started = time.monotonic()
    outcome = only(fetch_files([job(server, "img0.jpg")], tmp_path, retries=5, backoff=0.1, timeout=5))
    waited = time.monotonic() - started
    assert (outcome.status, outcome.attempts) == ("downloaded", 4)
    assert 0.35 <= waited < 0.7 + 0.5  # 0.1 + 0.2 + 0.4, each jittered down to no less than half


def test_retry_after_is_honoured(server, tmp_path):
    server.faults["/img0.jpg"] = ["429:1"]
    started = time.monotonic()
    outcome = only(fetch_files([job(server, "img0.jpg")], tmp_path, retries=5, backoff=0.01, timeout=5))
    assert (outcome.status, outcome.attempts) == ("downloaded", 2)
    assert time.monotonic() - started >= 1.0  # the server's 1 s, not the 0.01 s backoff


def test_persistent_5xx_gives_up_with_a_reason(server, tmp_path):
    server.faults["/img0.jpg"] = ["503"] * 10
    outcome = only(fetch_files([job(server, "img0.jpg")], tmp_path, retries=4, backoff=0.01, timeout=5))
    assert (outcome.status, outcome.attempts, outcome.url, outcome.sha256) == ("missing", 4, None, None)
    assert outcome.reason == f"HTTP 503 after 4 attempts ({server.url('img0.jpg')})"
    assert not (tmp_path / "img0.jpg").exists()


def test_connection_refused_gives_up(tmp_path):
    with FaultServer() as gone:
        url = gone.url("x.jpg")  # a port nobody listens on once it is closed
    outcome = only(fetch_files([FetchJob("x.jpg", (Candidate(url),))], tmp_path, retries=2, backoff=0.01))
    assert (outcome.status, outcome.attempts) == ("missing", 2)
    assert outcome.reason.startswith("connection failed after 2 attempts: ConnectError")


# -- verification ---------------------------------------------------------------------------------------------


def test_corrupt_once_is_caught_by_md5_and_refetched(server, tmp_path):
    server.faults["/img3.jpg"] = ["corrupt", "ok"]
    outcome = only(fetch_files([job(server, "img3.jpg", published=True)], tmp_path, **FAST))
    data = server.files["/img3.jpg"]
    assert (outcome.status, outcome.attempts, outcome.received) == ("downloaded", 2, 2 * len(data))
    # the corrupt part was deleted: the second request starts from zero, no range
    assert [(r.status, r.range_start) for r in server.requests("img3.jpg")] == [(200, None), (200, None)]
    assert (tmp_path / "img3.jpg").read_bytes() == data


def test_corrupt_forever_is_missing_with_nothing_left(server, tmp_path):
    server.faults["/img3.jpg"] = ["corrupt"] * 10
    outcome = only(fetch_files([job(server, "img3.jpg", published=True)], tmp_path, retries=3, backoff=0.01))
    assert (outcome.status, outcome.attempts) == ("missing", 3)
    assert outcome.reason == f"md5 mismatch after 3 attempts ({server.url('img3.jpg')})"
    assert list(tmp_path.iterdir()) == []  # no final file, no .part


def test_sha256_and_size_are_checked(server, tmp_path):
    data = server.files["/img0.jpg"]
    wrong_sha = FetchJob("a.jpg", (Candidate(server.url("img0.jpg"), sha256="0" * 64),))
    wrong_size = FetchJob("b.jpg", (Candidate(server.url("img1.jpg"), size=10),))
    right = FetchJob("c.jpg", (Candidate(server.url("img0.jpg"), size=len(data), sha256=sha256(data).upper()),))
    outcomes = fetch_files([wrong_sha, wrong_size, right], tmp_path, retries=2, backoff=0.01)
    # c.jpg shares a.jpg's URL but not its published facts: fetched again, not refused with a.jpg's reason
    assert [o.status for o in outcomes] == ["missing", "missing", "downloaded"]
    assert outcomes[0].reason.startswith("sha256 mismatch after 2 attempts")
    assert outcomes[1].reason.startswith("size mismatch after 2 attempts")
    assert (tmp_path / "c.jpg").read_bytes() == data


def test_a_page_that_is_not_an_image_is_missing(server, tmp_path):
    server.files["/photo.jpg"] = b"<html><body>Sorry, this image is no longer available.</body></html>"
    server.files["/notes.txt"] = b"<html>not an image, not asked to be one</html>"
    jobs = [job(server, "photo.jpg"), job(server, "notes.txt")]
    outcomes = fetch_files(jobs, tmp_path, retries=2, backoff=0.01)
    assert outcomes[0].status == "missing"
    assert outcomes[0].reason.startswith("does not decode as an image after 2 attempts: ")
    assert outcomes[1].status == "downloaded"  # only image names are decoded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("lenient_process", [False, True])
def test_a_truncated_jpeg_with_nothing_published_fails_the_decode(server, tmp_path, monkeypatch, lenient_process):
    from PIL import ImageFile

    # lmms-eval sets PIL's LOAD_TRUNCATED_IMAGES = True when imported: the check must stay strict anyway
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", lenient_process)
    server.files["/cut.jpg"] = server.files["/img0.jpg"][:-600]  # served "complete", but cut short
    outcome = only(fetch_files([job(server, "cut.jpg")], tmp_path, retries=1, backoff=0.01))
    assert outcome.status == "missing" and "does not decode as an image" in outcome.reason
    assert list(tmp_path.iterdir()) == []
    assert ImageFile.LOAD_TRUNCATED_IMAGES is lenient_process  # left as the process had it


# -- candidates, URLs, redirects ------------------------------------------------------------------------------


def test_404_moves_on_to_the_next_candidate_at_once(server, tmp_path):
    candidates = (Candidate(server.url("gone.jpg")), Candidate(server.url("img1.jpg")))
    outcome = only(fetch_files([FetchJob("a.jpg", candidates)], tmp_path, **FAST))
    assert (outcome.status, outcome.url, outcome.attempts) == ("downloaded", server.url("img1.jpg"), 2)
    assert [(r.path, r.status) for r in server.log] == [("/gone.jpg", 404), ("/img1.jpg", 200)]
    assert (tmp_path / "a.jpg").read_bytes() == server.files["/img1.jpg"]


def test_404_on_the_only_candidate_is_missing(server, tmp_path):
    server.faults["/img1.jpg"] = ["404"]
    outcome = only(fetch_files([job(server, "img1.jpg")], tmp_path, **FAST))
    assert (outcome.status, outcome.attempts) == ("missing", 1)
    assert outcome.reason == f"HTTP 404 at {server.url('img1.jpg')}"
    outcome = only(fetch_files([job(server, "img1.jpg")], tmp_path, **FAST))  # a rerun tries again
    assert outcome.status == "downloaded"


def test_only_http_urls_and_redirects(server, tmp_path):
    server.faults["/r1.jpg"] = [f"redirect:{server.url('img2.jpg')}"]
    server.faults["/r2.jpg"] = ["redirect:file:///etc/passwd"]
    jobs = [
        FetchJob("ftp.jpg", (Candidate("ftp://127.0.0.1/x.jpg"),)),
        FetchJob("file.jpg", (Candidate("file:///etc/hostname"),)),
        FetchJob("r1.jpg", (Candidate(server.url("r1.jpg")),)),
        FetchJob("r2.jpg", (Candidate(server.url("r2.jpg")),)),
    ]
    outcomes = fetch_files(jobs, tmp_path, **FAST)
    assert [(o.status, o.attempts) for o in outcomes] == [
        ("missing", 0),
        ("missing", 0),
        ("downloaded", 2),
        ("missing", 1),
    ]
    assert outcomes[0].reason == "not an http(s) URL: ftp://127.0.0.1/x.jpg"
    assert outcomes[3].reason.startswith("redirected out of http/https at ")
    assert (tmp_path / "r1.jpg").read_bytes() == server.files["/img2.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1.jpg"]
    assert len(server.log) == sum(o.attempts for o in outcomes) == 3


def test_a_job_without_candidates_is_missing(server, tmp_path):
    outcomes = fetch_files([FetchJob("a.jpg", ()), job(server, "img0.jpg")], tmp_path, **FAST)
    assert [(o.status, o.reason) for o in outcomes] == [("missing", "no candidate URL"), ("downloaded", None)]


def test_names_outside_the_root_are_refused(server, tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "escape").symlink_to(tmp_path)
    for name in ("../x.jpg", "/tmp/x.jpg", "a/../../x.jpg", "escape/x.jpg", "", "x.jpg.part"):
        with pytest.raises(ValueError):
            fetch_files([FetchJob(name, (Candidate(server.url("img0.jpg")),))], tmp_path / "root")
    assert server.log == []
    with pytest.raises(ValueError, match="same name"):
        fetch_files([job(server, "img0.jpg"), job(server, "img0.jpg")], tmp_path)


# -- what is there already ------------------------------------------------------------------------------------


def test_present_files_are_not_requested(server, tmp_path):
    (tmp_path / "img0.jpg").write_bytes(b"whatever is there is trusted: only complete files get their name")
    outcomes = fetch_files([job(server, "img0.jpg"), job(server, "img1.jpg")], tmp_path, **FAST)
    assert [(o.status, o.attempts, o.received, o.url) for o in outcomes] == [
        ("present", 0, 0, None),
        ("downloaded", 1, len(server.files["/img1.jpg"]), server.url("img1.jpg")),
    ]
    assert [r.path for r in server.log] == ["/img1.jpg"]
    again = fetch_files([job(server, "img0.jpg"), job(server, "img1.jpg")], tmp_path, **FAST)
    assert [o.status for o in again] == ["present", "present"]
    assert len(server.log) == 1


def test_same_url_is_fetched_once_and_linked(server, tmp_path):
    data = server.files["/img2.jpg"]
    jobs = [job(server, "a/one.jpg", path="img2.jpg"), job(server, "b/two.jpg", path="img2.jpg", published=True)]
    outcomes = fetch_files(jobs, tmp_path, **FAST)
    assert [(o.status, o.attempts) for o in outcomes] == [("downloaded", 1), ("linked", 0)]
    assert outcomes[1].received == 0 and outcomes[1].sha256 == outcomes[0].sha256 == sha256(data)
    assert len(server.log) == 1
    one, two = tmp_path / "a" / "one.jpg", tmp_path / "b" / "two.jpg"
    assert one.read_bytes() == two.read_bytes() == data
    assert one.stat().st_ino == two.stat().st_ino  # a hard link, not a second copy
    # a rerun after one name was deleted links it again from the one still there, no request
    two.unlink()
    outcomes = fetch_files(jobs, tmp_path, **FAST)
    assert [o.status for o in outcomes] == ["present", "linked"]
    assert len(server.log) == 1 and two.read_bytes() == data


def test_linking_falls_back_to_a_copy(server, tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("builders.images.download.os.link", no_links)
    jobs = [job(server, "one.jpg", path="img2.jpg"), job(server, "two.jpg", path="img2.jpg")]
    outcomes = fetch_files(jobs, tmp_path, **FAST)
    assert [o.status for o in outcomes] == ["downloaded", "linked"] and len(server.log) == 1
    one, two = tmp_path / "one.jpg", tmp_path / "two.jpg"
    assert one.read_bytes() == two.read_bytes() == server.files["/img2.jpg"]
    assert one.stat().st_ino != two.stat().st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.jpg", "two.jpg"]  # no temporary left


def test_the_part_is_fsynced_before_it_takes_its_name(server, tmp_path, monkeypatch):
    import builders.images.download as download

    synced: set[int] = set()
    renamed: list[tuple[str, bool]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.add(os.fstat(fd).st_ino)

    def replace(source, target) -> None:
        renamed.append((Path(target).name, os.stat(source).st_ino in synced))
        real_replace(source, target)

    monkeypatch.setattr(download.os, "fsync", fsync)
    monkeypatch.setattr(download.os, "replace", replace)
    server.faults["/img1.jpg"] = ["drop"]
    outcomes = fetch_files([job(server, "img0.jpg"), job(server, "img1.jpg", published=True)], tmp_path, **FAST)
    assert [o.status for o in outcomes] == ["downloaded", "downloaded"]
    assert sorted(renamed) == [("img0.jpg", True), ("img1.jpg", True)]


def test_requests_name_cad_vi_and_ask_for_the_bytes_as_they_are(server, tmp_path):
    fetch_files([job(server, "img0.jpg")], tmp_path, **FAST)
    (request,) = server.log
    assert "cad-vi" in request.headers["user-agent"]
    assert request.headers["accept-encoding"] == "identity"  # ranges of the file itself, not of a gzip of it


def test_a_failed_shared_url_fails_every_name_once(server, tmp_path):
    server.faults["/img3.jpg"] = ["404"]
    jobs = [job(server, "x.jpg", path="img3.jpg"), job(server, "y.jpg", path="img3.jpg")]
    outcomes = fetch_files(jobs, tmp_path, **FAST)
    assert [(o.status, o.attempts) for o in outcomes] == [("missing", 1), ("missing", 0)]
    assert outcomes[0].reason == outcomes[1].reason
    assert len(server.log) == 1


def test_an_existing_part_is_resumed(server, tmp_path):
    data = server.files["/img1.jpg"]
    (tmp_path / "img1.jpg.part").write_bytes(data[:1000])
    outcome = only(fetch_files([job(server, "img1.jpg", published=True)], tmp_path, **FAST))
    assert (outcome.status, outcome.attempts, outcome.received) == ("downloaded", 1, len(data) - 1000)
    assert [(r.status, r.range_start, r.sent) for r in server.log] == [(206, 1000, len(data) - 1000)]
    assert (tmp_path / "img1.jpg").read_bytes() == data


def test_a_bad_part_fails_the_md5_and_is_refetched_whole(server, tmp_path):
    data = server.files["/img1.jpg"]
    (tmp_path / "img1.jpg.part").write_bytes(b"\0" * 1000)  # not this file's first bytes
    outcome = only(fetch_files([job(server, "img1.jpg", published=True)], tmp_path, **FAST))
    assert (outcome.status, outcome.attempts) == ("downloaded", 2)
    assert [r.range_start for r in server.log] == [1000, None]
    assert (tmp_path / "img1.jpg").read_bytes() == data


def test_a_part_longer_than_the_file_gets_416_and_restarts(server, tmp_path):
    data = server.files["/img0.jpg"]
    (tmp_path / "img0.jpg.part").write_bytes(data + b"stale tail")
    outcome = only(fetch_files([job(server, "img0.jpg")], tmp_path, **FAST))
    assert (outcome.status, outcome.attempts) == ("downloaded", 2)
    assert [(r.status, r.range_start) for r in server.log] == [(416, len(data) + 10), (200, None)]
    assert (tmp_path / "img0.jpg").read_bytes() == data


def test_a_complete_part_is_checked_and_renamed(server, tmp_path):
    data = server.files["/img0.jpg"]
    (tmp_path / "img0.jpg.part").write_bytes(data)
    (tmp_path / "img1.jpg.part").write_bytes(server.files["/img1.jpg"])
    outcomes = fetch_files([job(server, "img0.jpg"), job(server, "img1.jpg", published=True)], tmp_path, **FAST)
    # size unknown: one range request past the end, 416 "bytes */size" says the part is whole
    assert [(o.status, o.attempts, o.received) for o in outcomes] == [("downloaded", 1, 0), ("downloaded", 0, 0)]
    assert [(r.path, r.status, r.range_start) for r in server.log] == [("/img0.jpg", 416, len(data))]
    assert (tmp_path / "img0.jpg").read_bytes() == data and no_parts(tmp_path) == []


# -- many at once ---------------------------------------------------------------------------------------------


def test_many_files_with_every_fault_at_once(tmp_path):
    faults = [[], ["500"], ["503"], ["429"], ["drop"], ["truncate"], ["corrupt"], ["drop", "ignore_range"]]
    faults.append(["slow:0.1"])  # slower than nothing, well within the timeout
    files = {f"d{i % 3}/f{i:03d}.jpg": noise_jpeg(100 + i) for i in range(45)}
    seen: list[str] = []
    inside = threading.Lock()

    def on_done(outcome: FetchOutcome) -> None:
        assert inside.acquire(blocking=False), "on_done called by two threads at once"
        try:
            time.sleep(0.001)
            seen.append(outcome.name)
        finally:
            inside.release()

    with FaultServer(files) as server:
        for i, name in enumerate(files):
            server.faults["/" + name] = list(faults[i % len(faults)])
        jobs = [job(server, name, published=True) for name in files]
        outcomes = fetch_files(jobs, tmp_path, concurrency=8, on_done=on_done, **FAST)
        log = server.log
    assert sorted(seen) == sorted(files)  # once per job
    assert [o.name for o in outcomes] == list(files)
    assert {o.status for o in outcomes} == {"downloaded"}
    for name, data in files.items():
        assert (tmp_path / name).read_bytes() == data
    expected = {0: 1, 1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 2, 8: 1}
    assert [o.attempts for o in outcomes] == [expected[i % len(faults)] for i in range(len(files))]
    assert len(log) == sum(o.attempts for o in outcomes)  # every request the client made, the server saw
    assert {r.client for r in log} == {"127.0.0.1"}
    assert no_parts(tmp_path) == []


def test_keyboard_interrupt_leaves_parts_and_stops(tmp_path):
    files = {f"k{i}.jpg": noise_jpeg(200 + i) for i in range(12)}
    with FaultServer(files, drip=0.02, drip_chunk=256) as server:
        jobs = [job(server, name, published=True) for name in files]
        main = threading.get_ident()
        running = threading.Event()
        running.set()

        def interrupt_once_parts_grow() -> None:
            deadline = time.monotonic() + 20
            while running.is_set() and time.monotonic() < deadline:
                if any(size(p) for p in tmp_path.glob("*.part")):
                    signal.pthread_kill(main, signal.SIGINT)
                    return
                time.sleep(0.005)

        trigger = threading.Thread(target=interrupt_once_parts_grow)
        trigger.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            try:
                fetch_files(jobs, tmp_path, concurrency=3, **FAST)
            finally:
                running.clear()
        assert time.monotonic() - started < 5
        trigger.join()
        deadline = time.monotonic() + 5  # the workers stop at their next chunk
        while any(t.name.startswith("cadvi-fetch") for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(t.name.startswith("cadvi-fetch") for t in threading.enumerate())
        parts = {p.name.removesuffix(".part"): p.stat().st_size for p in tmp_path.glob("*.part")}
        assert parts and any(parts.values())  # left for the rerun
        assert len({r.path for r in server.log}) < len(files)  # the pending jobs were cancelled
        server.drip = 0
        asked = len(server.log)
        outcomes = fetch_files(jobs, tmp_path, concurrency=3, **FAST)
        assert {o.status for o in outcomes} <= {"downloaded", "present"}
        for name, data in files.items():
            assert (tmp_path / name).read_bytes() == data
        for name, length in parts.items():
            if length == len(files[name]):
                continue  # whole already: renamed without a request
            resumed = server.requests(name)[-1]
            assert resumed.range_start == (length or None)
        assert len(server.log) - asked == sum(o.attempts for o in outcomes)
    assert no_parts(tmp_path) == []


def size(path: Path) -> int:
    """The size of a file that may be renamed away meanwhile (0 then)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from builders.images.download import Candidate, FetchJob, fetch_files
jobs = [FetchJob(name, (Candidate(url, size=size, md5=md5),)) for name, url, size, md5 in json.load(sys.stdin)]
fetch_files(jobs, Path({folder!r}), concurrency=3, retries=5, backoff=0.01, timeout=10)
"""


def test_sigkill_mid_run_then_rerun_fetches_only_what_is_missing(tmp_path):
    files = {f"sub/s{i:02d}.jpg": noise_jpeg(300 + i) for i in range(12)}
    folder = tmp_path / "images"
    with FaultServer(files, drip=0.02, drip_chunk=256) as server:  # ~0.4 s a file
        spec = [(name, server.url(name), len(data), md5(data)) for name, data in files.items()]
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(CHILD).format(root=str(ROOT), folder=str(folder))],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        child.stdin.write(json.dumps(spec).encode())
        child.stdin.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.poll() is None:  # until 2 are complete and 1 is half-way
            parts = {p.relative_to(folder).as_posix().removesuffix(".part"): size(p) for p in folder.rglob("*.part")}
            if len(list(folder.rglob("*.jpg"))) >= 2 and any(0 < n < len(files[k]) // 2 for k, n in parts.items()):
                break
            time.sleep(0.005)
        assert child.poll() is None, f"finished before the kill: {child.stderr.read().decode()[-2000:]}"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stderr.close()
        complete = {p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg")}
        parts = {
            p.relative_to(folder).as_posix().removesuffix(".part"): p.stat().st_size for p in folder.rglob("*.part")
        }
        assert len(complete) >= 2 and len(complete) + len(parts) < len(files)
        assert any(0 < length < len(files[name]) for name, length in parts.items())  # caught mid-body
        for name in complete:
            assert (folder / name).read_bytes() == files[name]
        first_run = server.log
        assert all(r.range_start is None for r in first_run) and len({r.path for r in first_run}) == len(first_run)

        server.drip = 0
        server.clear_log()
        outcomes = fetch_files([FetchJob(n, (Candidate(u, size=s, md5=m),)) for n, u, s, m in spec], folder, **FAST)
        rerun = server.log
    by_name = {o.name: o for o in outcomes}
    for name, data in files.items():
        assert (folder / name).read_bytes() == data
        asked = [r for r in rerun if r.path == "/" + name]
        outcome = by_name[name]
        if name in complete:
            assert outcome.status == "present" and asked == []  # not requested again
        elif name in parts and parts[name] == len(data):
            assert outcome.status == "downloaded" and asked == []  # whole already: checked, renamed
        elif name in parts and parts[name] > 0:
            assert [(r.range_start, r.status, r.sent) for r in asked] == [(parts[name], 206, len(data) - parts[name])]
            assert outcome.received == len(data) - parts[name]
        else:
            assert [(r.range_start, r.status, r.sent) for r in asked] == [(None, 200, len(data))]
        assert outcome.sha256 == sha256(data) or outcome.status == "present"
    assert len(rerun) == sum(o.attempts for o in outcomes)
    assert {r.client for r in first_run + rerun} == {"127.0.0.1"}
    assert no_parts(folder) == []
