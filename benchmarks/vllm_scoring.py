"""What vLLM V1 prompt log-probabilities cost as the trajectory grows (SPEC.md's engine fact).

    python benchmarks/vllm_scoring.py [--lengths 128 512 1024 2048] [--candidates 12]

Needs vLLM (`pip install 'cord-distill[vllm]'`). For each prefix length L, in one process, side by side:
  score     12 candidates after the same L-token prefix with prompt_logprobs (cord's vLLM scoring)
  generate  12 requests with the same prompts, max_tokens 1, no log-probs (reads the prefix cache)
A request asking for prompt log-probabilities re-prefills its whole prompt, so its time grows with
L while cached generation does not. The model is a randomly initialised Llama (shape by flags).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 1024, 2048])
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
        engine = VLLMEngine(path, dtype="float32", max_model_len=max(args.lengths) + 256, enforce_eager=True)
        chat = engine.chat_prompt("Ann has 3 apples. How many?") + THINK_OPEN
        filler = "### Step 1. 3 + 4 = 7 and then we check it again\n"
        warm = [ScoreRequest(chat, (), "### Step 1. warm up\n", answer_lead(""), "1")]
        engine.score(warm)  # first prompt-logprob call pays one-off start-up costs
        print(f"{'prefix tok':>10} {'score s':>8} {'generate s':>10} {'ratio':>6}")
        for length in args.lengths:
            prefix = chat
            while len(engine.chat.ids(prefix)) < length:
                prefix += filler
            requests = [
                ScoreRequest(prefix, (), f"### Step 9. candidate {i} = {i}\n", answer_lead(""), "42") for i in range(args.candidates)
            ]
            prompts = [TokensPrompt(prompt_token_ids=engine.chat.sequence(r)[0]) for r in requests]
            greedy = SamplingParams(max_tokens=1, temperature=0.0)
            engine.llm.generate(prompts[:1], greedy, use_tqdm=False)  # warm the prefix cache
            start = time.perf_counter()
            engine.score(requests)
            score_s = time.perf_counter() - start
            start = time.perf_counter()
            engine.llm.generate(prompts, greedy, use_tqdm=False)
            gen_s = time.perf_counter() - start
            print(f"{length:>10} {score_s:>8.3f} {gen_s:>10.3f} {score_s / gen_s:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
