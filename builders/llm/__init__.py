"""LLM client interface and backends: transformers in-process, OpenAI-compatible servers, vLLM in-process.

Import the interface from here; backends are imported lazily by :func:`make_backend` so that the
package works without torch, openai or vllm installed.
"""

from builders.llm.base import (
    BACKENDS,
    Backend,
    Request,
    Result,
    Sampling,
    chat_template_accepts_system,
    fold_system_prompt,
    make_backend,
    messages_identity,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "Request",
    "Result",
    "Sampling",
    "chat_template_accepts_system",
    "fold_system_prompt",
    "make_backend",
    "messages_identity",
]
