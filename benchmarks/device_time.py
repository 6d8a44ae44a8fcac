"""Where CoRD's device time goes on separate devices, by cause, against Curation's (issue 45).

Runs benchmarks/devices.py's GPU-shaped simulation (three teachers and a meta-prover, each on a
simulated device, through cord's real strategies and scheduler) and splits every device's time:
- live: decode iterations, the share of their rows still decoding;
- held: decode iterations, the share of rows a pass holds after they ended (whole batches: a pass
  decodes as long as its longest row; continuous loops: none);
- prompt: prompt passes of admitted or re-admitted rows (each round's new step and opening);
- score: the meta-prover's scoring passes;
- idle: the wall time the device did nothing.
Each is device-seconds summed over the four devices, and for the three teacher devices the rows a
decode iteration held on average. P1 is CoRD's wall time over Curation's on the same path and
settings; "device P1" the same for the teacher devices' busy seconds (what a row-bound device pays),
and the last column that over the teacher tokens' ratio (device time a generated token).

Two settings: the docs' (`docs`: steps of 4-48 tokens, 4-8 of them, max_step_tokens 96, budget
1,024) and `paper-like` (steps of 32-384 tokens, 8-16 of them, cap 768, budget 8,192: trajectories
of thousands of tokens). Paper-like runs on a coarser clock so it stays within minutes: a simulated
decode iteration stands for `--stride` tokens of every row at the cost of one of the docs'
iterations, and a prompt or scored token costs as much less (the ratio of prompt to decode cost
per token stays the docs'). On a loaded CPU the search's own Python (every round of every
problem) can fall behind the simulated devices and show as idle device time: `--time-scale 4`
makes every device cost four times longer (walls four times longer, ratios the same shape).

    python benchmarks/device_time.py                          # both settings, continuous and server paths
    python benchmarks/device_time.py --settings docs --paths local --problems 64
    python benchmarks/device_time.py --problems 16 --in-flight 16   # every problem in flight at once
    python benchmarks/device_time.py --problems 16 --in-flight 16 --flat --settings docs --paths local continuous
    python benchmarks/device_time.py --paths local --reproducible [--shared-device] [--carry 0]   # whole batches
"""

from __future__ import annotations

import argparse
import copy

from devices import CARRY, DOCS, PAPER_LIKE, run

CAUSES = ("live", "held", "prompt", "score", "idle")


def settings(args, name: str) -> argparse.Namespace:
    """`args` for one setting: the docs' lengths, or the paper-like ones on a coarser clock."""
    out = copy.copy(args)
    out.decode_ms, out.prefill_us = args.decode_ms * args.time_scale, args.prefill_us * args.time_scale
    if name == "docs":
        out.lengths, out.stride, out.budget = DOCS, 1, 1024
    else:
        out.lengths, out.stride, out.budget, out.cap = PAPER_LIKE, args.stride, 8192, 768
        out.decode_ms, out.prefill_us = out.decode_ms / args.stride, out.prefill_us / args.stride  # per token: the docs' costs
        out.prefill_chunk = args.prefill_chunk * args.stride
    return out


