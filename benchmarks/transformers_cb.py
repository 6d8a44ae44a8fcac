"""cord's transformers decode loop against transformers' own continuous batching
(`model.generate_batch`, its ContinuousBatchingManager with paged attention), on the same model,
prompts and token count, side by side in one process: raw batched generation, no stop strings.

    python benchmarks/transformers_cb.py [--model real:smollm2-135m-instruct] [--requests 48] [--tokens 64]

The manager takes one GenerationConfig for every request: no per-request seed, temperature or stop
strings, which cord's requests each carry. This measures throughput only.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="real:smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    import torch
    from transformers import GenerationConfig

    from cord.engines import resolve_model
    from cord.engines.base import GenerateRequest
    from cord.engines.transformers import TransformersEngine
    from cord.prompts import teacher_prompt, user_turn
    from cord.tiny.tasks import generate_problems

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    engine = TransformersEngine(resolve_model(args.model), dtype="float32" if device == "cpu" else "auto", device=device)
    rows = generate_problems(args.requests, 0, "mixed")
    prompts = [teacher_prompt(engine.chat_prompt(user_turn(r["problem"], None)), "", "### Step") for r in rows]
    requests = [GenerateRequest(p, args.tokens, 0.6, 1.0, seed=i) for i, p in enumerate(prompts)]
    ids = [engine.chat.ids(p) for p in prompts]
    config = GenerationConfig(max_new_tokens=args.tokens, do_sample=True, temperature=0.6, eos_token_id=None)
    config.pad_token_id = engine.lm.tokenizer.pad_token_id

    engine.generate(requests[:4])  # warm-up, both
    engine.lm.model.generate_batch(ids[:4], generation_config=config, max_new_tokens=args.tokens)
    start = time.perf_counter()
    ours = sum(c.tokens for c in engine.generate(requests)) / (time.perf_counter() - start)
    start = time.perf_counter()
    out = engine.lm.model.generate_batch(ids, generation_config=config, max_new_tokens=args.tokens)
    theirs = sum(len(o.generated_tokens) for o in out.values()) / (time.perf_counter() - start)
    print(
        f"{args.model} on {device}, {args.requests} requests x {args.tokens} tokens: cord's loop {ours:.0f} tok/s, "
        f"transformers' continuous batching {theirs:.0f} tok/s; cord / transformers = {ours / theirs:.2f}"
    )


if __name__ == "__main__":
    main()
