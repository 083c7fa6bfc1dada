"""Where the benchmark questions and images come from, and how lmms-eval gets them as docs.

Question files
    The official files of the original release (GitHub ``wlin-at/CaD-VI``, folder ``eval_json_files/``)
    at a pinned commit. By default :func:`annotation_file` downloads each file once from the raw-file
    URL, caches it (``$CADVI_EVAL_CACHE``, else ``$HF_HOME/cadvi/eval``, else
    ``~/.cache/huggingface/cadvi/eval``) and checks its pinned sha256; a mismatch is an error naming the
    file and both hashes. ``CADVI_EVAL_DATA_DIR=<folder>`` uses local copies instead (same file names;
    not hash-checked, so a hand-made subset works, but a differing hash is logged as a warning).
    ``CADVI_EVAL_DATA_URL`` replaces the base URL (a mirror, or ``file:///...`` in tests). With
    ``HF_HUB_OFFLINE=1`` nothing is downloaded over HTTP: a missing cache is an error that says so.

Images
    Never shipped (licences). Each benchmark reads its own image root: ``CADVI_<NAME>_IMAGE_ROOT``
    (e.g. ``CADVI_BISON_IMAGE_ROOT``), else ``$CADVI_EVAL_IMAGE_ROOT/<name>``. Names are resolved with
    :class:`builders.release.images.ImageResolver`, so a name that would leave the root is rejected,
    and every image is checked when the docs are built: a missing file fails before any model runs,
    naming the benchmark, the image root and the file.

How the docs reach lmms-eval (0.7.3)
    A task YAML cannot expand ``$VAR`` or ``~``, and ``datasets`` 5 no longer runs loading scripts,
    so the YAML cannot point at the data itself. Each task YAML therefore says
    ``dataset_path: json`` with ``data_files`` = ``../_placeholder.yaml`` (a one-line JSON document
    shared by all tasks; lmms-eval resolves relative ``data_files`` against the YAML's folder, and the
    ``.yaml`` suffix makes it ship with the package's YAML package-data and makes lmms-eval's task
    indexer skip it as "not a task"). lmms-eval loads that one row offline, then calls the task's
    ``process_docs``, which ignores it and returns :func:`load_docs` of the benchmark: the rows of the
    official file, validated, with their resolved image paths, as a ``datasets.Dataset``. Everything
    configurable is read from the environment at that moment, so the YAML stays static.
    (Alternatives rejected: a ``class:`` Python task couples us to lmms-eval's ``Task`` internals;
    ``load_from_disk`` needs a prepared folder; ``dataset_path`` to a local folder needs the data in
    the package.)

Image layouts (the same table is in ``eval_tasks/README.md``); the image root is
``CADVI_<NAME>_IMAGE_ROOT`` or ``$CADVI_EVAL_IMAGE_ROOT/<name>``:

========== ============================= ============================== =========================================
name       names in the question file    files under the image root     where the images come from
========== ============================= ============================== =========================================
bison      COCO_val2014_000000143961.jpg the same names, flat           COCO 2014 val (BISON is built on it):
                                                                        point the root at ``val2014/``
svo_probes 05617.jpg                     the same names, flat           SVO-Probes publishes image URLs only; the
                                                                        5-digit names are the CaD-VI authors' own
                                                                        numbering, with no published mapping that
                                                                        we could find (may not be reproducible)
nlvr2      test1-463-0-img0.png          the same names, flat           NLVR2 ``test1`` images (NLVR2 authors)
eqben      eqbensd/844/image0.png        <subset>/<id>/image{0,1}.png   EqBen release (Wang et al., ICCV 2023):
                                                                        eqbensd, eqbenag, eqbengebc,
                                                                        eqbenkubric_{attr,cnt,loc}
cola       0_2390970.jpg                 <group>_<id>.jpg, or <id>.jpg, COLA multi-object set (Ray et al., 2023),
                                         or VG_100K{,_2}/<id>.jpg       Visual Genome images; that <id> is the VG
                                                                        image id is our belief, not documented
cadqa      VG_100K_2/2406825.jpg         the same relative paths        Visual Genome (VG_100K, VG_100K_2)
========== ============================= ============================== =========================================
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.release.images import ImageResolver
from builders.release.origin import CADQA_ROWS, CADQA_SHA256
from builders.release.sources import file_sha256, iter_json_records
from builders.release.validate import MAX_PROBLEMS_SHOWN, ProblemCollector, UnsafeImageNameError, checked_relative_name

logger = logging.getLogger(__name__)

PINNED_COMMIT = "c8ae4101d28db5668b2e245f1586456adf97d344"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/wlin-at/CaD-VI/{PINNED_COMMIT}/eval_json_files/"

ANNOTATION_DIR_ENV = "CADVI_EVAL_DATA_DIR"
IMAGE_ROOT_ENV = "CADVI_EVAL_IMAGE_ROOT"
CACHE_ENV = "CADVI_EVAL_CACHE"
BASE_URL_ENV = "CADVI_EVAL_DATA_URL"
IMAGE_PLACEHOLDER = "<image>"
DOWNLOAD_TIMEOUT_S = 60


class BenchmarkDataError(ValueError):
    """A question file that is missing, corrupt or not in the official format."""


class MissingBenchmarkImageError(FileNotFoundError):
    """An image of a benchmark question that is not under the benchmark's image root."""


