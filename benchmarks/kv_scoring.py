"""Kept KV cache against full recomputation for meta-prover scoring (transformers engine).

    python benchmarks/kv_scoring.py [--steps 24] [--step-tokens 40] [--candidates 12] [--hidden 256 --layers 6]

Simulates one CoRD trajectory: at every step, K x B candidate steps are scored after the accepted
prefix, then one is accepted. Both engines score the same requests side by side in one process;
the benchmark prints seconds and tokens computed per step and the ratio, the KV the kept-KV engine
holds after each step (the prefix once, each candidate's own step after it), and checks the scores
agree.
The model is a randomly initialised Llama (shape set by flags) with the shipped tokenizer layout:
the cost ratio depends on shape and length, not on what the weights learned.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--step-tokens", type=int, default=40, help="approximate tokens per step")
    parser.add_argument("--candidates", type=int, default=12, help="B x K candidates per step")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    args = parser.parse_args()
    from cord.engines.transformers import TransformersEngine
    from cord.scoring.meta_prover import meta_prover_request
    from cord.tiny.random_model import build_random_model

    rng = random.Random(0)
    words = ["add", "the", "then", "so", "check", "we", "get", "total", "apples", "wait"]

    def step(k: int) -> str:
        body = " ".join(rng.choice(words) if rng.random() < 0.6 else str(rng.randint(0, 99)) for _ in range(args.step_tokens // 2))
        return f"### Step {k}. {body}\n"

    with tempfile.TemporaryDirectory() as path:
        build_random_model(path, hidden=args.hidden, layers=args.layers, head_dim=64, mlp=3, max_positions=4096)
        kept, full = TransformersEngine(path), TransformersEngine(path, reuse_kv=False)
        chat = kept.chat_prompt("Ann has 3 apples. Then she finds 4 more. How many apples does Ann have now?")
        accepted: list[str] = []
        totals = {"kept": [0.0, 0], "full": [0.0, 0]}
        print(f"{'step':>4} {'prefix tok':>10} {'kept s':>8} {'full s':>8} {'ratio':>6} {'kept tok':>9} {'full tok':>9} {'KV kept MB':>10}")
        worst = 0.0
        for t in range(1, args.steps + 1):
            requests = [meta_prover_request(chat, tuple(accepted), step(t), "42") for _ in range(args.candidates)]
            times = {}
            for name, engine in (("kept", kept), ("full", full)):
                start = time.perf_counter()
                out = engine.score(requests)
                times[name] = (time.perf_counter() - start, sum(r.new_tokens for r in out), out)
                totals[name][0] += times[name][0]
                totals[name][1] += times[name][1]
            for a, b in zip(times["kept"][2], times["full"][2]):
                worst = max(worst, max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)))
            prefix = times["full"][2][0].total_tokens
            print(
                f"{t:>4} {prefix:>10} {times['kept'][0]:>8.3f} {times['full'][0]:>8.3f} {times['full'][0] / times['kept'][0]:>6.1f} "
                f"{times['kept'][1]:>9} {times['full'][1]:>9} {kept._kv.bytes / 2**20:>10.2f}",
                flush=True,
            )
            accepted.append(requests[0].candidate)
        k, f = totals["kept"], totals["full"]
        print(f"\ntotal: kept KV {k[0]:.2f} s, {k[1]} tokens computed; full recomputation {f[0]:.2f} s, {f[1]} tokens")
        print(f"speed-up {f[0] / k[0]:.2f}x in time, {f[1] / k[1]:.2f}x in tokens; largest log-prob difference {worst:.2e}")


if __name__ == "__main__":
    main()
