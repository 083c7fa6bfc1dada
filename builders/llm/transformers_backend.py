"""transformers in-process: the embedded default for small runs, the demo and tests (CPU or one GPU).

Requests are read in windows, grouped by sampling settings (one ``generate`` call takes one
generation config), sorted by prompt length to waste little padding, and run in left-padded
batches. Prompts come from the model's own chat template (which already holds BOS, so they are
tokenised without special tokens); a template that rejects the system role gets it folded in.

Images: a multimodal model (a config with ``vision_config``, or any model type
``AutoModelForImageTextToText`` knows, e.g. LLaVA) is loaded with that class and its ``AutoProcessor``.
Each request is rendered by the processor's chat template with ``{"type": "image"}`` placeholders and
encoded with its images in order, so its length (the context check, the sorting, ``prompt_tokens``)
counts the expanded image tokens; a batch is encoded again by the processor in one call, left-padded,
as the model's own batching rules want. A text-only model given an image fails that request.

Seeds: ``generate`` samples from torch's global generator, so a sampled batch runs under
``torch.random.fork_rng`` seeded with the seed of the batch's first request. A sampled output is
therefore reproducible for the same batch composition, but not per request: the same request
batched with other neighbours draws different tokens. Greedy decoding (``temperature == 0``) is
deterministic and, up to float rounding, independent of batching.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from builders.llm.base import (
    REQUEST,
    TOO_LONG,
    Closing,
    Request,
    Result,
    Sampling,
    WarnOnce,
    chat_template_accepts_system,
    context_overflow,
    cut_at_stop,
    fold_system_prompt,
)
from builders.llm.content import template_messages, text_messages

logger = logging.getLogger(__name__)


class _UnfitRequestError(ValueError):
    """This request cannot run here at all: an image for a text-only model, an image that cannot be read."""


@dataclass
class _Prompt:
    """One request's prompt: its token ids (image tokens expanded), and for a multimodal model its text and images."""

    ids: list[int]
    text: str = ""
    images: list[Any] = field(default_factory=list)


