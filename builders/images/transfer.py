"""One file from one source: HTTP requests with range resume, retries with backoff, checks, the atomic rename.

:func:`fetch_candidate` is what :mod:`builders.images.download` runs for each (file, source) in its pool: it
streams the body into ``<name>.part`` (resuming an existing part with ``Range``), hashes it as it arrives, checks
it (size and digests where published, a full decode for an image) and renames it into place; a transient failure
is retried with exponential backoff and jitter (or the server's ``Retry-After``), a permanent one gives the
source up at once.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import httpx

from builders.images.verify import Digests, failed_check

MAX_DELAY = 30.0  # seconds: the backoff cap, and the most a Retry-After is waited
MAX_REDIRECTS = 10
IN_MEMORY = 8 << 20  # bytes: a body up to this size is decoded from memory


@dataclass(frozen=True)
class Candidate:
    """One place a file can be fetched from, with what its source publishes about it."""

    url: str
    size: int | None = None  # bytes, when the source publishes it
    md5: str | None = None  # hex digest, when published (Open Images publishes base64 MD5: the caller converts it)
    sha256: str | None = None  # hex digest, when published


class Stopped(Exception):
    """The run is being interrupted: leave the ``.part`` as it is."""


class Failure(Exception):
    """One failed attempt at a candidate: ``what`` failed (and ``detail``), whether trying it again is useless,
    and how long the server asked to wait before the next try."""

    def __init__(self, what: str, detail: str | None = None, *, permanent: bool = False, delay: float | None = None):
        super().__init__(what)
        self.what, self.detail, self.permanent, self.delay = what, detail, permanent, delay


@dataclass
class Tally:
    attempts: int = 0
    received: int = 0


@dataclass(frozen=True)
class Settings:
    client: httpx.Client
    retries: int
    backoff: float
    timeout: float
    stop: threading.Event
    folders: set[Path] = field(default_factory=set)  # folders known to exist


class GivenUp(Exception):
    """A candidate is given up: a permanent failure, or ``retries`` failed attempts (``retryable``: a later run
    may succeed). The message says why."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def fetch_candidate(
    settings: Settings, candidate: Candidate, final: Path, part: Path, tally: Tally, image: bool
) -> str:
    """Attempt one candidate until it delivers a verified file (its SHA-256) or is given up."""
    failures = 0
    while True:
        if settings.stop.is_set():
            raise Stopped
        try:
            return _attempt(settings, candidate, final, part, tally, image)
        except Failure as failure:
            detail = f": {failure.detail}" if failure.detail else ""
            if failure.permanent:
                raise GivenUp(f"{failure.what} at {candidate.url}{detail}", retryable=False) from None
            failures += 1
            if failures >= settings.retries:
                message = f"{failure.what} after {failures} attempts{detail} ({candidate.url})"
                raise GivenUp(message, retryable=True) from None
            delay = failure.delay
            if delay is None:
                delay = settings.backoff * 2 ** (failures - 1) * random.uniform(0.5, 1.0)
            if settings.stop.wait(min(delay, MAX_DELAY)):
                raise Stopped from None


