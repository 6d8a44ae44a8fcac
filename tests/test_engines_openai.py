"""The server engine's transport against a scripted HTTP server (stdlib): Retry-After is honoured."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cord.engines.openai import OpenAIEngine, ServerError, parse_retry_after
from cord.records import read_records
from cord.tiny import model_path
from helpers import ROOT, cord, cord_here, needs_tiny


class Scripted(BaseHTTPRequestHandler):
    """Answers POSTs from a list of (status, headers); then `after` (200 {"ok": true} unless set).
    GET /v1/models answers 200. Times and Authorization headers are kept."""

    replies: list[tuple[int, dict]] = []
    after: tuple[int, dict] = (200, {})
    times: list[float] = []
    keys: list[str] = []
    bodies: list[dict] = []
    models: list[dict] = []  # what GET /v1/models lists

    def do_GET(self):
        Scripted.keys.append(self.headers.get("authorization", ""))
        body = json.dumps({"object": "list", "data": Scripted.models}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        Scripted.bodies.append(json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}"))
        Scripted.times.append(time.monotonic())
        Scripted.keys.append(self.headers.get("authorization", ""))
        status, headers = Scripted.replies.pop(0) if Scripted.replies else Scripted.after
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


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]):
    """`handler` answering on a free port of 127.0.0.1, from a thread: its URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


@pytest.fixture
def server():
    Scripted.replies, Scripted.times, Scripted.keys, Scripted.after = [], [], [], (200, {})
    Scripted.bodies, Scripted.models = [], []
    with serving(Scripted) as url:
        yield url


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


def test_a_request_the_server_refuses_comes_back_as_an_error_for_its_problem_alone(server):
    from cord.engines.base import GenerateRequest

    Scripted.replies = [(400, {})]
    (done,) = engine(server).generate([GenerateRequest("Q: 1 + 1?", 8)])
    assert done.finish == "error" and "HTTP 400" in done.error and len(Scripted.times) == 1  # refused: not retried


def test_a_refused_or_failing_scoring_request_comes_back_as_an_error_for_its_problem_alone(server):
    from cord.engines.base import ScoreRequest

    e = engine(server, retries=1)
    e._tokenizer_checked = True  # the scripted server cannot echo tokens back
    Scripted.replies = [(400, {})]
    Scripted.after = (503, {"Retry-After": "0"})
    (refused,) = e.score([ScoreRequest("Q: 1 + 1?", (), " 2", " The answer is", " 2")])
    assert refused.error and "HTTP 400" in refused.error and not refused.logprobs
    (failing,) = e.score([ScoreRequest("Q: 1 + 1?", (), " 3", " The answer is", " 2")])
    assert "HTTP 503" in failing.error and "failed after 1 retries" in failing.error


def test_a_server_that_no_longer_accepts_connections_stops_the_batch_with_its_address():
    """Unlike a server that answers with errors, a server that is gone would fail every problem
    after it in turn: the run stops (and resumes) instead."""
    from cord.engines.base import GenerateRequest

    with pytest.raises(ServerError, match=r"http://127\.0\.0\.1:9 .* server unreachable after 1 retries"):
        engine("http://127.0.0.1:9", retries=1).generate([GenerateRequest("Q: 1 + 1?", 8)])


def test_the_served_context_caps_requests_and_refuses_prompts_that_do_not_fit_before_sending(server):
    from cord.engines.base import GenerateRequest, ScoreRequest

    e = engine(server)
    Scripted.models = [{"id": e.model, "max_model_len": 64}]
    e.check_reachable("meta_prover")
    assert e.context_length == 64
    short, long = "Q: 1 + 1?", "Q: " + "1 + " * 100 + "1?"
    Scripted.after = (400, {})  # the body sent is what matters here
    out = e.generate([GenerateRequest(long, 8), GenerateRequest(short, 500)])
    assert out[0].finish == "error" and "does not fit the model's context of 64" in out[0].error
    assert [b["max_tokens"] for b in Scripted.bodies] == [64 - len(e.chat.ids(short))]  # one request, capped
    (too_long,) = e.score([ScoreRequest(long, (), " 2", " The answer is", " 2")])
    assert "does not fit the meta-prover's context of 64" in too_long.error and len(Scripted.bodies) == 1


def server_run(url: str, out, *extra) -> list[str]:
    """cord generate on the tiny recipe with teacher 0 (addsub) served at `url`."""
    return [
        "generate",
        "-c",
        ROOT / "recipes" / "tiny-hetero.yaml",
        "--out",
        out,
        "-q",
        "data.tiny.n=3",
        "teachers.0.engine=openai",
        f"teachers.0.base_url={url}",
        "teachers.0.max_retries=1",
        "teachers.0.tokenizer=tiny:tiny-addsub",
        *extra,
    ]


