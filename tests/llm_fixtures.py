"""LLM test helpers: a tiny chat model built once per session, a real ``transformers serve`` process and a
scripted fake endpoint for the retry policy.

They are registered for every test module by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from builders.llm.tiny import build_tiny_chat_model

CAPTIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "captions" / "coco2014_val_80_caps_boxes.jsonl"


@pytest.fixture(scope="session")
def real_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pairs of the 80 real COCO images (one caption each), through the real nouns and pairs stages."""
    from builders.pairs import Bin, PairingConfig
    from builders.stages import nouns_stage, pairs_stage

    folder = tmp_path_factory.mktemp("pairs")
    nouns_stage(CAPTIONS, folder / "nouns.jsonl", cache_dir=folder / "cache")
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

    captions = [c.caption for c in read_captions(CAPTIONS)]
    return stand_in_model(
        tmp_path_factory.mktemp("parrot") / "model", list(zip(captions[::2], captions[1::2], strict=False))
    )


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Mistral chat model whose template rejects the system role (built in ~2 s)."""
    return build_tiny_chat_model(tmp_path_factory.mktemp("llm") / "tiny-chat")


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


@pytest.fixture
def own_server(tiny_chat_model: Path, tmp_path: Path) -> Iterator[TransformersServe]:
    """A server of this test's own, which it may kill and restart."""
    with running_server(tiny_chat_model, tmp_path / "serve") as server:
        yield server


class FakeChatServer:
    """A scripted OpenAI-style endpoint on 127.0.0.1: answers with the queued (status, headers) in turn,
    then 200 with a canned completion, and records every request's headers and JSON body."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.received: list[tuple[dict[str, str], dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status, headers = server.script.pop(0) if server.script else (200, {})
                payload = json.dumps(server.completion(body) if status == 200 else {"error": {"message": "no"}})
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
