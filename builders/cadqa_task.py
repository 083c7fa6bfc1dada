"""CaD-QA generation, stage 2 (paper §4): two captions + their CaD summary -> a multi-turn Q&A -> one Q&A per pair.

Stage 1 is phase 1's own task (the CaD summary of the two captions, :mod:`builders.phase1`); this stage takes
its records. The prompt (``cadqa_questions.jinja``) and its in-context examples (``cadqa_examples.json``,
beside it) are ours: the paper's are unpublished. The model writes ``Q<n>: ...`` / ``A<n>: ...`` lines, or,
with ``structured=True``, a JSON object ``{"qa": [{"question", "answer"}]}`` under the backend's structured
outputs. Each pair is valid when at least one Q&A is: a question that ends with ``?``, an answer within
length bounds that names the images as the official answers do (95% of them say "Image 1"/"Image 2").
The export keeps one valid Q&A per pair, drawn with a seed derived from the pair, so a regeneration is
reproducible whatever the shard layout.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builders.generate import Accepted, GenerationTask, Outcome, Rejected
from builders.llm.base import Result, Sampling
from builders.pair_file import PairRecord
from builders.runs import request_key
from prompts import load_template

TEMPLATE = "cadqa_questions.jinja"
EXAMPLES = Path(__file__).resolve().parents[1] / "prompts" / "templates" / "cadqa_examples.json"
DEFAULT_SAMPLING = Sampling(max_tokens=600, temperature=0.7, top_p=0.95, seed=0)
SCHEMA = {
    "type": "object",
    "properties": {
        "qa": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
                "required": ["question", "answer"],
            },
        }
    },
    "required": ["qa"],
}
_PAIR = re.compile(r"^\s*Q(\d+)\s*[:.]\s*(.+?)\s*^\s*A\1\s*[:.]\s*(.+?)\s*(?=^\s*Q\d+\s*[:.]|\Z)", re.M | re.S)
_NAMES_AN_IMAGE = re.compile(r"\b(?:image\s*[12]|(?:first|second|both|two)\s+images?)\b", re.I)


@dataclass(frozen=True)
class QAItem:
    """A pair with its stage-1 summary: what stage 2 asks about."""

    pair_id: str
    images: tuple[str, str]
    captions: tuple[str, str]
    summary: str


@dataclass(frozen=True)
class QASettings:
    template: str = TEMPLATE
    examples: int = 2  # in-context examples, from cadqa_examples.json
    sampling: Sampling = DEFAULT_SAMPLING
    max_attempts: int = 3
    structured: bool = False  # JSON-schema structured outputs (vLLM, OpenAI-compatible servers)
    max_answer_words: int = 80
    max_question_words: int = 40
    max_prompt_chars: int = 24_000


def load_examples(count: int, path: Path = EXAMPLES) -> list[dict[str, Any]]:
    examples = json.loads(path.read_text(encoding="utf-8"))
    if count > len(examples):
        raise ValueError(f"{path}: {count} in-context examples asked for, the file has {len(examples)}")
    return examples[:count]


def parse_qa(text: str) -> list[tuple[str, str]]:
    """``Q<n>: ... / A<n>: ...`` pairs of a free-text answer, or the ``qa`` list of a JSON one."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError:
            return []
        entries = data.get("qa") if isinstance(data, dict) else None
        return [
            (str(e["question"]).strip(), str(e["answer"]).strip())
            for e in entries or []
            if isinstance(e, dict) and "question" in e and "answer" in e
        ]
    return [(" ".join(q.split()), " ".join(a.split())) for _, q, a in _PAIR.findall(text)]


