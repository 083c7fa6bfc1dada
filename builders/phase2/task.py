"""Phase-2 generation: two images + a difference-only annotation -> a multimodal model -> a CaD summary.

The model in the loop is a LLaVA-style model (the phase-1 model, CaD-LLaVA V1, in the paper) through any
multimodal backend: transformers in-process, an OpenAI-compatible server (``vllm serve`` of a llava-hf
folder; images sent as data URIs, resized to the model's input size first) or vLLM in-process. The prompt is
the model's own training format: ``Image 1: <image>\\nImage 2: <image>\\n`` then the text, rendered by the
model's chat template (the recipe's ``conv_vicuna_v1`` for CaD-LLaVA).

Decoding: the original script's temperature 0.2, with ``max_tokens`` 1,024. The original's 128 new tokens
cut its own published summaries short (they average 157 words, about 220 tokens), so we give a full
summary room and reject truncated ones instead.

Validation is phase 1's (``Commonalities:`` / ``Differences:``, both images referred to, length bounds);
free-form difference labels (``Food:``, ``Setting:``) are kept as written beside the axis they map to
(``other`` when none). Rejects are kept with their reasons and retried with a new seed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from builders.generate import Accepted, GenerationTask, Outcome, Rejected, RunSummary, run_task
from builders.llm.base import Backend, Result, Sampling
from builders.llm.content import image_sha256
from builders.phase2.sources import Phase2Item
from builders.runs import request_key
from builders.summary import SummaryBounds, check_summary, structured_with_labels
from prompts import load_template

IMAGE = "<image>"
TEMPLATES = {"refine": "phase2_refine.jinja", "scratch": "phase2_scratch.jinja"}
DEFAULT_SAMPLING = Sampling(max_tokens=1024, temperature=0.2, top_p=1.0, seed=0)
Mode = Literal["refine", "scratch"]


@dataclass(frozen=True)
class Phase2Settings:
    """``mode``: ``refine`` (the annotation as context: the release's) or ``scratch`` (the images alone)."""

    mode: Mode = "refine"
    template: str | None = None  # default: the mode's package template
    sampling: Sampling = DEFAULT_SAMPLING
    max_attempts: int = 3
    bounds: SummaryBounds = field(default_factory=SummaryBounds)
    # Longer contexts are final rejects, never sent (the CGD answers of one pair are ~40-120 words).
    max_prompt_chars: int = 12_000

    def __post_init__(self) -> None:
        if self.mode not in TEMPLATES:
            raise ValueError(f"phase-2 mode must be one of {', '.join(TEMPLATES)}, got {self.mode!r}")

    @property
    def template_name(self) -> str:
        return self.template or TEMPLATES[self.mode]


class Phase2Task(GenerationTask[Phase2Item]):
    """Two images (+ the annotation, in refine mode) -> a CaD summary that passes phase 1's checks."""

    stage = "phase2"
    noun = "pairs"

    def __init__(self, settings: Phase2Settings = Phase2Settings()) -> None:
        self.settings = settings
        self.template = load_template(settings.template_name)
        self.sampling = settings.sampling
        self.max_attempts = settings.max_attempts
        self.max_prompt_chars = settings.max_prompt_chars
        self._sampling = dataclasses.asdict(settings.sampling)

    def identity(self) -> dict[str, Any]:
        return {
            "mode": self.settings.mode,
            "sampling": self._sampling,
            "template": self.settings.template_name,
            "template_sha256": self.template.sha256,
            "max_attempts": self.settings.max_attempts,
            "bounds": dataclasses.asdict(self.settings.bounds),
        }

    def key(self, item: Phase2Item, model: str) -> str:
        context = item.context if self.settings.mode == "refine" else None
        images = [image_sha256(image) for image in item.images]
        return request_key("phase2", self.template.sha256, images, context, model, self._sampling)

    def format_input(self, item: Phase2Item) -> tuple[dict[str, Any], ...]:
        prompt = self.template.render(context=item.context)
        pieces = prompt.split(IMAGE)
        if len(pieces) != len(item.images) + 1:
            raise ValueError(f"template {self.settings.template_name} must hold exactly two '{IMAGE}' placeholders")
        content: list[dict[str, Any]] = []
        for index, piece in enumerate(pieces):
            if index:
                content.append({"type": "image_url", "image_url": {"url": item.images[index - 1]}})
            if piece:
                content.append({"type": "text", "text": piece})
        return ({"role": "user", "content": content},)

    def format_output(self, item: Phase2Item, result: Result) -> Outcome:
        parsed, reason = check_summary(result.text, self.settings.bounds, finish_reason=result.finish_reason)
        if parsed is None:
            return Rejected(reason or "invalid")
        return Accepted({"summary": structured_with_labels(parsed)})

    def record_fields(self, item: Phase2Item) -> dict[str, Any]:
        return {
            "pair_id": item.pair_id,
            "image_names": list(item.image_names),
            "context": item.context,
            "origin": item.origin,
            "mode": self.settings.mode,
            "template": self.settings.template_name,
            "template_sha256": self.template.sha256,
        }


def run_phase2(
    items: Sequence[Phase2Item],
    backend: Backend,
    out: str | os.PathLike,
    settings: Phase2Settings = Phase2Settings(),
    **options: Any,
) -> RunSummary:
    """Summarise every pair of this shard that has no summary yet. ``options``: those of
    :func:`builders.generate.run_task` (``num_shards``, ``shard_index``, ``inputs``, ``extend``, ``console``,
    ``progress``, ...), which does the run itself."""
    return run_task(Phase2Task(settings), items, backend, out, **options)
