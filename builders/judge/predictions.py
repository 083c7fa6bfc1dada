"""Answer files to judge: JSON Lines of ``{"question_id", "prediction"}``, every bad line reported at once."""

from __future__ import annotations

import json
import os

from builders.release.sources import readable_file
from builders.release.validate import ProblemCollector


def read_predictions(path: str | os.PathLike) -> dict[str, str]:
    """``{question_id: prediction}`` from a JSONL file of ``{"question_id", "prediction"}`` objects.

    ``text`` is read when ``prediction`` is absent: LLaVA's ``model_vqa`` writes its answers there, so
    the original evaluation's answer files work unchanged. Every bad line is reported as ``file:row``.
    """
    path = readable_file(path, "predictions")
    predictions: dict[str, str] = {}
    problems = ProblemCollector()
    where = str(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                problems.add(where, number, f"not JSON ({error.msg})")
                continue
            if not isinstance(record, dict):
                problems.add(where, number, f"a line must be an object, got {type(record).__name__}")
                continue
            question_id = record.get("question_id")
            prediction = record.get("prediction", record.get("text"))
            if not isinstance(question_id, str | int) or isinstance(question_id, bool) or str(question_id) == "":
                problems.add(where, number, f"'question_id' must be a non-empty string, got {question_id!r}")
            elif not isinstance(prediction, str):
                problems.add(where, number, f"'prediction' must be a string, got {prediction!r}")
            else:
                problems.check_unique(where, number, "question_id", str(question_id))
                predictions.setdefault(str(question_id), prediction)
    if not predictions and not problems:
        problems.add(where, None, "no predictions in this file")
    problems.raise_if_any()
    return predictions
