"""The pipeline's traces for unattended runs: OUT/run.log, summary.json refreshed while running."""

from __future__ import annotations

import importlib
import json
import os
import signal
import time

import pytest

from cord.config import load_config
from cord.records import RunDirectory
from helpers import ROOT, needs_tiny

pytestmark = needs_tiny
pipeline = importlib.import_module("cord.run")  # the module: `cord.run` is also the package's run()
progress = importlib.import_module("cord.progress")


def test_run_log_names_the_models_every_problem_and_the_end_and_summary_json_is_refreshed_while_running(tmp_path, monkeypatch):
    """A run whose first problem takes a while (its teachers slowed here) is not silent: summary.json
    exists from the start with the problems planned and shows the work of the problems in flight
    before any has finished; run.log says what each one has done so far."""
    import time

    from cord.engines.transformers import TransformersEngine

    seen: list[dict] = []
    write = RunDirectory.write_summary
    monkeypatch.setattr(progress, "SUMMARY_EVERY", 0.1)
    monkeypatch.setattr(progress, "TICK", 0.05)
    monkeypatch.setattr(progress, "LOG_LIVE_EVERY", 0.1)
    monkeypatch.setattr(RunDirectory, "write_summary", lambda self, s: (seen.append(json.loads(json.dumps(s))), write(self, s))[1])
    generate = TransformersEngine.generate
    monkeypatch.setattr(TransformersEngine, "generate", lambda self, requests: time.sleep(0.15) or generate(self, requests))
    out = tmp_path / "run"
    config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", [f"output_dir={out}", "data.tiny.n=3", "search.problems_in_flight=1"])
    pipeline.run(config, progress=False)
    assert seen[0]["running"] and seen[0]["problems"] == 0 and seen[0]["planned"] == 3  # written before any work
    early = [s for s in seen if s["running"] and s["problems"] == 0 and s.get("in_flight", {}).get("steps")]
    assert early and early[-1]["in_flight"]["problems"] == 1 and early[-1]["in_flight"]["tokens"] > 0
    assert seen[-1]["running"] is False and seen[-1]["problems"] == 3 and "in_flight" not in seen[-1]
    log = (out / "run.log").read_text()
    assert "3 problems, 0 already done, 3 to do" in log and "models loaded in" in log and "TransformersEngine" in log
    assert "running: " in log and " tokens, " in log and " tok/s, " in log  # a problem's work while it runs
    ids = [json.loads(line)["id"] for line in (out / "records.jsonl").read_text().splitlines()]
    assert all(f"problem {i} done" in log for i in ids) and "run ended: 3 problems in the directory, 3 new" in log
    pipeline.run(config, progress=False)  # a resume appends to the same log
    log = (out / "run.log").read_text()
    assert "3 problems, 3 already done, 0 to do" in log and log.count("run ended") == 2


def test_retry_failed_runs_the_failed_problems_again_and_replaces_their_records(tmp_path):
    out = tmp_path / "run"
    config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", [f"output_dir={out}", "data.tiny.n=4"])
    pipeline.run(config, progress=False)
    original = {json.loads(line)["id"]: json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()}
    lines = list(original.values())
    lines[1]["failed"] = "the engine refused the request (planted)"
    (out / "records.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = pipeline.run(config, progress=False)  # a plain resume keeps the failed record
    assert summary["new"] == 0 and summary["failures"] == 1
    summary = pipeline.run(config, progress=False, retry_failed=True)
    assert summary["new"] == 1 and summary["resumed"] == 3 and summary["failures"] == 0
    after = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in after) == sorted(original)  # no duplicate, none lost
    again = next(r for r in after if r["id"] == lines[1]["id"])
    assert again["reasoning"] == original[lines[1]["id"]]["reasoning"] and again["failed"] is None  # per-request seeds
    assert "--retry-failed: running 1 failed problems again" in (out / "run.log").read_text()