class TransformersBackend(Closing):
    """``AutoModelForCausalLM`` (or ``AutoModelForImageTextToText`` + its processor) + ``generate``: batched,
    greedy or seeded sampling, stop strings, real token counts (image tokens included)."""

    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        fold_system: bool | None = None,
        window: int | None = None,
        context_length: int | None = None,
        multimodal: bool | None = None,
        **model_options: Any,
    ) -> None:
        """``fold_system=None`` probes the chat template; ``window`` is how many requests are read and
        regrouped at a time (default ``4 * batch_size``); ``context_length`` bounds prompt + ``max_tokens``
        (default: the model's ``max_position_embeddings``): a longer request fails as ``too_long`` before
        the model runs, rather than padding a whole batch to it; ``multimodal=None`` decides from the
        model's config (see the module docstring); ``model_options`` go to ``from_pretrained``
        (e.g. ``device_map="auto"`` to spread a model over several GPUs, ``attn_implementation``)."""
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = str(model)
        self.batch_size = batch_size
        self.window = window or 4 * batch_size
        self.trust_remote_code = trust_remote_code
        self.model_options = model_options
        self._warn = WarnOnce(logger)

        config = AutoConfig.from_pretrained(self.model, trust_remote_code=trust_remote_code)
        self.multimodal = is_multimodal(config) if multimodal is None else multimodal
        self.processor = (
            AutoProcessor.from_pretrained(self.model, trust_remote_code=trust_remote_code) if self.multimodal else None
        )
        if self.processor is not None:
            self.tokenizer = self.processor.tokenizer
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
        model_class = AutoModelForImageTextToText if self.multimodal else AutoModelForCausalLM
        self.lm = model_class.from_pretrained(
            self.model, dtype=dtype, trust_remote_code=trust_remote_code, **model_options
        )
        if "device_map" not in model_options:  # accelerate placed it otherwise
            self.lm.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.lm.eval()
        self.device = str(self.lm.device)  # where inputs go (the first layer's device with a device_map)
        self.dtype = str(self.lm.dtype).removeprefix("torch.")

        eos = self.lm.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids: frozenset[int] = frozenset([eos] if isinstance(eos, int) else (eos or []))
        if self.tokenizer.pad_token_id is None:  # Mistral/Mixtral tokenizers ship without a pad token
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.pad_id: int = self.tokenizer.pad_token_id
        if fold_system is None:
            renderer = self.processor or self.tokenizer
            fold_system = not chat_template_accepts_system(renderer, as_parts=self.processor is not None)
        self.fold_system = fold_system
        self.context_length = context_length or model_context_length(self.lm.config, self.tokenizer)

    def describe(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            "backend": self.name,
            "model": self.model,
            "batch_size": self.batch_size,
            "device": self.device,
            "dtype": self.dtype,
            "trust_remote_code": self.trust_remote_code,
            "fold_system": self.fold_system,
            "multimodal": self.multimodal,
            "context_length": self.context_length,
            **({"model_options": {k: repr(v) for k, v in self.model_options.items()}} if self.model_options else {}),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }

    def close(self) -> None:
        import torch

        self.__dict__.pop("lm", None)
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        iterator = iter(requests)
        while window := list(itertools.islice(iterator, self.window)):
            groups: dict[tuple, list[tuple[Request, _Prompt]]] = defaultdict(list)
            for request in window:
                try:
                    prompt = self._encode(request)
                except _UnfitRequestError as error:
                    yield Result.failure(request.key, str(error), REQUEST)
                    continue
                except Exception as error:  # a template that rejects these messages fails this request only
                    yield Result.failure(request.key, f"chat template: {error}")
                    continue
                sampling = request.sampling
                overflow = context_overflow(len(prompt.ids), sampling.max_tokens, self.context_length)
                if overflow:  # found before the model runs: one huge prompt would pad (and stall) a whole batch
                    yield Result.failure(request.key, overflow, TOO_LONG)
                    continue
                if sampling.json_schema is not None:
                    self._warn("json_schema", "the transformers backend ignores json_schema (no structured outputs)")
                groups[(sampling.max_tokens, sampling.temperature, sampling.top_p, sampling.stop)].append(
                    (request, prompt)
                )
            for group in groups.values():
                group.sort(key=lambda item: len(item[1].ids))
                for start in range(0, len(group), self.batch_size):
                    yield from self._run_isolated(group[start : start + self.batch_size])

    def _prompt_ids(self, request: Request) -> list[int]:
        return self._encode(request).ids

    def _encode(self, request: Request) -> _Prompt:
        """The prompt of one request through the model's chat template (the tokenizer's, or the processor's)."""
        messages = fold_system_prompt(request.messages) if self.fold_system else request.messages
        # The templates already start with BOS where the model has one: adding special tokens would double it.
        if self.processor is None:
            if request.has_images:
                raise _UnfitRequestError(
                    f"the model {self.model} is text-only (no vision config): it cannot take image parts"
                )
            text = self.tokenizer.apply_chat_template(
                text_messages(messages), add_generation_prompt=True, tokenize=False
            )
            return _Prompt(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        try:
            parts, images = template_messages(messages)
        except (OSError, ValueError) as error:  # a missing or unreadable image file, a bad data URI
            raise _UnfitRequestError(f"image: {error}") from error
        text = self.processor.apply_chat_template(parts, add_generation_prompt=True, tokenize=False)
        encoded = self.processor(text=text, images=images or None, add_special_tokens=False)
        return _Prompt(list(encoded["input_ids"][0]), text, images)

    def _model_inputs(self, batch: list[tuple[Request, _Prompt]]) -> Any:
        """The batch, left-padded; a multimodal one encoded by the processor in one call (pixel values and all)."""
        if self.processor is None:
            inputs = self.tokenizer.pad(
                {"input_ids": [prompt.ids for _, prompt in batch]},
                padding=True,
                return_tensors="pt",
                return_attention_mask=True,
            )
            return inputs.to(self.device)
        images = [image for _, prompt in batch for image in prompt.images]
        inputs = self.processor(
            text=[prompt.text for _, prompt in batch],
            images=images or None,
            padding=True,
            return_tensors="pt",
            add_special_tokens=False,
        )
        return inputs.to(self.device, dtype=self.lm.dtype)  # floating tensors (pixel values) in the model's dtype

    def _run_isolated(self, batch: list[tuple[Request, _Prompt]]) -> Iterator[Result]:
        """Run a batch; when it fails, run its requests one by one so only the culprit gets an error."""
        try:
            results = self._run_batch(batch)
        except Exception as error:
            if len(batch) == 1:
                logger.warning("generation failed for %s: %s", batch[0][0].key, error)
                yield Result.failure(batch[0][0].key, f"{type(error).__name__}: {error}")
                return
            logger.warning("batch of %d failed (%s); retrying its requests one by one", len(batch), error)
            for item in batch:
                yield from self._run_isolated([item])
            return
        yield from results

    def _run_batch(self, batch: list[tuple[Request, _Prompt]]) -> list[Result]:
        import torch

        sampling = batch[0][0].sampling
        inputs = self._model_inputs(batch)
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "pad_token_id": self.pad_id,
            "eos_token_id": sorted(self.eos_ids) or None,
        }
        if sampling.greedy:
            # Unset the sampling knobs a model's generation_config may carry, or generate() warns about them.
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=None)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)

        seed = batch[0][0].sampling.seed
        devices = [torch.device(self.device)] if self.device.startswith("cuda") else []
        rng = torch.random.fork_rng(devices=devices) if not sampling.greedy else contextlib.nullcontext()
        with rng, torch.inference_mode():
            if not sampling.greedy and seed is not None:
                torch.manual_seed(seed)
            output = self.lm.generate(**inputs, **kwargs)

        prompt_length = inputs["input_ids"].shape[1]
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        return [
            self._row_result(request, output[row, prompt_length:].tolist(), int(prompt_tokens[row]), sampling)
            for row, (request, _) in enumerate(batch)
        ]

    def _row_result(self, request: Request, generated: list[int], prompt_tokens: int, sampling: Sampling) -> Result:
        """Find where this row really stopped: EOS, a stop string, or max_tokens (the rest is padding)."""
        for index, token in enumerate(generated):
            if token in self.eos_ids:  # the EOS token counts as generated, as vLLM and OpenAI count it
                return Result(request.key, self._decode(generated[:index]), prompt_tokens, index + 1, "stop")
        if sampling.stop:
            text, found = cut_at_stop(self._decode(generated), sampling.stop)
            if found:
                used = self._tokens_until_stop(generated, sampling.stop)
                return Result(request.key, text, prompt_tokens, used, "stop")
        finish = "length" if len(generated) >= sampling.max_tokens else "stop"
        return Result(request.key, self._decode(generated), prompt_tokens, len(generated), finish)

    def _tokens_until_stop(self, generated: list[int], stop: tuple[str, ...]) -> int:
        """The shortest prefix whose text holds a stop string: the tokens generate() really produced for it."""
        low, high = 1, len(generated)
        while low < high:
            middle = (low + high) // 2
            if cut_at_stop(self._decode(generated[:middle]), stop)[1]:
                high = middle
            else:
                low = middle + 1
        return low

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def is_multimodal(config: Any) -> bool:
    """Whether a model takes images: a LLaVA-style config with a vision tower, or a model type that
    ``AutoModelForImageTextToText`` loads."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return getattr(config, "vision_config", None) is not None or (
        getattr(config, "model_type", None) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    )


def model_context_length(config: Any, tokenizer: Any = None) -> int | None:
    """The context window of a model: ``max_position_embeddings`` of its (text) config, else the tokenizer's
    ``model_max_length`` when it is a real bound (transformers uses ~1e30 for "unknown")."""
    for candidate in (config, getattr(config, "text_config", None)):
        value = getattr(candidate, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 10_000_000 else None
