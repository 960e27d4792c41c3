"""Fixtures of the ai tests: a tiny random Janus checkpoint built offline, PNG images, a fake model server."""
from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_janus_path(tmp_path_factory):
    """A random-weight Janus model (~0.4 M parameters) and its processor, saved the way transformers saves them."""
    from demo.model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-janus") / "model"))


def make_png(seed: int = 0, size: tuple[int, int] = (96, 80), mode: str = "L") -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray((rng.random(size) * 255).astype(np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def png():
    return make_png


def completion(text: str, *, tokens: int = 7, top: list[tuple[str, float]] | None = None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if top is not None:
        choice["logprobs"] = {"content": [{"token": top[0][0], "logprob": top[0][1],
                                           "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}]}
    return {"id": "x", "object": "chat.completion", "choices": [choice],
            "usage": {"prompt_tokens": 600, "completion_tokens": tokens, "total_tokens": 600 + tokens}}


class FakeServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1, answering with a scripted function.

    `answer(body, n)` gets the request's JSON and its running number and returns (status, payload,
    delay seconds); payload is a dict (sent as JSON) or bytes (sent as is).
    """

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    n = len(server.requests)
                status, payload, delay = server.answer(body, n)
                if delay:
                    time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server():
    servers = []

    def start(answer) -> FakeServer:
        server = FakeServer(answer)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