def breakdown(result: dict) -> dict:
    """Device-seconds by cause over every device, the teacher devices' busy seconds and their
    mean rows a decode iteration."""
    devices, wall = result["devices"], result["wall"]
    out = dict.fromkeys(CAUSES, 0.0)
    for d in devices.values():
        for cause, seconds in d.causes.items():
            out[cause] += seconds
        out["idle"] += wall - d.busy
    teachers = [devices[f"gpu{i}"] for i in range(3)]
    out["teacher_busy"] = sum(d.busy for d in teachers)
    out["rows"] = sum(d.rows for d in teachers) / max(1, sum(d.iterations for d in teachers))
    out["tokens"] = sum(d.tokens for d in teachers)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=256, help="problems in all")
    parser.add_argument("--in-flight", type=int, default=64, help="problems in flight at once (search.problems_in_flight)")
    parser.add_argument("--settings", nargs="+", default=["docs", "paper-like"], choices=["docs", "paper-like"])
    parser.add_argument("--paths", nargs="+", default=["continuous", "server"], choices=["local", "continuous", "server"])
    parser.add_argument("--decode-ms", type=float, default=2.0, help="one decode iteration of a batch")
    parser.add_argument("--prefill-us", type=float, default=10.0, help="prefill or scoring, per token read")
    parser.add_argument("--cap", type=int, default=96, help="max_step_tokens at the docs' settings (paper-like: 768)")
    parser.add_argument("--prefill-chunk", type=int, default=8192, help="continuous and server paths: prompt tokens an iteration prefills")
    parser.add_argument("--stride", type=int, default=16, help="paper-like: tokens one simulated decode iteration stands for")
    parser.add_argument(
        "--rows-in-flight", type=int, default=None, help="search.rows_in_flight (problems started while devices have free rows)"
    )
    parser.add_argument(
        "--speculative", action="store_true", help="search.speculative: true (next-round proposals started early; needs --rows-in-flight)"
    )
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="every device cost times this (a slower clock: the search's Python small beside it)"
    )
    parser.add_argument("--flat", action="store_true", help="the issue's other cost model: iterations flat in rows, a pass 1/4 iteration")
    parser.add_argument(
        "--prefill-apart", action="store_true", help="prompt and scoring passes on top of decode iterations (the model before 2026-12-06)"
    )
    parser.add_argument(
        "--reproducible", action="store_true", help="search.reproducible: true (local engines' whole batches start in waves)"
    )
    parser.add_argument(
        "--shared-device",
        action="store_true",
        help="the four models placed as if on one device (one batch at a time; each still counted on its own simulated device)",
    )
    parser.add_argument(
        "--read-written",
        action="store_true",
        help="local and continuous paths: a teacher reads its own kept step again (the engine before 2026-12-07)",
    )
    parser.add_argument(
        "--carry",
        type=float,
        default=CARRY,
        help="local path, whole batches: a call returns once at most this share of its rows still decode, carrying them to the "
        "next call (0: every call runs its last rows to their end, the engine before 2026-12-07)",
    )
    parser.add_argument(
        "--static-passes", action="store_true", help="local path: passes of 64 rows, each to its longest (the engine before 2026-12-06)"
    )
    args = parser.parse_args()
    print(f"{args.problems} problems, {args.in_flight} in flight, 3 teachers + a meta-prover on 4 simulated devices")
    head = "| setting | path | method | wall s | " + " | ".join(CAUSES) + " | teacher busy s | rows / iteration | teacher tokens |"
    print("device-seconds by cause, summed over the 4 devices\n\n" + head + "\n" + "|---" * (head.count("|") - 1) + "|")
    ratios = []
    for name in args.settings:
        setting = settings(args, name)
        for path in args.paths:
            got = {}
            for method in ("cord", "curation"):
                result = run(method, path, setting)
                got[method] = b = breakdown(result) | {"wall": result["wall"], "failed": result["failed"]}
                causes = " | ".join(f"{b[c]:.1f}" for c in CAUSES)
                note = f" ({b['failed']} failed)" if b["failed"] else ""
                print(
                    f"| {name} | {path} | {method} | {b['wall']:.1f}{note} | {causes} | {b['teacher_busy']:.1f} | "
                    f"{b['rows']:.1f} | {b['tokens']:,} |",
                    flush=True,
                )
            cord, cur = got["cord"], got["curation"]
            ratios.append(
                (name, path, cord["wall"] / cur["wall"], cord["teacher_busy"] / cur["teacher_busy"], cord["tokens"] / cur["tokens"])
            )
    print(
        "\n| setting | path | P1 (CoRD wall / Curation wall) | device P1 (teacher busy) | teacher tokens CoRD / Curation "
        "| teacher busy a token, CoRD / Curation |"
    )
    print("|---|---|---|---|---|---|")
    for name, path, p1, device, tokens in ratios:
        print(f"| {name} | {path} | {p1:.2f} | {device:.2f} | {tokens:.2f} | {device / tokens:.2f} |")


if __name__ == "__main__":
    main()