@dataclass(frozen=True)
class Benchmark:
    """One official question file and where its images live."""

    name: str
    file: str
    sha256: str
    rows: int
    answers: tuple[str, ...] | None
    images: str
    alternative_names: Callable[[str], Sequence[str]] | None = field(default=None, compare=False, repr=False)

    @property
    def image_env(self) -> str:
        """``CADVI_<NAME>_IMAGE_ROOT``, e.g. ``CADVI_SVO_PROBES_IMAGE_ROOT``."""
        return f"CADVI_{self.name.upper()}_IMAGE_ROOT"

    def candidate_names(self, name: str) -> list[str]:
        """The names tried in the image root, the official one first."""
        extra = self.alternative_names(name) if self.alternative_names else ()
        return [name, *(alternative for alternative in extra if alternative != name)]


def _cola_names(name: str) -> list[str]:
    """COLA's ``<group>_<vg id>.jpg`` also found as Visual Genome's own ``<vg id>.jpg``."""
    match = re.fullmatch(r"\d+_(\d+\.jpg)", name)
    if not match:
        return []
    vg_name = match.group(1)
    return [vg_name, f"VG_100K/{vg_name}", f"VG_100K_2/{vg_name}"]


BENCHMARKS: dict[str, Benchmark] = {
    benchmark.name: benchmark
    for benchmark in (
        Benchmark(
            "bison",
            "BISON.jsonl",
            "3253673dfe0f9c2205e8f1091d2ad0aa91bb20e02cdf0761b1e0a2e1a820545f",
            150,
            ("A", "B"),
            "COCO 2014 val images (folder val2014/)",
        ),
        Benchmark(
            "svo_probes",
            "SVO_Probes.jsonl",
            "a3e3a87a32a387b32c09f0e59e974615d2bd8a686ae82f0db2e470b832864376",
            1500,
            ("A", "B"),
            "SVO-Probes images (downloaded from the dataset's URLs; 5-digit names as in the question file)",
        ),
        Benchmark(
            "nlvr2",
            "NLVR2.jsonl",
            "493a5102d44d17e52ca444abcdc56511242b552595e295a877e533bb5b39bf77",
            150,
            ("True", "False"),
            "NLVR2 test1 images (folder test1/, flat)",
        ),
        Benchmark(
            "eqben",
            "EQBEN.jsonl",
            "4b3794b3b8ac647eb7174ef9105babd20ac4c86a4c419848e4fc54d6d28f791c",
            240,
            ("A", "B"),
            "EqBen images: the folder holding eqbensd/, eqbenag/, eqbengebc/, eqbenkubric_*/",
        ),
        Benchmark(
            "cola",
            "COLA.jsonl",
            "59f2b5b0f2661b8bf77f9686a5020497b87425fd2c5d4c458fa2af69a4bbb97a",
            420,
            ("A", "B"),
            "COLA multi-object images (Visual Genome), named <group>_<vg id>.jpg or <vg id>.jpg",
            _cola_names,
        ),
        Benchmark(
            "cadqa",
            "CaD_QA_eval.jsonl",
            CADQA_SHA256,
            CADQA_ROWS,
            None,
            "Visual Genome images (the folder holding VG_100K/ and VG_100K_2/)",
        ),
    )
}


def benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


# ---------------------------------------------------------------------------------------------------
# Question files