def qa_problem(question: str, answer: str, settings: QASettings) -> str | None:
    """Why a Q&A is not kept, or None."""
    if not question.endswith("?"):
        return "the question does not end with '?'"
    if len(question.split()) > settings.max_question_words:
        return f"the question is longer than {settings.max_question_words} words"
    words = len(answer.split())
    if words == 0 or words > settings.max_answer_words:
        return f"the answer has {words} words (1-{settings.max_answer_words})"
    if not _NAMES_AN_IMAGE.search(answer):
        return "the answer names neither image ('Image 1', 'Image 2', 'both images', ...)"
    return None


class QATask(GenerationTask[QAItem]):
    """Captions + summary -> several Q&As; a pair is valid with at least one acceptable Q&A."""

    stage = "cadqa"
    noun = "pairs"

    def __init__(self, settings: QASettings = QASettings()) -> None:
        self.settings = settings
        self.template = load_template(settings.template)
        self.examples = load_examples(settings.examples)
        self._examples_sha256 = request_key("cadqa-examples", self.examples)
        sampling = settings.sampling
        if settings.structured:
            sampling = dataclasses.replace(sampling, json_schema=SCHEMA)
        self.sampling = sampling
        self.max_attempts = settings.max_attempts
        self.max_prompt_chars = settings.max_prompt_chars
        self._sampling = dataclasses.asdict(sampling)

    def identity(self) -> dict[str, Any]:
        settings = dataclasses.asdict(self.settings)
        settings.pop("sampling")
        return {
            **settings,
            "sampling": self._sampling,
            "template_sha256": self.template.sha256,
            "examples_sha256": self._examples_sha256,
        }

    def key(self, item: QAItem, model: str) -> str:
        return request_key(
            "cadqa", self.template.sha256, self._examples_sha256, item.captions, item.summary, model, self._sampling
        )

    def format_input(self, item: QAItem) -> tuple[dict[str, Any], ...]:
        prompt = self.template.render(
            caption_1=item.captions[0], caption_2=item.captions[1], summary=item.summary, examples=self.examples
        )
        return ({"role": "user", "content": prompt},)

    def format_output(self, item: QAItem, result: Result) -> Outcome:
        pairs = parse_qa(result.text)
        if not pairs:
            return Rejected("no Q<n>:/A<n>: pairs (or no 'qa' list) in the answer")
        kept = [{"question": q, "answer": a} for q, a in pairs if qa_problem(q, a, self.settings) is None]
        if not kept:
            return Rejected(f"none of {len(pairs)} Q&As is acceptable: {qa_problem(*pairs[0], self.settings)}")
        return Accepted({"qa": kept, "qa_written": len(pairs)})

    def record_fields(self, item: QAItem) -> dict[str, Any]:
        return {
            "pair_id": item.pair_id,
            "images": list(item.images),
            "captions": list(item.captions),
            "summary": item.summary,
            "template": self.settings.template,
            "template_sha256": self.template.sha256,
        }


def qa_items(pairs: Sequence[PairRecord], summary_records: Sequence[dict[str, Any]]) -> list[QAItem]:
    """Pairs that have a stage-1 summary (a phase-1 run's records), as stage-2 items, in pair order."""
    summaries = {record["pair_id"]: record["text"].strip() for record in summary_records}
    return [QAItem(p.pair_id, p.images, p.captions, summaries[p.pair_id]) for p in pairs if p.pair_id in summaries]


def pick(record: dict[str, Any], seed: int = 0) -> dict[str, str]:
    """The one Q&A kept for a pair: drawn from its valid ones with a seed derived from the pair."""
    choices = record["qa"]
    return choices[random.Random(request_key("cadqa-pick", record["pair_id"], seed)).randrange(len(choices))]


def official_row(record: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """A stage-2 record as a row of the official file: ``{image, text, answer, question_id}``."""
    chosen = pick(record, seed)
    first, second = record["images"]
    return {
        "image": [first, second],
        "text": f"Image 1: <image>\nImage 2: <image>\n{chosen['question']}",
        "answer": chosen["answer"],
        "question_id": f"{Path(first).stem}_{Path(second).stem}",
    }
