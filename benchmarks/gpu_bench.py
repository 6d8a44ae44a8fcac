"""The GPU measurement: the transformers engine at real model shapes and real trajectory lengths.

    python benchmarks/gpu_bench.py            # on a CUDA machine (bf16); see benchmarks/gpu.sh
    python benchmarks/gpu_bench.py --smoke    # the same code path, tiny shapes, on a CPU

Random-initialised Qwen2-style models of real shapes (the configs of a 1.5B and a 7B model, written
here: no weights are downloaded), with the shipped tiny tokenizer, so the vocabulary is 536 tokens
instead of ~152K (the LM head is the only layer smaller than the real model's; section D has the
real one). Random weights never write `### Step`, so every step runs to its cap: lengths are set
exactly by the caps. Sections:

  A  meta-prover scoring, kept KV against full re-prefill, after 2K / 8K / 16K-token prefixes (12
     candidates of ~40 tokens; the previous round's prefix already scored, as in CoRD). P2: kept-KV
     time per step when the prefix grows 8x (goal <= 1.5x).
  B  raw batched generation (batch 48), tokens/s.
  C  CoRD (B = 3, three teachers = one model at three temperatures) against Curation (one trajectory
     per teacher: the same number of complete trajectories) on a few problems at 2K-token
     trajectories: P1 wall-time ratio (goal <= 1.2), P2 meta-prover share (goal <= 3 % at real
     lengths), P3 CoRD's generated tokens/s over raw generation at the same concurrency (goal >= 0.8),
     peak GPU memory, and the most KV the engine's teacher and meta-prover stores held.
  D  (run before C) the meta-prover's scoring pass at Qwen2's vocabulary (151,936 rows of LM head;
     the tokenizer still writes only the tiny ids): 64 candidates of ~256 tokens after a 2K prefix,
     time and peak GPU memory. The engine computes logits only where the answer is read (every
     position's would be 64 x 280 x 151,936 logits: 11 GB in float32).

  H  a whole batch of 256 requests (caps as CoRD's steps end: most short, one in seven long) in
     passes of 64 rows against one running batch of 64 that the waiting requests join (`refill`,
     on by default on a GPU). benchmarks/devices.py's local path assumes the refilled one. Then
     the same requests as two calls, each run to its end against carrying its last rows into the
     next (`carry`, on by default in the scheduler's whole batches).

  G  one forward pass over 1 to 4,096 tokens (one sequence, no cache): the milliseconds a pass
     costs by its tokens. Flat up to some knee, then growing with the tokens: decoded rows and
     prompt tokens in one pass (vLLM's chunked prefill) cost no more than the rows alone below the
     knee. benchmarks/devices.py assumes a knee at --decode-ms / --prefill-us tokens (200).

Each section reports its own failure and the script goes on, so one run on a lent machine gives
every figure it can.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from pathlib import Path

SHAPES = {  # Qwen2-1.5B and Qwen2-7B (hidden, layers, heads, kv heads, intermediate)
    "1.5B": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, intermediate_size=8960),
    "7B": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, intermediate_size=18944),
}
SMOKE_SHAPES = {"smoke": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=128)}
FILLER = "### Step 1. 3 + 4 = 7, then we check the total again\n"


def log(message: str) -> None:
    print(message, flush=True)


def model_folder(root: Path, name: str, shape: dict, max_positions: int, vocab: int | None = None) -> tuple[Path, object]:
    """A folder with the tiny tokenizer and a Qwen2 config of `shape` (the tokenizer's vocabulary,
    or `vocab` rows of embeddings and LM head); the model, random, on the device."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from cord.tiny import model_path
    from cord.tiny.tokenizer import save

    tok = AutoTokenizer.from_pretrained(str(model_path("tiny-reader")))
    folder = root / name
    save(tok, folder)
    config = Qwen2Config(
        vocab_size=vocab or len(tok),
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **shape,
    )
    config.save_pretrained(folder)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    return folder, model


def text_of(engine, tokens: int, seed_text: str = FILLER) -> str:
    text = ""
    while len(engine.chat.ids(text)) < tokens:
        text += seed_text
    return text


