"""Download many files from HTTP(S) sources, concurrently, resumably, and never leaving a bad file behind.

``cadvi images fetch`` brings in tens of thousands of images from servers that drop connections, throttle,
answer 5xx for a while, serve a truncated body or an HTML error page with a 200. So each file is streamed into
``<name>.part``, hashed as it arrives, checked (size and digests when the source publishes them, then a full
decode for an image) and only then renamed to ``<name>``: a final file exists only complete and verified, and a
rerun (after a crash, a SIGKILL, a Ctrl-C) fetches exactly what is missing, resuming each ``.part`` with a
``Range`` request. Transient failures are retried with exponential backoff and jitter; a permanent one (404,
403, 410, ...) moves on to the next candidate source at once. Against real image hosts network waits bound the
speed, so a thread pool over one shared, pooled ``httpx.Client`` gives the concurrency.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx

from builders.images.transfer import (
    Candidate,
    GivenUp,
    Settings,
    Stopped,
    Tally,
    fetch_candidate,
    url_scheme,
)
from builders.images.verify import check_file, is_image

__all__ = ["Candidate", "FetchJob", "FetchOutcome", "fetch_files"]

USER_AGENT = "cad-vi/0.1 (image fetch for the CaD-VI datasets; https://arxiv.org/abs/2406.09240)"
MAX_DELAY = 30.0  # seconds: the backoff cap, and the most a Retry-After is waited
MAX_REDIRECTS = 10
IN_MEMORY = 8 << 20  # bytes: a body up to this size is decoded from memory


@dataclass(frozen=True)
class FetchJob:
    name: str  # posix relative path under the root, already checked safe by the caller (checked again here)
    candidates: tuple[Candidate, ...]  # tried in order; the next one only after a permanent failure of the previous


@dataclass(frozen=True)
class FetchOutcome:
    name: str
    status: str  # "downloaded" | "present" (nothing fetched) | "linked" (same URL as another job) | "missing"
    url: str | None  # the candidate that succeeded (None if missing/present)
    received: int  # bytes received over the network for this file in this run
    attempts: int  # HTTP requests made for this file in this run (redirect hops included)
    reason: str | None  # why it is missing, one readable line
    sha256: str | None  # sha256 of the final file when downloaded/linked
    retryable: bool = False  # missing after transient failures only (retries used up): a later run may succeed


def fetch_files(
    jobs: Sequence[FetchJob],
    root: Path,
    *,
    concurrency: int = 32,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 30.0,
    on_done: Callable[[FetchOutcome], None] | None = None,
    client: httpx.Client | None = None,
) -> list[FetchOutcome]:
    """Fetch every job's file to ``root / job.name``; the outcomes in the order of ``jobs``.

    ``retries`` is the number of attempts a candidate gets (each failed request or failed check is one) before it
    is given up; the waits between them grow as ``backoff * 2**k`` (with jitter, at most 30 s), or follow the
    server's ``Retry-After`` on 429/503. ``timeout`` applies to connecting and to each read. ``on_done`` gets
    each outcome once, from a worker thread, one call at a time. Jobs sharing their first URL are fetched once and
    hard-linked. On KeyboardInterrupt the pending jobs are cancelled, ``.part`` files stay for the next run to
    resume, and the interrupt is re-raised. ``client``: a caller's own (then not closed here; redirects are
    followed here, one hop at a time, whatever its setting).
    """
    root = Path(root).resolve()
    folders: dict[str, Path] = {}
    finals = [_final_path(root, job.name, folders) for job in jobs]
    if len(set(finals)) != len(finals):
        raise ValueError("two jobs have the same name")
    groups: dict[str, list[int]] = {}
    for index, job in enumerate(jobs):
        groups.setdefault(job.candidates[0].url if job.candidates else f"\0{index}", []).append(index)
    outcomes: list[FetchOutcome | None] = [None] * len(jobs)
    lock = threading.Lock()

    def finish(index: int, outcome: FetchOutcome) -> None:
        outcomes[index] = outcome
        if on_done is not None:
            with lock:
                on_done(outcome)

    own = client is None
    if client is None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = httpx.Client(limits=limits, timeout=timeout, follow_redirects=True, headers={"User-Agent": USER_AGENT})
    settings = Settings(client, max(1, retries), backoff, timeout, threading.Event())
    executor = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="cadvi-fetch")
    countdown = _Countdown(len(groups))
    try:
        for members in groups.values():
            future = executor.submit(_fetch_group, settings, [(i, jobs[i], finals[i]) for i in members], finish)
            future.add_done_callback(countdown.settled)
        while not countdown.done.wait(0.2):  # a timeout, so that a Ctrl-C reaches the main thread meanwhile
            pass
        if countdown.error is not None:
            raise countdown.error  # a worker's unexpected error (a bug, a full disk) stops the run
    except BaseException:
        settings.stop.set()  # the running workers stop at their next chunk or wait, leaving their .part
        executor.shutdown(wait=False, cancel_futures=True)
        if own:
            client.close()  # breaks the reads in flight, so that nothing waits out a timeout
        raise
    executor.shutdown(wait=True)
    if own:
        client.close()
    done = [outcome for outcome in outcomes if outcome is not None]
    assert len(done) == len(jobs), "a job ended without an outcome"
    return done


class _Countdown:
    """The groups still running, and the first unexpected error of one: O(1) per completion, where
    ``concurrent.futures.wait`` over thousands of futures costs O(n) each time it is called."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._lock = threading.Lock()
        self.done = threading.Event()
        self.error: BaseException | None = None
        if count == 0:
            self.done.set()

    def settled(self, future: Future) -> None:
        error = None if future.cancelled() else future.exception()
        with self._lock:
            self._count -= 1
            if error is not None and self.error is None:
                self.error = error
            if self._count == 0 or error is not None:
                self.done.set()


