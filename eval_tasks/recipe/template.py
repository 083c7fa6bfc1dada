"""The fork's ``conv_vicuna_v1`` prompt as a chat template, with the label mask built in.

LLaVA-1.5 (and so CaD-VI) trains with ``--version v1``: ``conv_vicuna_v1`` of ``llava/conversation.py``
(separator style TWO, ``sep=" "``, ``sep2="</s>"``)::

    <system> USER: <turn 1> ASSISTANT: <answer 1></s>USER: <turn 2> ASSISTANT: <answer 2></s>

:data:`CHAT_TEMPLATE` renders exactly that, character for character, and wraps every answer, with the
space before it and its ``</s>``, in ``{% generation %}``, so ``apply_chat_template(...,
return_assistant_tokens_mask=True)`` marks the tokens the fork supervises: everything after
``ASSISTANT:`` up to and including ``</s>`` (``preprocess_v1`` masks up to ``"ASSISTANT:"``). The space
matters where a tokenizer keeps it as its own token; Llama's folds it into the answer's first token.
With ``add_generation_prompt`` it ends in ``ASSISTANT:``, the prompt the fork's evaluation scripts
generate from.
:func:`fork_prompt` is the fork's own ``get_prompt`` loop, kept for the tests that prove the equality.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
IMAGE = "<image>"
ROLES = {"human": "user", "gpt": "assistant"}

CHAT_TEMPLATE = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = '" + SYSTEM.replace("'", "\\'") + "' %}{% set turns = messages %}{% endif %}"
    "{{ system }} "
    "{% for message in turns %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}"
    "{% else %}{% set text = namespace(value='') %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{% set text.value = text.value + '<image>' %}"
    "{% elif part['type'] == 'text' %}{% set text.value = text.value + part['text'] %}{% endif %}"
    "{% endfor %}{% set text = text.value %}{% endif %}"
    "{% if message['role'] == 'user' %}USER: {{ text }} "
    "{% else %}ASSISTANT:{% generation %} {{ text }}</s>{% endgeneration %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def fork_user_text(value: str) -> str:
    """A human turn as the CaD-VI fork feeds it: a lone ``<image>`` moves to the front as ``"<image>\\n"``.

    The fork's ``preprocess_multimodal`` strips a single ``<image>`` and prepends it; turns with
    several images (``Image 1: <image>\\nImage 2: <image>\\n...``) are left as written.
    """
    if value.count(IMAGE) == 1:
        return (IMAGE + "\n" + value.replace(IMAGE, "").strip()).strip()
    return value


def to_messages(conversations: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    """LLaVA ``[{"from": "human"|"gpt", "value"}]`` turns -> chat messages with image parts in place."""
    messages = []
    for number, turn in enumerate(conversations):
        role = ROLES.get(turn["from"])
        if role is None:
            raise ValueError(f"turn {number}: 'from' is {turn['from']!r}, expected 'human' or 'gpt'")
        if (role == "user") != (number % 2 == 0):
            raise ValueError(f"turn {number}: turns must alternate human/gpt, starting with human")
        value = fork_user_text(turn["value"]) if role == "user" else turn["value"]
        pieces = value.split(IMAGE)
        content: list[dict[str, str]] = []
        for index, piece in enumerate(pieces):
            if index:
                content.append({"type": "image"})
            if piece:
                content.append({"type": "text", "text": piece})
        messages.append({"role": role, "content": content})
    return messages


def fork_prompt(conversations: Sequence[dict[str, str]], system: str = SYSTEM) -> str:
    """The fork's ``conv_vicuna_v1.get_prompt()`` for LLaVA turns (``<image>`` left in the text)."""
    seps = (" ", "</s>")
    prompt = system + seps[0]
    for number, turn in enumerate(conversations):
        role = "USER" if turn["from"] == "human" else "ASSISTANT"
        value = fork_user_text(turn["value"]) if turn["from"] == "human" else turn["value"]
        prompt += f"{role}: {value}{seps[number % 2]}"
    return prompt
