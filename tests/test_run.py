"""The pipeline's traces for unattended runs: OUT/run.log, summary.json refreshed while running."""

from __future__ import annotations

import importlib
import json

from cord.config import load_config
from cord.records import RunDirectory
from helpers import ROOT, needs_tiny

pytestmark = needs_tiny
pipeline = importlib.import_module("cord.run")  # the module: `cord.run` is also the package's run()


def test_run_log_names_the_models_every_problem_and_the_end_and_summary_json_is_refreshed_while_running(tmp_path, monkeypatch):
    seen: list[dict] = []
    write = RunDirectory.write_summary
    monkeypatch.setattr(pipeline, "SUMMARY_EVERY", 0.0)
    monkeypatch.setattr(RunDirectory, "write_summary", lambda self, s: (seen.append(json.loads(json.dumps(s))), write(self, s))[1])
    out = tmp_path / "run"
    config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", [f"output_dir={out}", "data.tiny.n=3", "search.problems_in_flight=1"])
    pipeline.run(config, progress=False)
    running = [s for s in seen if s["running"]]
    assert [s["problems"] for s in running] == [1, 2, 3] and seen[-1]["running"] is False
    log = (out / "run.log").read_text()
    assert "3 problems, 0 already done, 3 to do" in log and "models loaded in" in log and "TransformersEngine" in log
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
