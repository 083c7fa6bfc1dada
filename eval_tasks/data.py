"""Where the benchmark questions and images come from, and how lmms-eval gets them as docs: the public face.

The task YAMLs, ``eval_tasks/cadqa/utils.py`` and the tests import these names from here; each lives in
the module of its own concern:

* :mod:`eval_tasks.pinned` - the one resolver of every downloaded question file (:class:`PinnedFile`:
  repository, path, revision, sha256; the ``CADVI_EVAL_DATA_DIR`` override; the download cache;
  trust on first use where no hash is published);
* :mod:`eval_tasks.benchmarks` - what each benchmark is (:data:`BENCHMARKS`: its pinned file, answers,
  image layout);
* :mod:`eval_tasks.question_files` - reading and validating a question file (every bad row reported
  at once, as ``file:row: reason``);
* :mod:`eval_tasks.images` - the image roots (``CADVI_<NAME>_IMAGE_ROOT``, ``CADVI_EVAL_IMAGE_ROOT``),
  every image checked before a model runs;
* :mod:`eval_tasks.docs` - the docs lmms-eval gets (``process_docs``) and what a model is shown
  (``doc_to_visual`` / ``doc_to_text`` / ``doc_to_messages``).
"""

from __future__ import annotations

from eval_tasks.benchmarks import BENCHMARKS, DEFAULT_BASE_URL, PINNED_COMMIT, Benchmark, benchmark
from eval_tasks.docs import (
    doc_to_messages,
    doc_to_text,
    doc_to_visual,
    interleaved_messages,
    load_docs,
    process_docs_for,
    prompt_without_placeholders,
)
from eval_tasks.images import IMAGE_ROOT_ENV, MissingBenchmarkImageError, image_root, open_images, resolve_images
from eval_tasks.pinned import ANNOTATION_DIR_ENV, BASE_URL_ENV, CACHE_ENV, BenchmarkDataError, PinnedFile, cache_dir
from eval_tasks.question_files import annotation_file, raise_problems, read_rows

__all__ = [
    "ANNOTATION_DIR_ENV",
    "BASE_URL_ENV",
    "BENCHMARKS",
    "CACHE_ENV",
    "DEFAULT_BASE_URL",
    "IMAGE_ROOT_ENV",
    "PINNED_COMMIT",
    "Benchmark",
    "BenchmarkDataError",
    "MissingBenchmarkImageError",
    "PinnedFile",
    "annotation_file",
    "benchmark",
    "cache_dir",
    "doc_to_messages",
    "doc_to_text",
    "doc_to_visual",
    "image_root",
    "interleaved_messages",
    "load_docs",
    "open_images",
    "process_docs_for",
    "prompt_without_placeholders",
    "raise_problems",
    "read_rows",
    "resolve_images",
]
