"""Two-turn CaD-Inst conversations in the LLaVA format of the release.

Turn 1: both images and the CaD instruction -> the summary. Turn 2: text-to-image retrieval
("binary image select", paper §3.2): one of the two captions, sampled with a seed derived from
the pair, and the answer ``A`` (Image 1) or ``B`` (Image 2).
"""

from __future__ import annotations

import random
from typing import Any

from builders.runs import request_key
from prompts import render


def retrieval_choice(pair_id: str, seed: int) -> int:
    """0 or 1: which caption turn 2 asks about; depends only on the pair and the seed."""
    return random.Random(request_key("retrieval", pair_id, seed)).randrange(2)


def phase1_conversation(
    pair_id: str, images: tuple[str, str], captions: tuple[str, str], summary: str, *, seed: int = 0
) -> dict[str, Any]:
    """A release row ``{id, image, conversations}`` for one generated summary."""
    which = retrieval_choice(pair_id, seed)
    return {
        "id": pair_id,
        "image": list(images),
        "conversations": [
            {"from": "human", "value": render("conversation_cad.jinja")},
            {"from": "gpt", "value": summary},
            {"from": "human", "value": render("conversation_retrieval.jinja", caption=captions[which])},
            {"from": "gpt", "value": "AB"[which]},
        ],
    }