@needs_tiny
def test_a_server_that_keeps_failing_fails_its_problems_and_the_key_is_sent_but_never_written(server, tmp_path, monkeypatch):
    """Every completion answers 503: each problem is recorded as failed with the reason, the run
    ends with exit 1 naming the reason (every problem failed), and the API key (sent to the server)
    is in no file: config, records, log, summary, report."""
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("CORD_TEST_KEY", secret)
    Scripted.after = (503, {"Retry-After": "0"})
    out = tmp_path / "run"
    code, stdout, err = cord_here(*server_run(server, out, "teachers.0.api_key_env=CORD_TEST_KEY"))
    assert code == 1 and "cord: error: every one of the 3 problems run failed (3 x teacher " in err and "HTTP 503" in err, err
    records = read_records(out)
    assert len(records) == 3 and all("HTTP 503" in r.failed and "failed after 1 retries" in r.failed for r in records)
    assert json.loads((out / "summary.json").read_text())["failures"] == 3
    assert Scripted.keys and all(k == f"Bearer {secret}" for k in Scripted.keys)
    assert "api_key_env: CORD_TEST_KEY" in (out / "config.yaml").read_text()
    assert cord_here("report", out, "--out", tmp_path / "r.html")[0] == 0
    for path in [*out.iterdir(), tmp_path / "r.html"]:
        assert secret not in path.read_text(), path
    assert secret not in stdout + err
    monkeypatch.delenv("CORD_TEST_KEY")
    code, _, err = cord_here(*server_run(server, tmp_path / "again", "teachers.0.api_key_env=CORD_TEST_KEY"))
    assert code == 2 and "CORD_TEST_KEY is not set" in err and not (tmp_path / "again").exists()


@needs_tiny
def test_a_server_down_at_the_start_is_one_line_before_any_output_and_debug_shows_the_traceback(tmp_path):
    out = tmp_path / "run"
    code, _, err = cord_here(*server_run("http://127.0.0.1:9", out))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "teachers.0.base_url: http://127.0.0.1:9 does not answer" in lines[0]
    assert not out.exists()
    code, _, err = cord(*server_run("http://127.0.0.1:9", out), "--debug")  # a fresh process, as a user sees it
    assert code == 1 and "Traceback (most recent call last)" in err and not out.exists()


def test_a_base_url_names_the_same_server_with_or_without_v1():
    from cord.engines.server import server_roots

    forms = ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"]
    assert [server_roots(url) for url in forms] == [["http://h:8000"]] * 4
    assert server_roots(["http://h/api/v1", "http://g:1"]) == ["http://h/api", "http://g:1"]


def test_sampling_settings_and_extra_body_go_into_the_request_json(server):
    from cord.engines.base import GenerateRequest
    from cord.engines.openai_chat import OpenAIChatEngine

    Scripted.after = (400, {})  # the body sent is what matters here
    settings = {"top_k": 20, "min_p": 0.05, "presence_penalty": 1.0, "frequency_penalty": 0.5, "repetition_penalty": 1.1}
    extra = {"chat_template_kwargs": {"enable_thinking": True}, "top_k": 40}  # merged last: it overrides
    for e in (engine(server), OpenAIChatEngine("served", server + "/v1")):
        e.generate([GenerateRequest(e.chat_prompt("Q: 1 + 1?"), 8, **settings, extra_body=extra)])
        e.generate([GenerateRequest(e.chat_prompt("Q: 1 + 1?"), 8)])
    completions, plain, chat, chat_plain = Scripted.bodies
    for body in (completions, chat):
        assert {key: body[key] for key in settings} == settings | {"top_k": 40}
        assert body["chat_template_kwargs"] == {"enable_thinking": True}
    for body in (plain, chat_plain):
        assert not set(settings) & set(body) and "chat_template_kwargs" not in body
    assert "prompt" in completions and "messages" in chat


class NotFound(BaseHTTPRequestHandler):
    """A server with nothing OpenAI-compatible on it: 404 to everything."""

    def do_GET(self):
        self.send_error(404)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def not_found():
    with serving(NotFound) as url:
        yield url


@needs_tiny
def test_a_server_that_answers_404_to_everything_is_refused_at_the_start(not_found, tmp_path):
    """Not a run that exits 0 with every problem failed: one line naming the field and the URL."""
    from cord.config import ConfigError, ModelConfig
    from cord.engines.openai_chat import OpenAIChatEngine
    from cord.engines.sglang import SGLangEngine

    out = tmp_path / "run"
    code, _, err = cord_here(*server_run(f"{not_found}/v1", out, "teachers.0.engine=openai-chat", "teachers.0.model=served"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert f"teachers.0.base_url: {not_found} answers HTTP 404 to GET {not_found}/v1/models" in lines[0] and not out.exists()
    for kind in (OpenAIChatEngine, SGLangEngine):  # built from Python (cord.generate): named by the section's name
        cfg = ModelConfig(name="hosted", model=str(model_path("tiny-reader")), engine=kind.name, base_url=not_found)
        with pytest.raises(ConfigError, match=f"^hosted.base_url: {not_found} answers HTTP 404"):
            kind.from_config(cfg, cfg.model)
