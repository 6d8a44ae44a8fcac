"""Plug-ins from the user's own code: an engine named by its path in a recipe, or registered by an
installed package's entry point, is checked, listed and run like a built-in. The engine is the
worked example of docs/plugins.md (examples/plugins/sdk_chat_engine.py: the `openai` SDK), against
a local chat-completions server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cord.records import read_records
from cord.registry import Registry
from helpers import ROOT, needs_tiny

EXAMPLE = ROOT / "examples" / "plugins" / "sdk_chat_engine.py"
RECIPE = ROOT / "recipes" / "tiny-hetero.yaml"
CORD = Path(sys.executable).parent / "cord"  # the console script: the working directory is not on its path


class ChatServer(BaseHTTPRequestHandler):
    """/v1/chat/completions: one reasoning step, then the closing, then the answer."""

    bodies: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        ChatServer.bodies.append(body)
        partial = body["messages"][-1]["content"] if body["messages"][-1]["role"] == "assistant" else ""
        if partial.rstrip().endswith("</think>"):
            text = "\nThe final answer is \\boxed{7}."
        elif "3 + 4 = 7" in partial:
            text = "\n</think>"
        else:
            text = " 1. 3 + 4 = 7\n### Step 2. done"
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 10 + len(text.split())},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ChatServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ChatServer.bodies = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def cord(*args, cwd: Path, env: dict | None = None) -> tuple[int, str, str]:
    proc = subprocess.run([str(CORD), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def plugin_teacher(url: str) -> list[str]:
    engine = "sdk_chat_engine:SDKChatEngine"
    return [f"teachers.0.engine={engine}", "teachers.0.model=served-teacher", f"teachers.0.base_url={url}", "data.tiny.n=2"]


@needs_tiny
def test_an_engine_from_the_users_own_module_is_checked_previewed_and_runs_as_a_teacher(tmp_path, server):
    shutil.copy(EXAMPLE, tmp_path)
    code, shown, err = cord("generate", "-c", RECIPE, "--dry-run", *plugin_teacher(server), cwd=tmp_path)
    assert code == 0, err
    assert "served-teacher (sdk_chat_engine:SDKChatEngine)" in shown and f"runs at {server}" in shown
    bad = "teachers.0.engine_kwargs={continuation: suffix}"
    code, _, err = cord("generate", "-c", RECIPE, "--dry-run", *plugin_teacher(server), bad, cwd=tmp_path)
    assert code == 2 and err.strip() == "cord: error: teachers.0.engine_kwargs.continuation: one of vllm, prefix"

    code, _, err = cord("generate", "-c", RECIPE, "--out", tmp_path / "run", "-q", *plugin_teacher(server), cwd=tmp_path)
    assert code == 0, err
    records = read_records(tmp_path / "run")
    assert len(records) == 2 and [r.failed for r in records] == [None, None]
    asked = [b for b in ChatServer.bodies if b["model"] == "served-teacher"]
    assert asked and all(b["messages"][-1]["role"] == "assistant" and b.get("continue_final_message") for b in asked)
    plugin_steps = [s for r in records for s in r.steps if s.teacher == "addsub"]  # teacher 0's name in the recipe
    assert "### Step 1. 3 + 4 = 7\n" in [s.text for s in plugin_steps]  # the beam kept a step the plug-in wrote


def test_a_path_that_cannot_be_loaded_or_is_not_an_engine_is_one_line(tmp_path):
    shutil.copy(EXAMPLE, tmp_path)
    code, _, err = cord("generate", "-c", RECIPE, "--dry-run", "teachers.0.engine=no_such_module:Engine", cwd=tmp_path)
    assert code == 2 and "teachers.0.engine: 'no_such_module:Engine' could not be loaded (ModuleNotFoundError" in err
    code, _, err = cord("generate", "-c", RECIPE, "--dry-run", "teachers.0.engine=sdk_chat_engine:USER", cwd=tmp_path)
    assert code == 2 and "'sdk_chat_engine:USER' is not a subclass of cord.engines.base.Engine" in err


def test_an_installed_packages_entry_point_registers_a_name_listed_with_the_built_ins(tmp_path):
    site = tmp_path / "site"
    (site / "my_engines-0.1.dist-info").mkdir(parents=True)
    (site / "my_engines-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: my-engines\nVersion: 0.1\n")
    (site / "my_engines-0.1.dist-info" / "entry_points.txt").write_text("[cord.engines]\nsdk-chat = sdk_chat_engine:SDKChatEngine\n")
    shutil.copy(EXAMPLE, site)
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    code, shown, err = cord("generate", "--help-config", "teachers", cwd=tmp_path, env=env)
    assert code == 0 and "transformers | vllm | openai | sglang | openai-chat | sdk-chat" in shown, err
    code, _, err = cord("generate", "-c", RECIPE, "--dry-run", "teachers.0.engine=sdk-chat", "teachers.0.model=m", cwd=tmp_path, env=env)
    assert code == 0, err


def test_a_registry_reads_its_entry_points_once_and_keeps_built_ins_first():
    registry = Registry("engine", {"transformers": "cord.engines.transformers:TransformersEngine"}, group="cord.no-such-group")
    assert registry.names() == ("transformers",) and "transformers" in registry and "x:Y" not in registry


@needs_tiny
@pytest.mark.parametrize("continuous", [False, True])
def test_a_plugin_overriding_generate_on_the_transformers_engine_is_called_in_either_batching_mode(continuous):
    """On a CPU the transformers engine runs the scheduler's whole batches; forced continuous, each
    problem's calls join its running batch: either way cord calls the subclass's `generate`."""
    from plugin_engines import Counting

    from cord.config import load_config
    from cord.data import load_problems
    from cord.engines import close_engines
    from cord.run import generate

    overrides = [
        "data.tiny.n=2",
        "teachers.0.engine=plugin_engines:Counting",
        f"teachers.0.transformers.continuous={str(continuous).lower()}",
    ]
    config, cache = load_config(RECIPE, overrides), {}
    Counting.calls = 0
    records = generate(load_problems(config.data), config, cache)
    plugin = next(engine for engine in cache.values() if type(engine).__name__ == "Counting")
    assert len(records) == 2 and Counting.calls > 0
    assert (plugin._decoding is not None) == continuous  # the continuous worker ran only when asked for
    close_engines(cache)


@needs_tiny
def test_a_plugin_returning_too_few_completions_stops_the_run_with_one_line_naming_it(tmp_path):
    from helpers import cord_here

    code, _, err = cord_here(
        "generate", "-c", RECIPE, "--out", tmp_path / "run", "-q", "data.tiny.n=2", "teachers.0.engine=plugin_engines:TooFew"
    )
    assert code == 1
    assert "EngineContractError: engine TooFew (model tiny:tiny-addsub): generate returned 1 result for 2 requests; " in err
    assert "it must return one Completion per request" in err and len(err.strip().splitlines()) == 1


def test_what_an_engine_returns_is_checked_by_count_and_type():
    from cord.engines.base import CARRIED, Completion, Engine, EngineContractError, ScoreRequest, ScoreResult, call_engine

    class Loose(Engine):
        model_name = "m"

        @classmethod
        def from_config(cls, cfg, model):
            return cls()

        def generate(self, requests):
            return [Completion("x", 1, "eos") for _ in requests]

        def score(self, requests):
            return [0.5 for _ in requests]  # floats, not ScoreResults

    engine = Loose()
    assert len(call_engine(engine, "generate", ["a", "b"])) == 2
    with pytest.raises(EngineContractError, match=r"^engine Loose \(model m\): score returned a float where a ScoreResult belongs"):
        call_engine(engine, "score", [ScoreRequest("p")])
    engine.score = lambda requests: (ScoreResult([0.0], 1, 1),)
    with pytest.raises(EngineContractError, match=r"score returned a tuple for 1 request; it must return one ScoreResult per request"):
        call_engine(engine, "score", [ScoreRequest("p")])
    engine.generate = lambda requests: [Completion("", 0, CARRIED) for _ in requests]
    with pytest.raises(EngineContractError, match=r"generate answered 'carried' outside the scheduler's whole batches"):
        call_engine(engine, "generate", ["a"])
    assert call_engine(engine, "generate", ["a"], carry=True)[0].finish == CARRIED
