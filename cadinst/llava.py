"""Writing CaD-Inst back in the LLaVA training format, for LLaVA-style trainers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets


def to_llava_json(dataset: datasets.Dataset, path: str | os.PathLike) -> Path:
    """Write ``[{"id", "image": [a, b], "conversations": [{"from", "value"}, ...]}, ...]``.

    The file is what the original trainer (``--data_path``) reads; images stay file names, to be
    resolved against the trainer's image folders. Written to a temporary file and renamed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    columns = dataset.select_columns(["id", "image", "conversations"])
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write("[")
        for index, row in enumerate(columns.iter(batch_size=1000)):
            for offset, (row_id, images, turns) in enumerate(
                zip(row["id"], row["image"], row["conversations"], strict=True)
            ):
                if index or offset:
                    handle.write(",\n")
                record = {
                    "id": row_id,
                    "image": images,
                    "conversations": [{"from": t["from"], "value": t["value"]} for t in turns],
                }
                handle.write(json.dumps(record, ensure_ascii=False))
        handle.write("]\n")
    partial.replace(path)
    return path
