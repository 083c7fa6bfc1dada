"""A real HTTP/1.1 server on 127.0.0.1 that fails on cue, for the tests and the benchmark of the image downloader.

The downloader's whole point is what it does when a server misbehaves, and a mocked transport cannot drop a TCP
connection mid-body or time out on a socket. So this is a real ``ThreadingHTTPServer`` (port 0, daemon threads,
keep-alive) over an in-memory ``path -> bytes`` dict, honouring ``Range: bytes=N-`` (206 + ``Content-Range``,
416 past the end), with a script of faults per path, one consumed per request (then ``"ok"``)::

    with FaultServer({"a.jpg": noise_jpeg(0)}) as server:
        server.faults["/a.jpg"] = ["drop", "500", "ok"]
        fetch(server.url("a.jpg"))
        [(r.status, r.range_start, r.sent) for r in server.requests("a.jpg")]

Faults: ``"ok"``; ``"500"``, ``"503"``, ``"429"`` (the last two with ``Retry-After: 0``, or ``N`` for
``"503:N"``, ``"429:N"``); ``"404"``; ``"drop"``
(the headers with the full ``Content-Length``, half the body, then a TCP reset); ``"truncate"`` (the same, closed
cleanly); ``"corrupt"`` (the full length, 16 bytes flipped in the middle); ``"slow:<seconds>"`` (a sleep before the
headers); ``"ignore_range"`` (200 and the whole body even to a Range); ``"redirect:<location>"`` (302). Server-wide:
``latency`` (seconds slept before each answer) and ``drip`` (the body sent in ``drip_chunk``-byte pieces with
``drip`` seconds between them, so that a client can be killed mid-body). Every request is logged, thread-safely,
as it arrives (:class:`Request`: path, fault, range asked, status, body bytes actually sent).
"""

from __future__ import annotations

import contextlib
import io
import mimetypes
import random
import socket
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from PIL import Image


@dataclass
class Request:
    """One request as the server saw it; ``status`` and ``sent`` fill in as it is answered."""

    path: str
    fault: str
    range_start: int | None  # N of ``Range: bytes=N-``, None when no range was asked
    client: str  # the peer's address
    headers: dict[str, str] = field(default_factory=dict)  # as sent, names lower-cased
    status: int | None = None
    sent: int = 0  # body bytes written to the socket
    done: bool = False


def _path(name: str) -> str:
    return "/" + name.lstrip("/")