@pytest.mark.parametrize("method", ["cord", "curation", "mcts", "cord+max_length"])
def test_a_problem_longer_than_the_context_fails_alone_and_the_others_are_written(tmp_path, method):
    """Problem 1's question does not fit the teachers' context; problem 2's reference answer makes
    every scored text longer than the meta-prover's: each fails with its reason, the others finish."""
    from cord.tiny.tasks import generate_problems

    rows = generate_problems(4, seed=11)
    rows[1]["problem"] = "Ann counts her apples again and again. " * 400  # about 3,000 tokens; the tiny context is 512
    rows[2]["answer"] = "7" * 600
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / method
    method, _, selection = method.partition("+")
    config = load_config(
        ROOT / "recipes" / "tiny-hetero.yaml",
        [f"output_dir={out}", f"data.path={data}", "data.tiny=null", f"search.method={method}", "search.reasoning_budget=96"]
        + ([f"search.selection={selection}"] if selection else []),
    )
    summary = pipeline.run(config, progress=False)
    records = {json.loads(line)["id"]: json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()}
    assert set(records) == {r["id"] for r in rows} and summary["failures"] == 2
    failed = records[rows[1]["id"]]["failed"]
    assert failed.startswith("teacher ") and "does not fit the model's context of 512" in failed
    failed = records[rows[2]["id"]]["failed"]
    assert failed.startswith("scoring: scored text of ") and "does not fit the meta-prover's context of 512" in failed
    assert all(records[r["id"]]["failed"] is None and records[r["id"]]["steps"] for r in (rows[0], rows[3]))


def out_of_memory_above_two(monkeypatch, continuous: bool, where: str):
    """A tiny engine whose decoder call `where` ("batch" or "prefill") raises out-of-memory for
    more than two requests, as a GPU would for a batch too large (a CPU cannot be made to), the
    sizes it was called with, and five requests."""
    import torch

    from cord.engines.base import GenerateRequest
    from cord.engines.transformers import TransformersEngine
    from cord.tiny import model_path

    engine = TransformersEngine(str(model_path("tiny-addsub")), continuous=continuous)
    real, sizes = getattr(engine.decoder, where), []

    def tight(batch):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(batch)

    monkeypatch.setattr(engine.decoder, where, tight)
    prompt = engine.chat_prompt("Ann has 3 apples. Then she gets 4 more. How many apples does Ann have now?") + "<think>\n"
    return engine, sizes, [GenerateRequest(prompt, 12, 0.6, seed=s) for s in range(5)]


def always_out_of_memory(batch):
    import torch

    raise torch.OutOfMemoryError("always")


def test_a_batch_that_runs_out_of_memory_is_split_and_tried_again(monkeypatch):
    engine, sizes, requests = out_of_memory_above_two(monkeypatch, False, "batch")
    out = engine.generate(requests)
    assert sizes == [5, 2, 3, 1, 2] and all(c.finish != "error" and c.tokens > 0 for c in out)
    monkeypatch.setattr(engine.decoder, "batch", always_out_of_memory)
    assert [c.finish for c in engine.generate(requests[:2])] == ["error", "error"]


def test_a_refilled_batch_that_runs_out_of_memory_is_split_and_tried_again(monkeypatch):
    engine, sizes, requests = out_of_memory_above_two(monkeypatch, False, "prefill")
    engine.refill, engine.max_batch_size = True, 4
    out = engine.generate(requests)
    assert sizes == [4, 2, 3, 1, 2] and all(c.finish != "error" and c.tokens > 0 for c in out)


def test_requests_that_run_out_of_memory_joining_the_running_batch_wait_and_join_fewer_at_a_time(monkeypatch):
    """The continuous worker: a prompt pass that runs out of memory puts its requests back and
    admits fewer at once; one request that cannot run even alone fails alone."""
    engine, sizes, requests = out_of_memory_above_two(monkeypatch, True, "prefill")
    out = engine.generate(requests)
    assert sizes[0] == 5 and max(sizes[1:]) <= 2 and sum(sizes[1:]) == 5
    assert all(c.finish != "error" and c.tokens > 0 for c in out)
    assert [c.text for c in out] == [c.text for c in engine._generate_whole(requests)]  # the same texts as whole batches
    monkeypatch.setattr(engine.decoder, "prefill", always_out_of_memory)
    assert [c.finish for c in engine.generate(requests[:1])] == ["error"]
    engine.close()


