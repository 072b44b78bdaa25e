"""The built-in `http.request` task against a real HTTP server (the standard library's, in a
thread), run by a real worker in this process (worker.testing)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from producer import Producer
from producer.keys import QueueKeys
from worker.testing import InProcessWorker


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 404 if self.path.startswith("/missing") else 200
        body = f"{self.command} {self.path}".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_http_request_answers_with_the_status_and_body_and_fails_on_an_error_status(
    redis_url: str, keys: QueueKeys, producer: Producer, http_server: str
) -> None:
    ok = producer.push("http.request", url=f"{http_server}/orders?page=2")
    missing = producer.push("http.request", url=f"{http_server}/missing", _max_attempts=1)
    tolerated = producer.push("http.request", url=f"{http_server}/missing", raise_for_status=False)
    with InProcessWorker(redis_url, keys.queue) as worker:
        records = worker.drain()
    assert records[ok]["status"] == "succeeded"
    assert records[ok]["result"] == {
        "status": 200,
        "content_type": "text/plain",
        "body": "GET /orders?page=2",
        "truncated": False,
    }
    assert records[missing]["status"] == "dead"
    assert "answered HTTP 404" in records[missing]["error"]
    assert records[tolerated]["result"]["status"] == 404
