"""Real engines for the engine tests: a tiny random Mixtral on vLLM's CPU build, in-process and served.

These tests run in ``.venv-engines`` (``scripts/setup-engines-env.sh``). Nothing here skips: an engine
that cannot start fails the test that needs it, with the engine's own error. Engines are shared per
session (one in-process engine, one server), with ``enforce_eager`` (a start in ~25 s, not minutes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache: keeps every engine small

from builders.captions import read_captions
from builders.llm.tiny import build_tiny_chat_model
from builders.pair_file import PairRecord, write_pairs
from tests.conftest import COCO_CAPTIONS, shared_file
from tests.llm_fixtures import free_port

MAX_MODEL_LEN = 1024
ENGINE = {"max_model_len": MAX_MODEL_LEN, "enforce_eager": True}


@pytest.fixture(scope="session")
def tiny_mixtral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ``MixtralForCausalLM`` (4 experts, 2 per token) with Mixtral's original chat template."""
    return build_tiny_chat_model(tmp_path_factory.mktemp("engines") / "tiny-mixtral", architecture="mixtral")


@pytest.fixture(scope="session")
def vllm_llm(tiny_mixtral: Path):
    """One in-process vLLM engine for the session, behind the vllm backend."""
    from builders.llm.vllm_backend import VLLMBackend

    backend = VLLMBackend(str(tiny_mixtral), **ENGINE)
    yield backend
    backend.close()


def engine_pairs(folder: Path, count: int = 12) -> Path:
    """``count`` pairs of real COCO captions, consecutive images (no spaCy in the engines venv)."""
    captions = read_captions(shared_file(COCO_CAPTIONS))
    pairs = [
        PairRecord(PairRecord.make_id(a.image, b.image), (a.image, b.image), (a.caption, b.caption), (), "consecutive")
        for a, b in zip(captions[0 : 2 * count : 2], captions[1 : 2 * count : 2], strict=True)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    return write_pairs(pairs, folder / "pairs.jsonl")


class VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1 (the ``vllm`` command is broken in
    vllm-cpu), CPU-safe settings; stopped by its PID."""

    def __init__(self, model: Path, log: Path, port: int | None = None) -> None:
        self.model, self.log, self.port = model, log, port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 240) -> VLLMServer:
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--max-model-len", str(MAX_MODEL_LEN)]
        command += ["--enforce-eager", "--no-enable-chunked-prefill"]  # seeds + chunked prefill kill the CPU engine
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited ({self.process.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"vllm serve not healthy after {timeout} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL to the server's whole process group (the API server and its engine core), as a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


@pytest.fixture(scope="session")
def vllm_server(tiny_mixtral: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    server = VLLMServer(tiny_mixtral, tmp_path_factory.mktemp("vllm-serve") / "serve.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray cluster for the session: 6 logical CPUs on this 2-core machine (with 2, the vLLM stage
    stays pending behind the tokenizer actors)."""
    import ray

    ray.init(num_cpus=6, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