def section_scoring(engines: dict, lengths: list[int], candidates: int) -> None:
    from cord.scoring.meta_prover import meta_prover_request

    for name, (kept, full) in engines.items():
        chat = kept.chat_prompt("Ann has 3 apples. Then she finds 4 more. How many apples does Ann have now?")
        per_step = {}
        for length in lengths:
            prefix = text_of(kept, length)
            accepted = "### Step 9. 7 * 2 = 14, so the total doubles\n"
            warm = [meta_prover_request(chat, (prefix,), f"### Step 9. candidate {i} = {i}\n", "42") for i in range(candidates)]
            kept.score(warm)  # the previous round: the prefix's KV is kept
            requests = [
                meta_prover_request(chat, (prefix, accepted), f"### Step 10. candidate {i} = {i} then more\n", "42")
                for i in range(candidates)
            ]
            sync()
            start = time.perf_counter()
            a = kept.score(requests)
            sync()
            kept_s = time.perf_counter() - start
            start = time.perf_counter()
            b = full.score(requests)
            sync()
            full_s = time.perf_counter() - start
            diff = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra.logprobs, rb.logprobs))
            per_step[length] = kept_s
            log(
                f"A {name} prefix {b[0].total_tokens:>6} tok: kept KV {kept_s:.3f} s ({sum(r.new_tokens for r in a)} tok computed), "
                f"full {full_s:.3f} s ({sum(r.new_tokens for r in b)} tok), full/kept {full_s / kept_s:.1f}x, max |dlogp| {diff:.1e}"
            )
        lo, hi = lengths[0], lengths[-1]
        growth = per_step[hi] / per_step[lo]
        log(f"A {name} P2 kept-KV scoring time per step, prefix {lo} -> {hi} ({hi / lo:.0f}x): x{growth:.2f} (goal <= 1.5)")


def section_vocabulary(root: Path, name: str, shape: dict, prefix_tokens: int, rows: int, candidate_tokens: int, vocab: int) -> None:
    import torch

    from cord.engines.transformers import TransformersEngine
    from cord.scoring.meta_prover import meta_prover_request

    folder, model = model_folder(root, f"{name}-vocab", shape, prefix_tokens + 2 * candidate_tokens + 256, vocab=vocab)
    engine = TransformersEngine(str(folder), device="cuda" if torch.cuda.is_available() else "cpu", loaded=model)
    chat = engine.chat_prompt("Ann has 3 apples. Then she finds 4 more. How many apples does Ann have now?")
    prefix = text_of(engine, prefix_tokens)
    engine.score([meta_prover_request(chat, (prefix,), "### Step 9. 3 + 4 = 7\n", "42")])  # the prefix's KV is kept
    body = text_of(engine, candidate_tokens, "then we add the next number and check it again ")
    requests = [meta_prover_request(chat, (prefix,), f"### Step 9. candidate {i}: {body}\n", "42") for i in range(rows)]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    out = engine.score(requests)
    sync()
    seconds = time.perf_counter() - start
    peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if torch.cuda.is_available() else ""
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    log(
        f"D {name} at vocabulary {vocab}: {rows} candidates of {len(engine.chat.ids(requests[0].candidate))} tokens after a "
        f"{prefix_tokens}-token prefix scored in {seconds:.3f} s ({sum(r.new_tokens for r in out)} tok computed){peak} "
        f"(weights {weights:.1f} GiB)"
    )
    del engine, model


def section_generation(engines: dict, batch: int, new_tokens: int, prompt_tokens: int) -> None:
    from cord.engines.base import GenerateRequest

    for name, (kept, _) in engines.items():
        prompt = kept.chat_prompt("Ann has 3 apples. How many?") + text_of(kept, prompt_tokens)
        requests = [GenerateRequest(prompt, new_tokens, 0.6, seed=i) for i in range(batch)]
        kept.generate(requests[:2])  # warm-up
        sync()
        start = time.perf_counter()
        out = kept.generate(requests)
        sync()
        seconds = time.perf_counter() - start
        tokens = sum(c.tokens for c in out)
        log(f"B {name} raw generation: batch {batch}, {new_tokens} new tokens after {prompt_tokens}: {tokens / seconds:.0f} tok/s")


