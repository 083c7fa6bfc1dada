"""The demo's stand-in for Mixtral: a tiny chat model, trained for seconds to parrot CaD summaries.

Offline, no real LLM can be downloaded. A tiny *untrained* model writes noise, which the
summary validator rejects, leaving nothing for the later stages to show. So the demo builds the
tiny random model (``builders.llm.tiny``) and fits it for a few seconds on the bundled sample
summaries: it learns the ``Commonalities:`` / ``Differences:`` form and little else. The
pipeline around it is the real one; the text is not meaningful, and the demo says so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from builders.llm.tiny import build_tiny_chat_model

MARKER = "cadvi_parrot.json"


def build_parrot(path: Path, examples: Sequence[tuple[str, str]], *, steps: int = 300, seed: int = 0) -> Path:
    """A tiny chat model in ``path`` fitted on ``(prompt, answer)`` examples (reused if already built)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = {"examples": list(map(list, examples)), "steps": steps, "seed": seed}
    marker = path / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == settings:
        return path
    build_tiny_chat_model(path, texts=[text for pair in examples for text in pair], vocab_size=1024, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    torch.manual_seed(seed)
    batches = [_tokenize(tokenizer, prompt, answer) for prompt, answer in examples]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        input_ids, labels = batches[step % len(batches)]
        loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(path)
    marker.write_text(json.dumps(settings))
    return path


def _tokenize(tokenizer, prompt: str, answer: str):
    import torch

    prefix = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], tokenize=False
    )
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    labels = [-100] * len(prefix_ids) + ids[len(prefix_ids) :]
    return torch.tensor([ids]), torch.tensor([labels])