class FaultServer:
    """The server; see the module docstring. ``files`` and ``faults`` may be changed while it runs."""

    def __init__(
        self,
        files: Mapping[str, bytes] | None = None,
        *,
        latency: float = 0.0,
        drip: float = 0.0,
        drip_chunk: int = 1024,
    ) -> None:
        self.files: dict[str, bytes] = {_path(name): data for name, data in (files or {}).items()}
        self.faults: dict[str, list[str]] = {}
        self.latency = latency
        self.drip = drip
        self.drip_chunk = drip_chunk
        self._log: list[Request] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> FaultServer:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and cut the keep-alive connections still open, so that no handler thread lingers."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not running"
        return self._httpd.server_address[1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}{quote(_path(name))}"

    # -- the log ----------------------------------------------------------------------------------------------

    @property
    def log(self) -> list[Request]:
        """Every request so far, in arrival order (a copy of the list; the records are live)."""
        with self._lock:
            return list(self._log)

    def requests(self, name: str) -> list[Request]:
        return [request for request in self.log if request.path == _path(name)]

    def sent(self, name: str) -> int:
        """Bytes of the file ``name`` itself sent (200 and 206 bodies; error pages aside), all requests together."""
        return sum(request.sent for request in self.requests(name) if request.status in (200, 206))

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _arrived(self, path: str, range_start: int | None, client: str, headers: dict[str, str]) -> Request:
        with self._lock:
            script = self.faults.get(path)
            fault = script.pop(0) if script else "ok"
            request = Request(path, fault, range_start, client, headers)
            self._log.append(request)
            return request


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FaultServer

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.owner._lock:
            self.owner._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.owner._lock:
            self.owner._connections.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real file server
    server: _Server

    def setup(self) -> None:
        super().setup()
        # As real file servers do: without it the body's first segment waits for the ACK of the headers' (Nagle),
        # which the client delays by 40 ms, and a one-at-a-time baseline would measure that.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the log is FaultServer.log
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        range_start = _range_start(self.headers.get("Range"))
        headers = {key.lower(): value for key, value in self.headers.items()}
        request = owner._arrived(path, range_start, self.client_address[0], headers)
        try:
            if owner.latency:
                time.sleep(owner.latency)
            fault = request.fault
            if fault.startswith("slow:"):
                time.sleep(float(fault.partition(":")[2]))
                if self._client_gone():  # it timed out meanwhile: nothing is sent, and the log says so
                    self.close_connection = True
                    return
            self._answer(owner, request, path, fault)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the client went away (timed out, or was killed)
        finally:
            request.done = True

    def _client_gone(self) -> bool:
        """Whether the client has closed its end (a read would say end-of-file or reset at once)."""
        self.connection.setblocking(False)
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            self.connection.setblocking(True)

    def _answer(self, owner: FaultServer, request: Request, path: str, fault: str) -> None:
        code, _, wait = fault.partition(":")
        if code in ("500", "503", "429", "404"):
            retry = {"Retry-After": wait or "0"} if code in ("503", "429") else {}
            self._reply(request, int(code), b"<html><body>error</body></html>", "text/html", retry)
            return
        if fault.startswith("redirect:"):
            self._reply(request, 302, b"", "text/plain", {"Location": fault.partition(":")[2]})
            return
        data = owner.files.get(path)
        if data is None:
            self._reply(request, 404, b"not found", "text/plain")
            return
        start = None if fault == "ignore_range" else request.range_start
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if start is not None and start >= len(data):
            self._reply(request, 416, b"", kind, {"Content-Range": f"bytes */{len(data)}"})
            return
        headers = {}
        status, body = 200, data
        if start is not None:
            status, body = 206, data[start:]
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if fault == "corrupt":
            flipped = bytearray(body)
            middle = len(flipped) // 2
            for i in range(max(0, middle - 8), min(len(flipped), middle + 8)):
                flipped[i] ^= 0xFF
            body = bytes(flipped)
        cut = fault in ("drop", "truncate")
        self._reply(request, status, body[: len(body) // 2] if cut else body, kind, headers, length=len(body))
        if fault == "drop":
            time.sleep(0.05)  # let the client read the half before the reset (a reset discards unread data)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.wfile.close()
            self.rfile.close()
            self.connection.close()  # SO_LINGER 0: a RST, not a FIN (the files held the socket open till now)
            self.wfile = io.BytesIO()  # for the handler's own final flush
            self.close_connection = True
        elif fault == "truncate":
            self.connection.shutdown(socket.SHUT_WR)  # a clean FIN, short of the promised length
            self.close_connection = True

    def _reply(
        self,
        request: Request,
        status: int,
        body: bytes,
        kind: str,
        headers: Mapping[str, str] | None = None,
        *,
        length: int | None = None,
    ) -> None:
        """Send the status, the headers (``Content-Length: length``, default the body's) and the body, dripped when
        the server says so, counting what went out."""
        owner = self.server.owner
        request.status = status
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Accept-Ranges", "bytes")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        step = owner.drip_chunk if owner.drip else len(body) or 1
        for offset in range(0, len(body), step):
            if owner.drip and offset:
                time.sleep(owner.drip)
            piece = body[offset : offset + step]
            self.wfile.write(piece)
            request.sent += len(piece)


def _range_start(value: str | None) -> int | None:
    """N of ``bytes=N-`` (the only form the downloader sends), None otherwise."""
    if not value or not value.startswith("bytes="):
        return None
    first, _, last = value[len("bytes=") :].partition("-")
    return int(first) if first.isdigit() and not last else None


# -- fixture images -----------------------------------------------------------------------------------------------


def noise_image(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def noise_jpeg(seed: int, size: tuple[int, int] = (64, 48), quality: int = 90) -> bytes:
    """A small real JPEG of random noise (64 x 48: ~5 KB): decodes, and truncating it breaks the decode."""
    out = io.BytesIO()
    noise_image(seed, size).save(out, "JPEG", quality=quality)
    return out.getvalue()


def noise_png(seed: int, size: tuple[int, int] = (48, 32)) -> bytes:
    """A small real PNG of random noise (48 x 32: ~5 KB)."""
    out = io.BytesIO()
    noise_image(seed, size).save(out, "PNG")
    return out.getvalue()


def photo_like(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth photo-like picture (coloured shapes on a background, blurred): what a perceptual hash is made for
    (random noise has no low frequencies to keep; a photo's survive resizing and re-encoding)."""
    from PIL import ImageDraw, ImageFilter

    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        box = [
            x,
            y,
            x + rng.randrange(size[0] // 10, size[0] * 2 // 3),
            y + rng.randrange(size[1] // 8, size[1] * 5 // 6),
        ]
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return image.filter(ImageFilter.GaussianBlur(2))