def _attempt(settings: Settings, candidate: Candidate, final: Path, part: Path, tally: Tally, image: bool) -> str:
    """One request for the candidate (resuming the ``.part`` by range), the body streamed and hashed into the
    part, the checks, the rename; the final file's SHA-256. Raises :class:`Failure` for anything that failed."""
    try:
        offset = part.stat().st_size
    except FileNotFoundError:
        offset = 0
    if candidate.size is not None and offset > candidate.size:
        part.unlink()
        offset = 0
    digests = Digests(md5=candidate.md5 is not None)
    if offset and offset == candidate.size:  # complete already (killed before the rename): check it, no request
        return _commit_whole_part(candidate, final, part, digests, image)
    headers = {"Accept-Encoding": "identity"}  # byte ranges of the file itself, not of a compressed form
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = _send(settings, candidate.url, headers, tally)
        try:
            status = response.status_code
            if status == 206 and offset:
                if (start := _content_range(response)[0]) != offset:
                    part.unlink()
                    raise Failure("HTTP 206 of the wrong range", f"bytes {start}- for bytes {offset}-")
                digests.update_from(part)
                mode = "a+b"  # (readable: the decode reads the file back through the same handle)
            elif status in (200, 206):  # 200 to a Range: the server ignored it, the body is the whole file
                mode = "w+b"
            elif status == 416 and offset:
                if _content_range(response)[1] == offset:  # the part already holds the whole file
                    return _commit_whole_part(candidate, final, part, digests, image)
                part.unlink()
                raise Failure("HTTP 416 to a resume", f"a stale {offset:,}-byte part", delay=0.0)
            elif status == 429 or status >= 500:
                raise Failure(f"HTTP {status}", delay=_retry_after(response))
            else:
                raise Failure(f"HTTP {status}", permanent=True)
            expected = response.headers.get("content-length")
            received = 0
            # a whole small body is also kept in memory, to decode it there rather than read it back
            whole = mode == "w+b" and expected is not None and expected.isdigit() and int(expected) <= IN_MEMORY
            body: list[bytes] | None = [] if whole else None
            if part.parent not in settings.folders:  # (a set: mkdir costs a syscall and an exception when there)
                part.parent.mkdir(parents=True, exist_ok=True)
                settings.folders.add(part.parent)
            with part.open(mode) as out:
                for chunk in response.iter_raw():  # as it arrives (a chunk_size would hold back up to that much)
                    if settings.stop.is_set():
                        raise Stopped
                    out.write(chunk)
                    out.flush()  # what arrived is on disk for the resume, whatever happens next
                    digests.update(chunk)
                    if body is not None:
                        body.append(chunk)
                    received += len(chunk)
                    tally.received += len(chunk)
                if expected is not None and expected.isdigit() and received < int(expected):
                    raise Failure("body shorter than its Content-Length", f"{received:,} of {int(expected):,} bytes")
                memory = None if body is None else b"".join(body)
                return _commit(candidate, final, part, out, digests, image, memory)
        finally:
            response.close()
    except httpx.TimeoutException as error:
        raise Failure("timed out", describe_error(error)) from None
    except httpx.TransportError as error:
        raise Failure("connection failed", describe_error(error)) from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise Failure("request failed", describe_error(error), permanent=True) from None


def _send(settings: Settings, url: str, headers: dict[str, str], tally: Tally) -> httpx.Response:
    """GET ``url`` (streamed), following redirects one hop at a time so that each hop is counted and none
    leaves http/https."""
    request = settings.client.build_request("GET", url, headers=headers, timeout=settings.timeout)
    for _ in range(MAX_REDIRECTS + 1):
        tally.attempts += 1
        response = settings.client.send(request, stream=True, follow_redirects=False)
        if response.next_request is None:
            return response
        response.close()
        request = response.next_request
        if request.url.scheme not in ("http", "https"):
            raise Failure("redirected out of http/https", str(request.url), permanent=True)
    raise Failure("too many redirects", permanent=True)


def _commit(
    candidate: Candidate,
    final: Path,
    part: Path,
    handle: BinaryIO,
    digests: Digests,
    image: bool,
    memory: bytes | None = None,
) -> str:
    """Check the complete part (open as ``handle``, readable; its bytes in ``memory`` when small and at hand);
    when it passes, fsync it and rename it to its final name, so that the name only ever holds the whole file;
    when not, delete it."""
    handle.flush()
    source = handle if memory is None else io.BytesIO(memory)
    failure = failed_check(
        source, digests, size=candidate.size, md5=candidate.md5, sha256=candidate.sha256, image=image
    )
    if failure is not None:
        handle.close()
        part.unlink(missing_ok=True)
        raise Failure(*failure)
    os.fsync(handle.fileno())
    handle.close()
    os.replace(part, final)
    return digests.sha256


def _commit_whole_part(candidate: Candidate, final: Path, part: Path, digests: Digests, image: bool) -> str:
    """A part that already holds the whole file (a run killed between the last byte and the rename)."""
    digests.update_from(part)
    with part.open("rb") as handle:
        return _commit(candidate, final, part, handle, digests, image)


def _content_range(response: httpx.Response) -> tuple[int | None, int | None]:
    """The first byte and the total length of ``Content-Range: bytes a-b/total`` (or ``bytes */total``)."""
    value = response.headers.get("content-range", "")
    unit, _, spec = value.partition(" ")
    span, _, total = spec.partition("/")
    start = span.partition("-")[0]
    if unit.lower() != "bytes":
        return None, None
    return (int(start) if start.isdigit() else None), (int(total) if total.isdigit() else None)


def _retry_after(response: httpx.Response) -> float | None:
    """The wait a 429/503 asks for (seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def url_scheme(url: str) -> str | None:
    try:
        return httpx.URL(url).scheme
    except httpx.InvalidURL:
        return None


def describe_error(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