def cache_dir() -> Path:
    """Where downloaded question files are kept."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    hf_home = os.environ.get("HF_HOME") or str(Path("~/.cache/huggingface"))
    return Path(hf_home).expanduser() / "cadvi" / "eval"


def annotation_file(name: str) -> Path:
    """The question file of benchmark ``name``: the local override, or the verified cached download."""
    spec = benchmark(name)
    override = os.environ.get(ANNOTATION_DIR_ENV)
    if override:
        path = Path(override).expanduser() / spec.file
        if not path.is_file():
            raise BenchmarkDataError(
                f"{spec.name}: {ANNOTATION_DIR_ENV}={override!r} has no {spec.file}; put the official file "
                f"there or unset {ANNOTATION_DIR_ENV} to download it"
            )
        actual = file_sha256(path)
        if actual != spec.sha256:
            logger.warning("%s: %s is not the official file (sha256 %s, official %s)", name, path, actual, spec.sha256)
        return path
    path = cache_dir() / PINNED_COMMIT[:12] / spec.file
    if path.is_file():
        _verify(path, spec)
        return path
    return _download(spec, path)


def _verify(path: Path, spec: Benchmark) -> None:
    actual = file_sha256(path)
    if actual != spec.sha256:
        raise BenchmarkDataError(
            f"{spec.file}: sha256 mismatch for {path}: expected {spec.sha256} (commit {PINNED_COMMIT}), "
            f"got {actual}; delete the file to download it again, or set {ANNOTATION_DIR_ENV}"
        )


def _download(spec: Benchmark, path: Path) -> Path:
    base = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    url = base.rstrip("/") + "/" + spec.file
    if url.startswith(("http://", "https://")) and os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true"):
        raise BenchmarkDataError(
            f"{spec.name}: {spec.file} is not cached in {path.parent} and HF_HUB_OFFLINE is set; "
            f"set {ANNOTATION_DIR_ENV} to a folder with the official question files"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{spec.file}.", dir=path.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != spec.sha256:
            raise BenchmarkDataError(
                f"{spec.file}: sha256 mismatch for the download from {url}: expected {spec.sha256} "
                f"(commit {PINNED_COMMIT}), got {digest.hexdigest()}"
            )
        os.replace(partial, path)
    except urllib.error.URLError as error:
        raise BenchmarkDataError(
            f"{spec.name}: could not download {url} ({error}); set {ANNOTATION_DIR_ENV} to a folder with the "
            "official question files"
        ) from error
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    logger.info("downloaded %s to %s", url, path)
    return path


def read_rows(name: str, path: str | Path | None = None) -> list[dict[str, Any]]:
    """The validated rows of benchmark ``name`` (from ``path``, default :func:`annotation_file`).

    Every problem of the file is reported at once, each as ``<benchmark>: file:row: reason``.
    """
    spec = benchmark(name)
    path = Path(path) if path is not None else annotation_file(name)
    problems = ProblemCollector()
    rows = []
    for line_number, row in iter_json_records(path, problems):
        problem = _row_problem(row, spec)
        if problem:
            problems.add(str(path), line_number, problem)
            continue
        problems.check_unique(str(path), line_number, "question_id", str(row["question_id"]))
        rows.append(row)
    if problems:
        listed = "\n".join(f"  {spec.name}: {problem}" for problem in problems.problems[:MAX_PROBLEMS_SHOWN])
        raise BenchmarkDataError(f"{spec.name}: {len(problems.problems)} problem(s) in {path}:\n{listed}")
    if not rows:
        raise BenchmarkDataError(f"{spec.name}: {path} holds no questions")
    return rows


def _row_problem(row: Any, spec: Benchmark) -> str | None:
    if not isinstance(row, dict):
        return "a row must be a JSON object"
    missing = [key for key in ("image", "text", "answer", "question_id") if key not in row]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    images = row["image"]
    if not isinstance(images, list) or not images or not all(isinstance(name, str) and name for name in images):
        return "'image' must be a non-empty list of file names"
    if not isinstance(row["text"], str) or row["text"].count(IMAGE_PLACEHOLDER) != len(images):
        return f"'text' must hold one {IMAGE_PLACEHOLDER} placeholder per image ({len(images)})"
    if spec.answers is not None and row["answer"] not in spec.answers:
        return f"answer {row['answer']!r} is not one of {', '.join(spec.answers)}"
    try:
        for name in images:
            checked_relative_name(name)
    except UnsafeImageNameError as error:
        return str(error)
    return None


# ---------------------------------------------------------------------------------------------------
# Images


def image_root(name: str) -> Path:
    """The image root of benchmark ``name`` from the environment (see the module docstring)."""
    spec = benchmark(name)
    if os.environ.get(spec.image_env):
        return Path(os.environ[spec.image_env]).expanduser()
    if os.environ.get(IMAGE_ROOT_ENV):
        return Path(os.environ[IMAGE_ROOT_ENV]).expanduser() / spec.name
    raise MissingBenchmarkImageError(
        f"{spec.name}: no image root; set {spec.image_env} to the folder with the {spec.images}, "
        f"or {IMAGE_ROOT_ENV} to a folder holding a '{spec.name}/' sub-folder"
    )


def resolve_images(name: str, rows: Sequence[dict[str, Any]], root: str | Path | None = None) -> list[list[str]]:
    """Absolute image paths per row; the first missing image is an error naming benchmark, root and file."""
    spec = benchmark(name)
    root = Path(root) if root is not None else image_root(name)
    if not root.is_dir():
        raise MissingBenchmarkImageError(
            f"{spec.name}: image root {str(root)!r} is not a folder (set {spec.image_env}; expected: {spec.images})"
        )
    resolver = ImageResolver(root)
    paths: list[list[str]] = []
    for row in rows:
        row_paths = []
        for image in row["image"]:
            found = next(filter(None, (resolver.resolve(c) for c in spec.candidate_names(image))), None)
            if found is None:
                raise MissingBenchmarkImageError(
                    f"{spec.name}: image {image!r} (question {row['question_id']!r}) is not in the image root "
                    f"{str(root)!r}; expected: {spec.images}"
                )
            row_paths.append(str(found))
        paths.append(row_paths)
    return paths


# ---------------------------------------------------------------------------------------------------
# Docs for lmms-eval


def load_docs(
    name: str,
    *,
    with_images: bool = True,
    annotations: str | Path | None = None,
    root: str | Path | None = None,
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
):
    """The benchmark's docs as a ``datasets.Dataset``: the official fields plus ``image_paths``.

    ``extra(row)`` adds task-specific fields (EQBEN's ``group`` and ``subset``...). ``with_images=False``
    skips image resolution (``image_paths`` is then empty): for counting and scoring tests.
    """
    import datasets

    rows = read_rows(name, annotations)
    paths = resolve_images(name, rows, root) if with_images else [[] for _ in rows]
    docs = []
    for row, row_paths in zip(rows, paths, strict=True):
        doc = {
            "question_id": str(row["question_id"]),
            "image": list(row["image"]),
            "image_paths": row_paths,
            "text": row["text"],
            "answer": str(row["answer"]),
            **({"category": str(row["category"])} if "category" in row else {}),
        }
        if extra is not None:
            doc.update(extra(row))
        docs.append(doc)
    return datasets.Dataset.from_list(docs)


def process_docs_for(name: str, **kwargs: Any) -> Callable[[Any], Any]:
    """A ``process_docs`` for a task YAML: drops lmms-eval's placeholder rows, returns :func:`load_docs`."""

    def process_docs(_placeholder: Any) -> Any:
        return load_docs(name, **kwargs)

    process_docs.__name__ = f"process_docs_{name}"
    return process_docs


def open_images(doc: dict[str, Any]) -> list:
    """The doc's images as RGB PIL images, in the order of the question's ``<image>`` placeholders."""
    from PIL import Image

    images = []
    for path in doc["image_paths"]:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images


def prompt_without_placeholders(text: str) -> str:
    """The question with its ``<image>`` placeholders removed, for models that put images first."""
    lines = [line.replace(IMAGE_PLACEHOLDER, "").rstrip() for line in text.split("\n")]
    return "\n".join(lines)


def interleaved_messages(text: str, images: Sequence[Any]) -> list[dict[str, Any]]:
    """One user turn with each image where its ``<image>`` placeholder is, as lmms-eval's chat models take it.

    This is lmms-eval's interleaved convention (as in its MMMU task): text segments and images in the
    official order, placeholders removed. A chat template that renders content in order (LLaVA's
    original ``vicuna_v1`` prompt, the tiny test model) reproduces the official prompt exactly; one
    that renders all images first (llava-1.5-hf's) still receives exactly one image token per image.
    """
    segments = text.split(IMAGE_PLACEHOLDER)
    if len(segments) - 1 != len(images):
        raise ValueError(f"{len(segments) - 1} {IMAGE_PLACEHOLDER} placeholders for {len(images)} images")
    content: list[dict[str, Any]] = []
    for index, segment in enumerate(segments):
        if segment:
            content.append({"type": "text", "text": segment})
        if index < len(images):
            content.append({"type": "image", "url": images[index]})
    return [{"role": "user", "content": content}]


# ---------------------------------------------------------------------------------------------------
# The doc_to_* functions every two-image task uses (re-exported by the tasks' utils.py).


def doc_to_visual(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> list:
    """``[PIL, PIL]``: the two images, in placeholder order."""
    return open_images(doc)


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The official question text, placeholders kept: lmms-eval's *simple* ``llava_hf`` keeps a context
    that already holds ``<image>`` as it is (each placeholder becomes that image's tokens in place, as in
    the original LLaVA evaluation) and only prepends placeholders when there are none."""
    return doc["text"]


def doc_to_messages(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> list[dict[str, Any]]:
    """For chat models (the default for ``llava_hf``): see :func:`interleaved_messages`."""
    return interleaved_messages(doc["text"], open_images(doc))