def test_a_scoring_batch_that_runs_out_of_memory_is_split_and_tried_again(monkeypatch):
    import torch

    from cord.engines.transformers import TransformersEngine
    from cord.scoring.meta_prover import meta_prover_request
    from cord.tiny import model_path

    engine = TransformersEngine(str(model_path("tiny-reader")))
    chat = engine.chat_prompt("Ann has 3 apples. Then she gets 4 more. How many apples does Ann have now?")
    requests = [meta_prover_request(chat, ("### Step 1. 3 + 4 = 7\n",), f"### Step 2. {n}\n</think>", "7") for n in range(5)]
    expected = [r.logprobs for r in engine.score(requests)]
    real, sizes = engine.scorer.rows, []

    def tight(batch):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(batch)

    monkeypatch.setattr(engine.scorer, "rows", tight)
    out = engine.score(requests)
    assert sizes == [5, 2, 3, 1, 2] and [v for r in out for v in r.logprobs] == pytest.approx([v for e in expected for v in e], abs=1e-5)
    monkeypatch.setattr(engine.scorer, "rows", lambda batch: (_ for _ in ()).throw(torch.OutOfMemoryError("always")))
    assert [r.error for r in engine.score(requests[:2])] == ["out of memory scoring this one request"] * 2


def test_a_full_disk_mid_run_is_one_clear_line_and_the_records_before_it_stay_whole(tmp_path):
    """The file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored) makes writes past a size fail the
    way a full disk does; the run stops with one line and resumes to the end once there is room."""
    import resource
    import signal
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cord.cli", "generate", "-c", str(ROOT / "recipes" / "tiny-hetero.yaml"), "--out", str(out), "-q"]
    cmd += ["data.tiny.n=12", "search.problems_in_flight=4"]

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))

    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=small_disk, timeout=600)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "records.jsonl: could not write a record (File too large); the records before it are intact" in lines[0]
    assert "run the same command to resume" in lines[0]
    raw = (out / "records.jsonl").read_bytes()
    kept = [json.loads(line) for line in raw.decode().splitlines()]
    assert raw.endswith(b"\n") and 0 < len(kept) < 12  # whole lines only
    assert subprocess.run(cmd, capture_output=True, timeout=600).returncode == 0
    ids = [json.loads(line)["id"] for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(ids) == 12 == len(set(ids)) and ids[: len(kept)] == [k["id"] for k in kept]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_while_a_record_is_written_acts_once_the_record_is_written_and_counted(signum):
    """SIGTERM between the record's write and its count left summary.json one problem behind
    records.jsonl (seen in test_crash under load); the write and the count now go together."""
    from cord.errors import interrupts_deferred

    class Stopped(Exception):
        pass

    def stop(signum, frame):
        raise Stopped

    handler = stop if signum == signal.SIGTERM else signal.default_int_handler
    before = signal.signal(signum, handler)
    try:
        done = []
        with pytest.raises(Stopped if signum == signal.SIGTERM else KeyboardInterrupt), interrupts_deferred():
            os.kill(os.getpid(), signum)
            time.sleep(0.05)  # the Python-level handler runs here, inside the block
            done.append("written and counted")
        assert done == ["written and counted"]
        assert signal.getsignal(signum) is handler
    finally:
        signal.signal(signum, before)


def test_one_run_per_folder_a_second_is_refused_naming_the_process_and_a_killed_run_blocks_nothing(tmp_path):
    import subprocess
    import sys

    from cord.config import to_dict
    from cord.errors import ConfigError

    out = tmp_path / "run"
    config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", [f"output_dir={out}", "data.tiny.n=2"])
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from cord.records import RunDirectory; "
         "RunDirectory(sys.argv[1], {}).open(); print('open', flush=True); time.sleep(120)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(ConfigError, match=rf"another cord run is writing into this folder \(process {holder.pid}\)"):
            pipeline.run(config, progress=False)
        assert sorted(p.name for p in out.iterdir()) == before  # nothing written by the refused run
    finally:
        holder.kill()  # SIGKILL: no clean-up; the kernel lets the lock go
        holder.wait()
    summary = pipeline.run(config, progress=False, overwrite=True)
    assert summary["problems"] == 2 and (out / ".lock").read_text().strip() == str(os.getpid())
    assert to_dict(config)["output_dir"] == str(out)


def test_off_a_terminal_progress_is_a_line_a_log_can_follow(tmp_path, monkeypatch, capfd):
    from cord import progress

    monkeypatch.setattr(progress, "LINES_EVERY", 0.05)
    monkeypatch.setattr(progress, "TICK", 0.05)
    config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", [f"output_dir={tmp_path / 'run'}", "data.tiny.n=3"])
    pipeline.run(config, progress="lines")
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("cord: cord ")]
    assert lines and all("/3 problems done, " in line and " tok/s, " in line and "ETA " in line for line in lines)
    assert lines[0].startswith("cord: cord 0/3 problems done, 0 failed") and lines[-1].startswith("cord: cord 3/3 problems done")