def section_search(
    root: Path, engine, folder: Path, problems: int, length: int, step_tokens: int, rows_in_flight: int | None = None
) -> None:
    import copy

    from cord.config import Config, DataConfig, ModelConfig, SearchConfig
    from cord.data import load_problems
    from cord.engines import cache_key
    from cord.engines.base import GenerateRequest
    from cord.records import peak_memory
    from cord.run import run
    from cord.tiny.tasks import TinyTasksConfig

    device = engine.device
    teachers = [
        ModelConfig(name=f"t{t}", model=str(folder), temperature=t, max_step_tokens=step_tokens, device=device) for t in (0.5, 0.6, 0.7)
    ]
    base = Config(
        teachers=teachers,
        meta_prover=ModelConfig(name="mp", model=str(folder), device=device),
        search=SearchConfig(beam_size=3, reasoning_budget=length, answer_budget=8, problems_in_flight=problems),
        data=DataConfig(tiny=TinyTasksConfig(n=problems, seed=0)),
    )
    cache = {cache_key(teachers[0]): engine}
    data = load_problems(base.data)
    for store in (engine._gen_kv, engine._kv):  # sections A and B used this engine too
        store.clear()
    results = {}
    for method in ("cord", "curation"):
        config = copy.deepcopy(base)
        config.search.method = method
        config.search.rollouts = 1 if method == "curation" else None
        config.output_dir = str(root / method)
        sync()
        start = time.perf_counter()
        summary = run(config, problems=data, overwrite=True, progress=False, engine_cache=cache)
        sync()
        results[method] = (time.perf_counter() - start, summary)
    (cord_s, cord), (cur_s, _) = results["cord"], results["curation"]
    log(
        f"C P1 CoRD / Curation wall at {length}-token trajectories, {problems} problems: "
        f"{cord_s:.1f} s / {cur_s:.1f} s = {cord_s / cur_s:.2f} (goal <= 1.2)"
    )
    log(f"C P2 meta-prover share of CoRD's engine time: {cord['meta_prover_share']:.1%} (goal <= 3 %)")
    # Generation's part of the wall time by the measured split (a continuous run's problems wait side
    # by side, so their summed generation seconds exceed the wall time).
    cord_tps = cord["tokens"]["teachers_total"] / (cord_s * (1 - cord["meta_prover_share"]))
    concurrency = problems * 3 * 3
    prompt = engine.chat_prompt("Ann has 3 apples. How many?") + text_of(engine, length // 2)
    requests = [GenerateRequest(prompt, step_tokens, 0.6, seed=i) for i in range(concurrency)]
    sync()
    start = time.perf_counter()
    tokens = sum(c.tokens for c in engine.generate(requests))
    sync()
    raw_tps = tokens / (time.perf_counter() - start)
    ratio = cord_tps / raw_tps
    log(f"C P3 CoRD generated tok/s / raw at {concurrency} requests: {cord_tps:.0f} / {raw_tps:.0f} = {ratio:.2f} (goal >= 0.8)")
    log(f"C peak memory: {json.dumps(peak_memory())}")
    # The same CoRD run with whole batches (the scheduler's, each run to its end): one engine alone
    # on its GPU batches continuously by default (transformers: {continuous: auto}).
    batching, engine.continuous = engine.continuous, False
    config = copy.deepcopy(base)
    config.output_dir = str(root / "cord-whole")
    sync()
    start = time.perf_counter()
    whole = run(config, problems=data, overwrite=True, progress=False, engine_cache=cache)
    sync()
    whole_s, engine.continuous = time.perf_counter() - start, batching
    whole_tps = whole["tokens"]["teachers_total"] / (whole_s * (1 - whole["meta_prover_share"]))
    log(
        f"C CoRD {'continuous' if batching else 'whole'} batches (continuous: auto) {cord_s:.1f} s, whole batches {whole_s:.1f} s; "
        f"P3 whole batches {whole_tps:.0f} / {raw_tps:.0f} = {whole_tps / raw_tps:.2f}; "
        f"teacher tokens over the wall time {cord['tokens']['teachers_total'] / cord_s:.0f} "
        f"against {whole['tokens']['teachers_total'] / whole_s:.0f} tok/s"
    )
    if rows_in_flight:
        section_rows_in_flight(root, base, data, cache, rows_in_flight)
    log(
        f"C kept KV at most (CoRD then Curation, one engine): teachers {engine._gen_kv.peak_bytes / 2**20:.1f} MiB, "
        f"meta-prover {engine._kv.peak_bytes / 2**20:.1f} MiB (budget {engine._kv.max_bytes / 2**30:.0f} GiB each)"
    )


def section_rows_in_flight(root: Path, base, data, cache: dict, rows: int) -> None:
    """P1 with a quarter of the problems in flight, then with more started while the engine has
    fewer than `rows` generation rows out (search.rows_in_flight), then with CoRD's next-round
    proposals started early on those rows too (search.speculative; benchmarks/device_time.py is the
    simulation of the same)."""
    import copy

    from cord.run import run

    for setting, ahead in ((None, False), (rows, False), (rows, True)):
        walls = {}
        for method in ("cord", "curation"):
            config = copy.deepcopy(base)
            config.search.method, config.search.rollouts = method, 1 if method == "curation" else None
            config.search.problems_in_flight, config.search.rows_in_flight = max(1, len(data) // 4), setting
            config.search.speculative = ahead and method == "cord"
            config.output_dir = str(root / f"{method}-rows")
            sync()
            start = time.perf_counter()
            run(config, problems=data, overwrite=True, progress=False, engine_cache=cache)
            sync()
            walls[method] = time.perf_counter() - start
        log(
            f"C P1 {len(data) // 4 or 1} problems in flight, rows_in_flight {setting}{', speculative' if ahead else ''}: "
            f"{walls['cord']:.1f} s / {walls['curation']:.1f} s = {walls['cord'] / walls['curation']:.2f}"
        )


def section_two_gpus(root: Path, folder: Path, problems: int, length: int, step_tokens: int) -> None:
    """Three teachers (one model) on GPU 0 and the meta-prover (the same weights) on GPU 1: each GPU's
    busy share while CoRD runs: the devices computing at once and batching continuously (the
    default for models on devices of their own), at once with whole batches, and taking turns
    (reproducible)."""
    import copy
    import threading

    import torch

    from cord.config import Config, DataConfig, ModelConfig, SearchConfig
    from cord.data import load_problems
    from cord.engines import close_engines
    from cord.run import run
    from cord.tiny.tasks import TinyTasksConfig

    if torch.cuda.device_count() < 2:
        log(f"E two GPUs: skipped ({torch.cuda.device_count()} GPU visible)")
        return
    teachers = [
        ModelConfig(name=f"t{t}", model=str(folder), temperature=t, max_step_tokens=step_tokens, device="cuda:0") for t in (0.5, 0.6, 0.7)
    ]
    base = Config(
        teachers=teachers,
        meta_prover=ModelConfig(name="mp", model=str(folder), device="cuda:1"),
        search=SearchConfig(beam_size=3, reasoning_budget=length, answer_budget=8, problems_in_flight=problems),
        data=DataConfig(tiny=TinyTasksConfig(n=problems, seed=0)),
    )
    data, cache = load_problems(base.data), {}
    modes = (
        ("at once, continuous batches", False, "auto"),
        ("at once, whole batches", False, False),
        ("taking turns (reproducible)", True, "auto"),
    )
    for label, reproducible, continuous in modes:
        config = copy.deepcopy(base)
        config.search.reproducible = reproducible
        config.output_dir = str(root / f"two-gpus-{label.split()[-2]}")
        for engine in cache.values():  # the engines loaded by the first mode, shared by the next ones
            engine.continuous = continuous
        for model in [*config.teachers, config.meta_prover]:
            model.transformers.continuous = continuous
        busy, done = [[], []], threading.Event()

        def sample(busy: list[list[int]], done: threading.Event) -> None:  # NVML: the share of the last period a kernel ran
            while not done.wait(0.1):
                for gpu in (0, 1):
                    busy[gpu].append(torch.cuda.utilization(gpu))

        watcher = threading.Thread(target=sample, args=(busy, done), daemon=True)
        start = time.perf_counter()
        watcher.start()
        run(config, problems=data, overwrite=True, progress=False, engine_cache=cache)
        sync()
        done.set()
        watcher.join()
        shares = [sum(b) / max(1, len(b)) for b in busy]
        log(
            f"E two GPUs, {label}: {time.perf_counter() - start:.1f} s; "
            f"busy GPU 0 (teachers) {shares[0]:.0f} %, GPU 1 (meta-prover) {shares[1]:.0f} %"
        )
    close_engines(cache)


def section_continuous(engine, batch: int, new_tokens: int, prompt_tokens: int) -> None:
    """cord's decode loop against transformers' own continuous batching (`generate_batch`, paged
    attention) on the same model and prompts: raw generation, no stop strings."""
    from transformers import GenerationConfig

    from cord.engines.base import GenerateRequest

    prompt = engine.chat_prompt("Ann has 3 apples. How many?") + text_of(engine, prompt_tokens)
    requests = [GenerateRequest(prompt, new_tokens, 0.6, seed=i) for i in range(batch)]
    ids = [engine.chat.ids(prompt)] * batch
    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=True, temperature=0.6, eos_token_id=None)
    config.pad_token_id = engine.lm.tokenizer.pad_token_id
    engine.lm.model.generate_batch(ids[:2], generation_config=config, max_new_tokens=new_tokens)  # warm-up
    sync()
    start = time.perf_counter()
    ours = sum(c.tokens for c in engine.generate(requests)) / (time.perf_counter() - start)
    sync()
    start = time.perf_counter()
    out = engine.lm.model.generate_batch(ids, generation_config=config, max_new_tokens=new_tokens)
    sync()
    theirs = sum(len(o.generated_tokens) for o in out.values()) / (time.perf_counter() - start)
    log(
        f"F {batch} requests x {new_tokens} tokens after {prompt_tokens}: cord's loop {ours:.0f} tok/s, transformers' "
        f"continuous batching {theirs:.0f} tok/s; cord / transformers = {ours / theirs:.2f}"
    )


def section_forward_knee(engine, token_counts: list[int]) -> None:
    """Milliseconds of one forward pass by its tokens, and each against a one-token pass."""
    import torch

    model = engine.lm.model
    device = next(model.parameters()).device
    times = {}
    with torch.inference_mode():
        for n in token_counts:
            ids = torch.randint(0, model.config.vocab_size, (1, n), device=device)
            model(input_ids=ids, use_cache=False)  # warm-up
            sync()
            start, reps = time.perf_counter(), 5
            for _ in range(reps):
                model(input_ids=ids, use_cache=False, logits_to_keep=1)
            sync()
            times[n] = (time.perf_counter() - start) / reps * 1000
    base = times[token_counts[0]]
    log("G one forward pass: " + ", ".join(f"{n} tokens {ms:.1f} ms ({ms / base:.2f} x)" for n, ms in times.items()))


def section_refill(engine, requests_n: int, prompt_tokens: int, caps: tuple[int, int], rows: int) -> None:
    """A whole batch of more requests than `max_batch_size` rows: passes of 64 rows, each as long
    as its longest row, against one running batch the waiting requests join (`refill`). Caps are
    drawn as CoRD's steps end (random weights never write a step marker, so a row runs to its
    cap): one in seven at the long cap, the rest short."""
    import random

    from cord.engines.base import GenerateRequest

    rng = random.Random(0)
    prompt = engine.chat_prompt("Ann has 3 apples. How many?") + text_of(engine, prompt_tokens)
    lengths = [caps[1] if rng.random() < 1 / 7 else rng.randint(caps[0] // 4, caps[0]) for _ in range(requests_n)]
    requests = [GenerateRequest(prompt, n, 0.6, seed=i) for i, n in enumerate(lengths)]
    times, outs, before = {}, {}, (engine.max_batch_size, engine.refill)
    engine.max_batch_size = rows
    for refill in (False, True, False, True):
        engine.refill = refill
        sync()
        start = time.perf_counter()
        outs[refill] = engine.generate(requests)
        sync()
        times[refill] = time.perf_counter() - start  # the second of each: warm
    same = sum(a.text == b.text for a, b in zip(outs[False], outs[True])) / len(requests)
    tokens = sum(lengths)
    log(
        f"H {requests_n} requests ({tokens} tokens, caps {caps[0] // 4}-{caps[0]} and one in seven {caps[1]}), "
        f"{rows} rows: passes {times[False]:.2f} s, refilled {times[True]:.2f} s "
        f"(refilled / passes = {times[True] / times[False]:.2f}); completions the same text: {same:.0%}"
    )
    # The same requests as two calls (two rounds, as the scheduler sends them), refilled, each run
    # to its end against carrying its last rows into the next call (`carry`; the scheduler's whole
    # batches send carried requests again, as here).
    from cord.engines.base import CARRIED

    def two_calls(carry: bool) -> tuple[float, dict]:
        engine.refill, engine.carry, engine.whole_batches = True, carry, True
        parts, carried, out = [requests[: requests_n // 2], requests[requests_n // 2 :]], [], {}
        sync()
        start = time.perf_counter()
        while parts or carried:
            batch = carried + (parts.pop(0) if parts else [])
            got = engine.generate(batch)
            carried = [r for r, c in zip(batch, got) if c.finish == CARRIED]
            out |= {r: c for r, c in zip(batch, got) if c.finish != CARRIED}
        sync()
        return time.perf_counter() - start, out

    runs = {carry: two_calls(carry) for carry in (False, True, False, True)}  # the second of each: warm
    engine.max_batch_size, engine.refill, engine.whole_batches = *before, False
    same = sum(runs[False][1][r].text == runs[True][1][r].text for r in requests) / len(requests)
    log(
        f"H the same as two calls, {rows} rows: each to its end {runs[False][0]:.2f} s, carrying its last rows "
        f"{runs[True][0]:.2f} s (carrying / to its end = {runs[True][0] / runs[False][0]:.2f}); the same text: {same:.0%}"
    )


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and lengths, CPU: checks the code path")
    parser.add_argument("--shapes", nargs="+", default=None, help="of 1.5B 7B (default both)")
    parser.add_argument("--rows-in-flight", type=int, default=None, help="section C also: P1 with this search.rows_in_flight")
    args = parser.parse_args()
    import torch

    from cord.engines.transformers import TransformersEngine

    smoke = args.smoke
    shapes = SMOKE_SHAPES if smoke else {k: SHAPES[k] for k in (args.shapes or SHAPES)}
    lengths = [64, 128, 512] if smoke else [2048, 8192, 16384]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    log(f"gpu_bench: torch {torch.__version__}, device {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}, smoke={smoke}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        engines, folders = {}, {}
        for name, shape in shapes.items():
            try:
                folder, model = model_folder(root, name, shape, max(lengths) + 1024)
                params = sum(p.numel() for p in model.parameters()) / 1e9
                kept = TransformersEngine(str(folder), device=device, loaded=model)
                full = TransformersEngine(str(folder), device=device, loaded=model, reuse_kv=False)
                engines[name], folders[name] = (kept, full), folder
                log(f"model {name}: {params:.2f} B parameters (vocab {model.config.vocab_size}), {next(model.parameters()).dtype}")
            except Exception:
                log(f"model {name}: FAILED\n{traceback.format_exc()}")
        for title, call in (
            ("A scoring", lambda: section_scoring(engines, lengths, 12)),
            ("B generation", lambda: section_generation(engines, 48, 16 if smoke else 256, lengths[0])),
            (
                "D scoring at a real vocabulary",
                lambda: section_vocabulary(root, *list(shapes.items())[-1], lengths[0], 16 if smoke else 64, 64 if smoke else 256, 151936),
            ),
            (
                "C search",
                lambda: section_search(
                    root,
                    *(lambda n: (engines[n][0], folders[n]))(next(iter(engines))),
                    2 if smoke else 4,
                    lengths[0],
                    lengths[0] // 8,
                    args.rows_in_flight,
                ),
            ),
            (
                "F continuous batching",
                lambda: section_continuous(engines[next(iter(engines))][0], 4 if smoke else 48, 8 if smoke else 256, lengths[0]),
            ),
            (
                "G forward pass by tokens",
                lambda: section_forward_knee(
                    engines[list(engines)[-1]][0], [1, 16, 64] if smoke else [1, 16, 64, 128, 256, 512, 1024, 2048, 4096]
                ),
            ),
            (
                "H whole batch refilled",
                lambda: section_refill(
                    engines[next(iter(engines))][0], 24 if smoke else 256, lengths[0], (8, 32) if smoke else (128, 512), 8 if smoke else 64
                ),
            ),
            (
                "E two GPUs",
                lambda: section_two_gpus(root, folders[next(iter(engines))], 2 if smoke else 8, lengths[0], lengths[0] // 8),
            ),
        ):
            try:
                call()
            except Exception:
                log(f"{title}: FAILED\n{traceback.format_exc()}")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    log(f"gpu_bench: done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