def _final_path(root: Path, name: str, folders: dict[str, Path]) -> Path:
    """``root / name``, refusing anything that is not a plain relative path that stays under ``root`` once resolved
    (a symlinked folder or file pointing elsewhere included). ``folders`` caches the resolved folders: resolving
    each name whole would cost more than the rest of the run's bookkeeping."""
    pure = PurePosixPath(name)
    if (
        not pure.name
        or pure.is_absolute()
        or ".." in pure.parts
        or "\\" in name
        or name.endswith(".part")
        or pure.name == "."
    ):
        raise ValueError(f"unsafe file name {name!r}: a relative posix path without '..' is expected")
    folder = str(pure.parent)
    resolved = folders.get(folder)
    if resolved is None:
        resolved = folders[folder] = (root / folder).resolve()
    final = resolved / pure.name
    if not resolved.is_relative_to(root) or (final.is_symlink() and not final.resolve().is_relative_to(root)):
        raise ValueError(f"file name {name!r} leads outside {root}")
    return final


def _fetch_group(
    settings: Settings, members: list[tuple[int, FetchJob, Path]], finish: Callable[[int, FetchOutcome], None]
) -> None:
    """The jobs sharing one first URL: the files already there are ``present``; the others are hard links of one
    of them, or of the one download; when that fails, each of the others tries what candidates it has left."""
    source: Path | None = None
    given_up: dict[
        Candidate, tuple[str, bool]
    ] = {}  # why (and retryable?), for this group: the same URL *and* published facts fail the same
    todo = []
    for index, job, final in members:
        if final.exists():
            finish(index, FetchOutcome(job.name, "present", None, 0, 0, None, None))
            source = source or final
        else:
            todo.append((index, job, final))
    for index, job, final in todo:
        if settings.stop.is_set():
            return
        if source is not None and (outcome := _link(source, job, final)) is not None:
            finish(index, outcome)
            continue
        try:
            outcome = _download(settings, job, final, given_up)
        except Stopped:
            return
        if outcome.status == "downloaded":
            source = final
        finish(index, outcome)


def _link(source: Path, job: FetchJob, final: Path) -> FetchOutcome | None:
    """Make ``final`` a hard link (or, where the file system refuses, an atomic copy) of ``source``, once the
    source passes this job's own published checks; None when it does not (then the job downloads)."""
    first = job.candidates[0]
    failure, sha256 = check_file(source, size=first.size, md5=first.md5, sha256=first.sha256, image=is_image(job.name))
    if failure is not None:
        return None
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, final)
    except FileExistsError:
        pass
    except OSError:  # no hard links here (another device, a file system without them): copy, atomically
        handle, temporary = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        os.close(handle)
        try:
            shutil.copyfile(source, temporary)
            with open(temporary, "rb+") as copy:
                os.fsync(copy.fileno())
            os.replace(temporary, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    return FetchOutcome(job.name, "linked", first.url, 0, 0, None, sha256)


def _download(
    settings: Settings, job: FetchJob, final: Path, given_up: dict[Candidate, tuple[str, bool]]
) -> FetchOutcome:
    """Try the job's candidates in order (skipping those the group already gave up) until one delivers."""
    tally = Tally()
    part = final.with_name(final.name + ".part")
    reasons = []
    retryable = False
    tried = False
    for candidate in job.candidates:
        if candidate in given_up:
            reason, transient = given_up[candidate]
            reasons.append(reason)
            retryable |= transient
            continue
        if tried:  # bytes from one source are never continued from another's
            part.unlink(missing_ok=True)
        tried = True
        transient = False
        if url_scheme(candidate.url) not in ("http", "https"):
            reason = f"not an http(s) URL: {candidate.url}"
        else:
            try:
                sha256 = fetch_candidate(settings, candidate, final, part, tally, is_image(job.name))
                return FetchOutcome(job.name, "downloaded", candidate.url, tally.received, tally.attempts, None, sha256)
            except GivenUp as error:
                reason, transient = str(error), error.retryable
        given_up[candidate] = (reason, transient)
        reasons.append(reason)
        retryable |= transient
    reason = "; ".join(reasons) if reasons else "no candidate URL"
    return FetchOutcome(job.name, "missing", None, tally.received, tally.attempts, reason, None, retryable)
