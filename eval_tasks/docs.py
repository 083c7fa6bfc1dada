"""How the benchmark questions reach lmms-eval (0.7.3) as docs, and what a model is shown for each.

A task YAML cannot expand ``$VAR`` or ``~``, and ``datasets`` 5 no longer runs loading scripts, so the
YAML cannot point at the data itself. Every task therefore says (through ``eval_tasks/_cadvi_defaults.yaml``)
``dataset_path: json`` with ``data_files`` = ``_placeholder.yaml`` (a one-line JSON document shared by all
tasks; lmms-eval resolves relative ``data_files`` against the YAML's folder, and the ``.yaml`` suffix
makes it ship with the package's YAML package-data and makes lmms-eval's task indexer skip it as "not a
task"). lmms-eval loads that one row offline, then calls the task's ``process_docs``, which ignores it and
returns :func:`load_docs` of the benchmark: the rows of the official file, validated, with their resolved
image paths, as a ``datasets.Dataset``. Everything configurable is read from the environment at that
moment, so the YAML stays static. (Alternatives rejected: a ``class:`` Python task couples us to
lmms-eval's ``Task`` internals; ``load_from_disk`` needs a prepared folder; ``dataset_path`` to a local
folder needs the data in the package.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from builders.release.validate import IMAGE_TOKEN
from eval_tasks.images import open_images, resolve_images
from eval_tasks.question_files import read_rows


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


def prompt_without_placeholders(text: str) -> str:
    """The question with its ``<image>`` placeholders removed, for models that put images first."""
    lines = [line.replace(IMAGE_TOKEN, "").rstrip() for line in text.split("\n")]
    return "\n".join(lines)


def interleaved_messages(text: str, images: Sequence[Any]) -> list[dict[str, Any]]:
    """One user turn with each image where its ``<image>`` placeholder is, as lmms-eval's chat models take it.

    This is lmms-eval's interleaved convention (as in its MMMU task): text segments and images in the
    official order, placeholders removed. A chat template that renders content in order (LLaVA's
    original ``vicuna_v1`` prompt, the tiny test model) reproduces the official prompt exactly; one
    that renders all images first (llava-1.5-hf's) still receives exactly one image token per image.
    """
    segments = text.split(IMAGE_TOKEN)
    if len(segments) - 1 != len(images):
        raise ValueError(f"{len(segments) - 1} {IMAGE_TOKEN} placeholders for {len(images)} images")
    content: list[dict[str, Any]] = []
    for index, segment in enumerate(segments):
        if segment:
            content.append({"type": "text", "text": segment})
        if index < len(images):
            content.append({"type": "image", "url": images[index]})
    return [{"role": "user", "content": content}]


# ---------------------------------------------------------------------------------------------------
# The doc_to_* functions every two-image task uses (named by eval_tasks/_cadvi_defaults.yaml).


def doc_to_visual(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> list:
    """``[PIL, PIL]``: the two images, in placeholder order."""
    return open_images(doc["image_paths"])


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The official question text, placeholders kept: lmms-eval's *simple* ``llava_hf`` keeps a context
    that already holds ``<image>`` as it is (each placeholder becomes that image's tokens in place, as in
    the original LLaVA evaluation) and only prepends placeholders when there are none."""
    return doc["text"]


def doc_to_messages(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> list[dict[str, Any]]:
    """For chat models (the default for ``llava_hf``): see :func:`interleaved_messages`."""
    return interleaved_messages(doc["text"], doc_to_visual(doc))
