"""One resolver for every question file the tasks download: a repository, a path in it, a revision, a sha256.

Why one: a benchmark number is only reproducible from known bytes. Every downloaded question file is
therefore described by a :class:`PinnedFile` and reaches the tasks through :meth:`PinnedFile.resolve`,
which applies the same rules to all of them:

* ``CADVI_EVAL_DATA_DIR=<folder>`` (the local-folder override) wins: ``<folder>/<file name>`` is used
  as it is. It is not enforced, so a hand-made subset works, but a hash that differs from the pin is
  logged as a warning.
* Otherwise the file is fetched once and cached: from GitHub (``raw.githubusercontent.com``, cached in
  ``$CADVI_EVAL_CACHE``, else ``$HF_HOME/cadvi/eval``, else ``~/.cache/huggingface/cadvi/eval``;
  ``CADVI_EVAL_DATA_URL`` replaces the base URL: a mirror, or ``file:///...`` in tests) or from a Hugging
  Face dataset repository (``huggingface_hub``'s own cache). With ``HF_HUB_OFFLINE=1`` nothing is
  fetched over HTTP, and a file that is not cached is an error that says how to point at a local copy.
* The cached file is checked against ``sha256`` on every load; a mismatch is an error naming the file,
  both hashes and the way out. A download that does not match never lands in the cache.
* Trust on first use, where no hash is published (SEED-Bench): without ``sha256`` the hash of the first
  download is recorded next to the cached file (``<file>.sha256``, in ``sha256sum`` format), a log line
  says so, and every later load is checked against that record.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from builders.release.sources import file_sha256

logger = logging.getLogger(__name__)

ANNOTATION_DIR_ENV = "CADVI_EVAL_DATA_DIR"
CACHE_ENV = "CADVI_EVAL_CACHE"
BASE_URL_ENV = "CADVI_EVAL_DATA_URL"
GITHUB = "github"
HUB = "hub"
DOWNLOAD_TIMEOUT_S = 60
RECORD_SUFFIX = ".sha256"


class BenchmarkDataError(ValueError):
    """A question file that is missing, corrupt or not in the official format."""


def cache_dir() -> Path:
    """Where question files downloaded from GitHub are kept (Hub files stay in the Hugging Face cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    hf_home = os.environ.get("HF_HOME") or str(Path("~/.cache/huggingface"))
    return Path(hf_home).expanduser() / "cadvi" / "eval"


def record_of(path: Path) -> Path:
    """Where the hash of the first download of ``path`` is kept (trust on first use): next to it."""
    return path.with_name(path.name + RECORD_SUFFIX)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class PinnedFile:
    """One downloadable question file and the bytes it must have.

    ``sha256=None`` means trust on first use (see the module docstring); ``sha256_env`` names the
    variable that pins it, so that the messages can say how.
    """

    benchmark: str
    repo: str
    path: str
    revision: str
    sha256: str | None
    host: str = GITHUB
    override_env: str = ANNOTATION_DIR_ENV
    sha256_env: str | None = None

    def __post_init__(self) -> None:
        if self.host not in (GITHUB, HUB):
            raise ValueError(f"{self.benchmark}: host must be {GITHUB!r} or {HUB!r}, got {self.host!r}")

    @property
    def name(self) -> str:
        """The file name, also its name in the local-folder override."""
        return PurePosixPath(self.path).name

    @property
    def origin(self) -> str:
        where = "GitHub" if self.host == GITHUB else "the Hub dataset"
        return f"{where} {self.repo}@{self.revision}: {self.path}"

    def resolve(self) -> Path:
        """The local override, or the cached (downloaded if needed) file, checked against its pin."""
        override = os.environ.get(self.override_env)
        if override:
            return self._local(Path(override).expanduser() / self.name, override)
        if self.host == HUB:
            path = self._from_hub()
            self.verify(path)
            return path
        path = cache_dir() / self.revision[:12] / self.name
        if path.is_file():
            self.verify(path)
            return path
        self.verify(self._download(path))
        return path

    def expected(self, path: Path) -> tuple[str | None, str]:
        """The hash the file cached at ``path`` must have, and where it comes from: the pin, else the
        record of the first download (``None``: nothing recorded yet)."""
        if self.sha256 is not None:
            return self.sha256, f"pinned for {self.origin}"
        record = record_of(path)
        if record.is_file():
            return record.read_text().split(maxsplit=1)[0], f"recorded at the first download in {record}"
        return None, "nothing recorded"

    def verify(self, path: Path) -> str:
        """Check ``path`` against :meth:`expected`, recording its hash when nothing is (trust on first
        use); returns the file's sha256."""
        actual = file_sha256(path)
        expected, pinned_by = self.expected(path)
        if expected is None:
            self._record(record_of(path), actual)
            return actual
        if actual != expected:
            raise BenchmarkDataError(
                f"{self.benchmark}: {self.name}: sha256 mismatch for {path}: expected {expected} ({pinned_by}), "
                f"got {actual}; {self._way_out(path)}"
            )
        return actual

    def _record(self, record: Path, actual: str) -> None:
        pin = f"; pin it with {self.sha256_env}={actual}" if self.sha256_env else ""
        try:
            record.write_text(f"{actual}  {self.name}\n")
        except OSError as error:
            logger.warning(
                "%s: no sha256 is pinned for %s and %s could not be written (%s): this load is unchecked%s",
                self.benchmark,
                self.origin,
                record,
                error,
                pin,
            )
            return
        logger.warning(
            "%s: no sha256 is pinned for %s: trusting this first download (sha256 %s), recorded in %s and checked "
            "on every later load%s",
            self.benchmark,
            self.origin,
            actual,
            record,
            pin,
        )

    def _way_out(self, path: Path) -> str:
        files = [str(path)]
        if self.host == HUB and path.resolve() != path:
            files.append(f"the Hugging Face cache blob it links to, {path.resolve()}")
        if self.sha256 is None:
            files.append(str(record_of(path)))
        return f"delete {' and '.join(files)} to download it again, or set {self.override_env}"

    def _local(self, path: Path, override: str) -> Path:
        if not path.is_file():
            raise BenchmarkDataError(
                f"{self.benchmark}: {self.override_env}={override!r} has no {self.name}; put the question file "
                f"there ({self.origin}) or unset {self.override_env} to download it"
            )
        actual = file_sha256(path)
        if self.sha256 is not None and actual != self.sha256:
            logger.warning(
                "%s: %s is not the pinned file (sha256 %s, pinned %s)", self.benchmark, path, actual, self.sha256
            )
        else:
            logger.info("%s: %s (sha256 %s)", self.benchmark, path, actual)
        return path

    def _from_hub(self) -> Path:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(self.repo, self.path, repo_type="dataset", revision=self.revision))
        except Exception as error:  # offline and not cached, no network, a moved file or revision
            raise BenchmarkDataError(
                f"{self.benchmark}: could not get {self.path} from the Hub dataset {self.repo} at revision "
                f"{self.revision!r} ({type(error).__name__}: {error}); set {self.override_env} to a folder "
                f"holding {self.name}"
            ) from error
        logger.info("%s: %s (Hub snapshot %s)", self.benchmark, path, path.parent.name)
        return path

    def _url(self) -> str:
        base = os.environ.get(BASE_URL_ENV)
        if base:
            return base.rstrip("/") + "/" + self.name
        return f"https://raw.githubusercontent.com/{self.repo}/{self.revision}/{self.path}"

    def _download(self, path: Path) -> Path:
        """Fetch the file into ``path`` through a temporary file: a download that does not match its pin
        (or its recorded first download) is never kept."""
        url = self._url()
        if url.startswith(("http://", "https://")) and offline():
            raise BenchmarkDataError(
                f"{self.benchmark}: {self.name} is not cached in {path.parent} and HF_HUB_OFFLINE is set; "
                f"set {self.override_env} to a folder with the question files"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=f".{self.name}.", dir=path.parent)
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            expected, pinned_by = self.expected(path)
            if expected is not None and digest.hexdigest() != expected:
                raise BenchmarkDataError(
                    f"{self.benchmark}: {self.name}: sha256 mismatch for the download from {url}: expected "
                    f"{expected} ({pinned_by}), got {digest.hexdigest()}"
                )
            os.replace(partial, path)
        except urllib.error.URLError as error:
            raise BenchmarkDataError(
                f"{self.benchmark}: could not download {url} ({error}); set {self.override_env} to a folder with "
                "the question files"
            ) from error
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        logger.info("%s: downloaded %s to %s", self.benchmark, url, path)
        return path
