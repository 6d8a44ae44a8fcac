"""The server engine's transport against a scripted HTTP server (stdlib): Retry-After is honoured."""

from __future__ import annotations

import json
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cord.engines.openai import OpenAIEngine, ServerError, parse_retry_after
from cord.tiny import model_path


class Scripted(BaseHTTPRequestHandler):
    """Answers POSTs from a list of (status, headers); then 200 {"ok": true}. Times are kept."""

    replies: list[tuple[int, dict]] = []
    times: list[float] = []

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Scripted.times.append(time.monotonic())
        status, headers = Scripted.replies.pop(0) if Scripted.replies else (200, {})
        body = json.dumps({"ok": True} if status == 200 else {"error": "busy"}).encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Scripted.replies, Scripted.times = [], []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def engine(url: str, retries: int = 3) -> OpenAIEngine:
    return OpenAIEngine(str(model_path("tiny-reader")), url, max_retries=retries)


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_server_is_retried_after_the_seconds_it_asks_for(server, status):
    Scripted.replies = [(status, {"Retry-After": "3"})]
    e = engine(server)
    assert e._run("/v1/completions", [{}]) == [{"ok": True}]
    gap = Scripted.times[1] - Scripted.times[0]
    assert 3.0 <= gap < 4.5 and e.retries == 1  # the backoff alone would have waited 1-2 s


def test_a_server_that_stays_busy_fails_with_its_address_after_the_retries(server):
    Scripted.replies = [(503, {"Retry-After": "0"})] * 3
    with pytest.raises(ServerError, match="HTTP 503 from " + server):
        engine(server, retries=2)._run("/v1/completions", [{}])
    assert len(Scripted.times) == 3


def test_retry_after_reads_seconds_and_http_dates_and_caps_them():
    assert parse_retry_after("7") == 7.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("100000") == 300.0
    in_a_minute = parse_retry_after(formatdate(time.time() + 60, usegmt=True))
    assert 55 <= in_a_minute <= 61
