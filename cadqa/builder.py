"""The CaD-QA builder (split ``test``) from any shape of the release.

Shapes, in the order ``shape="auto"`` prefers them: ``parquet`` (this project's Hub layout,
``data/test-*.parquet``), ``hub-parquet`` (the original ``CaD_QA_eval/*.parquet`` with a
stringified ``image``) and ``jsonl`` (``json_files/CaD_QA_eval.jsonl``). Rows get the question
without the ``Image 1: <image>\\nImage 2: <image>\\n`` prefix as ``question`` and the original
text as ``prompt``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets

from builders.release.builder import ReleaseBuilder, SourceFile, discover_files, load_release
from builders.release.images import OnMissing
from builders.release.origin import CITATION, HUB_REPO, HUB_REVISION
from builders.release.sources import iter_json_records, iter_parquet_records, parquet_column_is_string
from builders.release.validate import PAIR_PREFIX, ProblemCollector, cadqa_row_problems

SHAPES: dict[str, dict[Any, tuple[str, ...]]] = {
    "parquet": {None: ("data/test-*.parquet",)},
    "hub-parquet": {None: ("CaD_QA_eval/*.parquet",)},
    "jsonl": {None: ("json_files/CaD_QA_eval*.jsonl", "CaD_QA_eval*.jsonl")},
}

FEATURES = datasets.Features(
    {
        "question_id": datasets.Value("string"),
        "image": datasets.List(datasets.Value("string")),
        "question": datasets.Value("string"),
        "prompt": datasets.Value("string"),
        "answer": datasets.Value("string"),
    }
)


class CadQA(ReleaseBuilder):
    """CaD-QA as a ``datasets`` builder (instantiate through :func:`load`)."""

    # 1.1.0: image names that leave their root and empty files are refused (a cache of 1.0.0 may hold them).
    VERSION = datasets.Version("1.1.0")
    FEATURES = FEATURES
    SPLIT = datasets.Split.TEST
    DESCRIPTION = "CaD-QA: open questions on the commonalities and differences of two images."
    CITATION = CITATION

    def rows(self, file: SourceFile, problems: ProblemCollector) -> Iterator[dict[str, Any]]:
        name = str(file.path)
        text_key, optional = "text", ()
        if file.shape == "jsonl":
            records = iter_json_records(file.path, problems)
        elif file.shape == "hub-parquet":
            records = iter_parquet_records(
                file.path, problems, literal_columns=("image",), drop_columns=("__null_dask_index__",)
            )
        else:
            records, text_key, optional = iter_parquet_records(file.path, problems), "prompt", ("question",)
        for number, record in records:
            if not problems.add_all(name, number, cadqa_row_problems(record, text_key=text_key, optional=optional)):
                continue
            prompt = record[text_key]
            question = prompt[len(PAIR_PREFIX) :]
            if record.get("question", question) != question:
                problems.add(name, number, "'question' is not the prompt without its image placeholders")
                continue
            problems.check_unique(name, number, "question_id", record["question_id"])
            yield {
                "question_id": record["question_id"],
                "image": record["image"],
                "question": question,
                "prompt": prompt,
                "answer": record["answer"],
            }


def source_files(
    source: str | os.PathLike = HUB_REPO, *, revision: str | None = None, shape: str = "auto"
) -> list[SourceFile]:
    """The CaD-QA file(s) in ``source`` (a folder, a single file, or a Hub repo id)."""
    if revision is None and str(source) == HUB_REPO:
        revision = HUB_REVISION
    local = Path(source).expanduser()
    if local.is_file():
        if shape == "auto":
            shape = "jsonl"
            if local.suffix == ".parquet":
                shape = "hub-parquet" if parquet_column_is_string(local, "image") else "parquet"
        return [SourceFile(local, shape)]
    return discover_files(source, SHAPES, (None,), revision=revision, shape=shape, what="CaD-QA")


def load(
    source: str | os.PathLike = HUB_REPO,
    *,
    image_roots: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    on_missing: OnMissing = "error",
    streaming: bool = False,
    revision: str | None = None,
    shape: str = "auto",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load CaD-QA (the ``test`` split) from a release in any shape; see :func:`cadinst.load`."""
    return load_release(
        CadQA,
        source_files(source, revision=revision, shape=shape),
        config=None,
        image_roots=image_roots,
        on_missing=on_missing,
        streaming=streaming,
        cache_dir=cache_dir,
    )
