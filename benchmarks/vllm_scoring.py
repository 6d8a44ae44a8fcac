"""Meta-prover scoring through vLLM as the trajectory grows: prompt log-probs against next-token
requests that read the prefix cache (cord's default, `scoring: next-token`).

    python benchmarks/vllm_scoring.py [--lengths 256 512 1024 2048] [--candidates 12]

Needs vLLM (`pip install 'cord-distill[vllm]'`). For each prefix length L, in one process, side by side:
  prompt-logprobs  12 candidates after the same L-token prefix scored with prompt_logprobs
  next-token       the same 12 scored with 1-token requests (allowed_token_ids = the answer token)
  generate         12 requests with the same prompts, max_tokens 1, no log-probs (the cache floor)
The accepted prefix is in the cache before each measurement, as in a CoRD round (it was scored
the round before). Prints seconds, tokens computed, the ratios, and the largest log-prob
difference between the two scoring methods. The model is a randomly initialised Llama.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--candidates", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    args = parser.parse_args()
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from cord.engines.base import ScoreRequest
    from cord.engines.vllm import VLLMEngine
    from cord.prompts import THINK_OPEN, answer_lead
    from cord.tiny.random_model import build_random_model

    with tempfile.TemporaryDirectory() as path:
        build_random_model(path, hidden=args.hidden, layers=args.layers, head_dim=64, mlp=3, max_positions=4096)
        engine = VLLMEngine(path, dtype="float32", max_model_len=max(args.lengths) + 256, enforce_eager=True, block_size=32)
        chat = engine.chat_prompt("Ann has 3 apples. How many?") + THINK_OPEN
        filler = "### Step 1. 3 + 4 = 7 and then we check it again\n"
        warm = [ScoreRequest(chat, (), "### Step 1. warm up\n", answer_lead(""), "1")]
        for method in ("prompt-logprobs", "next-token"):  # the first call of each pays one-off start-up costs
            engine.scoring = method
            engine.score(warm)
        print(
            f"{'prefix tok':>10} {'logprobs s':>10} {'next-token s':>12} {'generate s':>10} {'lp/nt':>6} {'nt/gen':>6} "
            f"{'tok lp':>7} {'tok nt':>7} {'max |diff|':>10}"
        )
        first = None
        for length in args.lengths:
            prefix = chat
            while len(engine.chat.ids(prefix)) < length:
                prefix += filler
            requests = [
                ScoreRequest(prefix, (), f"### Step 9. candidate {i} = {i}\n", answer_lead(""), "42") for i in range(args.candidates)
            ]
            prompts = [TokensPrompt(prompt_token_ids=engine.chat.sequence(r)[0]) for r in requests]
            greedy = SamplingParams(max_tokens=1, temperature=0.0)
            engine.llm.generate(prompts[:1], greedy, use_tqdm=False)  # the accepted prefix is cached (scored last round)
            timings, results = {}, {}
            for method in ("prompt-logprobs", "next-token"):
                engine.scoring = method
                start = time.perf_counter()
                results[method] = engine.score(requests)
                timings[method] = time.perf_counter() - start
            start = time.perf_counter()
            engine.llm.generate(prompts, greedy, use_tqdm=False)
            gen_s = time.perf_counter() - start
            lp, nt = timings["prompt-logprobs"], timings["next-token"]
            diff = max(
                abs(x - y) for a, b in zip(results["prompt-logprobs"], results["next-token"]) for x, y in zip(a.logprobs, b.logprobs)
            )
            tokens = {m: sum(r.new_tokens for r in results[m]) for m in results}
            first = first or (length, nt, lp)
            print(
                f"{length:>10} {lp:>10.3f} {nt:>12.3f} {gen_s:>10.3f} {lp / nt:>6.1f} {nt / gen_s:>6.1f} "
                f"{tokens['prompt-logprobs']:>7} {tokens['next-token']:>7} {diff:>10.1e}",
                flush=True,
            )
        last = (args.lengths[-1], nt, lp)
        growth = last[0] / first[0]
        print(
            f"\nprefix {first[0]} -> {last[0]} tokens ({growth:.0f}x): next-token scoring time x{last[1] / first[1]:.2f}, "
            f"prompt-logprobs x{last[2] / first[2]:.2f}"
        )


if __name__ == "__main__":
    main()