@needs_tiny
def test_the_readmes_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    code = readme.split("## From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["apples", "pens"]  # in the order given
    assert lines[2].endswith("['apples', 'pens']")


PRICES = ["teachers.0.price={input: 0.5, output: 2.0, cached_input: 0.1}", "meta_prover.price={input: 0.2, output: 0.2}"]


def test_records_are_priced_and_max_cost_stops_the_run_with_finished_work_kept_and_a_higher_one_resumes(tmp_path):
    from cord.config import load_config
    from cord.records import read_records

    recipe = ROOT / "recipes" / "tiny-hetero.yaml"
    config = load_config(recipe, [f"output_dir={tmp_path / 'run'}", "data.tiny.n=12", "search.problems_in_flight=2", *PRICES])
    first = pipeline.run(config, progress=False)
    records = read_records(tmp_path / "run")
    for r in records:  # each record priced from its own tokens: teacher 0's prompts and output, the meta-prover's reads
        t = r.tokens
        teacher = (t.prompts["addsub"] - t.cached["addsub"]) * 0.5 + t.cached["addsub"] * 0.1 + t.teachers["addsub"] * 2.0
        assert r.cost == pytest.approx((teacher + t.meta_prover_read * 0.2) / 1e6)
        assert t.prompts["mul"] > 0 and t.meta_prover_read >= t.meta_prover > 0
    assert first["cost"]["total"] == pytest.approx(sum(r.cost for r in records))

    limit = first["cost"]["total"] / 3  # about a third of the problems
    capped = load_config(recipe, [f"output_dir={tmp_path / 'capped'}", "data.tiny.n=12", "search.problems_in_flight=2", *PRICES])
    capped.max_cost = limit
    stopped = pipeline.run(capped, progress=False)
    assert 1 <= stopped["new"] < 12 and stopped["stopped"].startswith(f"max_cost ${limit:g} reached")
    assert stopped["cost"]["total"] >= limit and stopped["cost"]["total"] - limit < max(r.cost for r in records) * 2
    kept = {r.id: r for r in read_records(tmp_path / "capped")}
    assert len(kept) == stopped["new"]
    capped.max_cost = None  # resumes past the limit: the same records, then the rest
    resumed = pipeline.run(capped, progress=False)
    assert resumed["resumed"] == len(kept) and resumed["problems"] == 12 and "stopped" not in resumed
    again = {r.id: r for r in read_records(tmp_path / "capped")}
    assert {i: again[i].reasoning for i in kept} == {i: r.reasoning for i, r in kept.items()}


def test_max_cost_needs_a_price():
    from cord.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"^max_cost: needs a price on at least one model"):
        load_config(ROOT / "recipes" / "tiny-hetero.yaml", ["max_cost=5"])
