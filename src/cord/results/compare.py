"""`cord evaluate RUN_DIR [RUN_DIR ...] [--json] [--figure2] [--figure2-data PATH]`: one table across
run directories, with a 95 % interval for accuracy, and the teacher hit rate against position in
the trajectory (the paper's Figure 2)."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path

from ..command import command_parser
from ..errors import ConfigError
from ..records import Record, RunData, read_run, summarize

COLUMNS = (
    ("run", "run"),
    ("method", "method"),
    ("teachers", "teachers"),
    ("problems", "n"),
    ("accuracy", "accuracy"),
    ("accuracy_ci95", "95% CI"),
    ("valid_trace_rate", "valid traces"),
    ("mean_predictive_perplexity", "pred. perplexity"),  # Eq. 3: the answer's tokens alone
    ("mean_predictive_perplexity_with_end", "S with end"),  # as ranked: search.answer_end scored too
    ("teacher_tokens", "teacher tokens"),
    ("meta_prover_tokens", "MP tokens"),
    ("seconds", "seconds"),
    ("cost", "cost (USD)"),
    ("cost_per_problem", "USD / problem"),
    ("meta_prover_share", "MP share"),
    ("cap_share", "steps at cap"),
    ("empty_share", "empty steps"),
    ("fallback_answers", "prefilled answers"),
    ("empty_answers", "empty answers"),
    ("failures", "failures"),
)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (sound at 0 %, 100 % and small n, unlike p +- 1.96 se)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


FIGURE2_BINS = 10


def teacher_hit_rate(records: Iterable[Record], bins: int = FIGURE2_BINS) -> dict:
    """Which teacher proposed the chosen step at each normalised position of the trajectory (the
    paper's Figure 2): step i of n sits at (i + 0.5) / n; per bin, each teacher's share of steps,
    a step that n teachers proposed counting 1/n to each."""
    counts: list[dict[str, float]] = [{} for _ in range(bins)]
    for record in records:
        n = len(record.steps)
        for i, step in enumerate(record.steps):
            b = min(bins - 1, int((i + 0.5) / n * bins))
            for teacher, share in step.credit.items():
                counts[b][teacher] = counts[b].get(teacher, 0) + share
    teachers = sorted({t for c in counts for t in c})
    totals = [round(sum(c.values())) for c in counts]  # each step's shares sum to 1
    return {
        "bins": [[b / bins, (b + 1) / bins] for b in range(bins)],
        "steps": totals,
        "hit_rate": {t: [(c.get(t, 0) / total) if total else None for c, total in zip(counts, totals)] for t in teachers},
    }


def render_hit_rate(name: str, figure: dict) -> str:
    teachers = list(figure["hit_rate"])
    heads = ["position", "steps", *teachers]
    lines = [f"### {name}: teacher hit rate by position in the trajectory", "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for b, ((lo, hi), steps) in enumerate(zip(figure["bins"], figure["steps"])):
        rates = [figure["hit_rate"][t][b] for t in teachers]
        cells = ["-" if r is None else f"{100 * r:.0f}%" for r in rates]
        lines.append(f"| {lo:.2f}-{hi:.2f} | {steps} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_hit_rate_csv(path: Path, figures: dict[str, dict]) -> None:
    """Long-format data for plotting: run, bin start, bin end, teacher, hit rate, steps in the bin."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "bin_start", "bin_end", "teacher", "hit_rate", "steps"])
        for run, figure in figures.items():
            for teacher, rates in figure["hit_rate"].items():
                for (lo, hi), steps, rate in zip(figure["bins"], figure["steps"], rates):
                    writer.writerow([run, lo, hi, teacher, "" if rate is None else f"{rate:.6f}", steps])


def run_row(path: Path, label: str | None = None, bins: int = FIGURE2_BINS) -> dict:
    return row_of(read_run(path), label, bins)


def row_of(run: RunData, label: str | None = None, bins: int = FIGURE2_BINS) -> dict:
    """The table row of a run already read (the report reads each run once)."""
    path, config, records = run.path, run.config, run.records
    s = summarize(records)
    if not s["problems"]:
        return {"run": label or path.name, "method": (config.get("search") or {}).get("method"), "problems": 0}
    proposed = sum(sum(e.values()) for e in s["step_ends"].values())
    return {
        "run": label or path.name,
        "method": s["method"],
        "teachers": ", ".join(t.get("name") or str(t.get("model")) for t in config.get("teachers") or []),
        "problems": s["problems"],
        "accuracy": s["accuracy"],
        "accuracy_ci95": wilson_interval(s["correct"], s["problems"] - s["ungraded"]),
        "valid_trace_rate": s["valid_trace_rate"],
        "mean_predictive_perplexity": s["mean_predictive_perplexity"],
        "mean_predictive_perplexity_with_end": s["mean_predictive_perplexity_with_end"],
        "mean_answer_only_perplexity": s["mean_answer_only_perplexity"],  # the headline's older name, for --json readers
        "teacher_tokens": s["tokens"]["teachers_total"],
        "meta_prover_tokens": s["tokens"]["meta_prover"],
        "seconds": s["generation_seconds"] + s["scoring_seconds"],
        "meta_prover_share": s["meta_prover_share"],
        "failures": s["failures"],
        "cap_share": sum(e.get("cap", 0) for e in s["step_ends"].values()) / proposed if proposed else None,
        "empty_share": sum(s["empty_steps"].values()) / proposed if proposed else None,
        "fallback_answers": s["fallback_answers"],
        "empty_answers": s["empty_answers"],
        "step_ends": s["step_ends"],
        "empty_steps": s["empty_steps"],
        "quality_flags": s["quality_flags"],
        "warnings": s["warnings"],
        "teacher_hit_rate": teacher_hit_rate(records, bins),
    } | ({"cost": s["cost"]["total"], "cost_per_problem": s["cost"]["per_problem"]} if "cost" in s else {})


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("accuracy", "valid_trace_rate", "meta_prover_share", "cap_share", "empty_share"):
        return f"{100 * value:.1f}%"
    if key == "accuracy_ci95":
        return f"{100 * value[0]:.1f}-{100 * value[1]:.1f}%"
    if key in ("mean_predictive_perplexity", "mean_predictive_perplexity_with_end"):
        return f"{value:.3f}"
    if key == "seconds":
        return f"{value:.1f}"
    if key in ("cost", "cost_per_problem"):
        return f"{value:.4g}"
    return str(value)


def render_table(rows: list[dict], title: str = "") -> str:
    """A plain-text table (also valid Markdown)."""
    keys = [k for k, _ in COLUMNS if any(k in r for r in rows)]
    heads = [h for k, h in COLUMNS if k in keys]
    body = [[_cell(k, r.get(k)) for k in keys] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(heads)] if body else [len(h) for h in heads]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [f"### {title}", ""] if title else []
    out += [line(heads), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(prog="cord evaluate", description="Compare run directories side by side.")
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    parser.add_argument("--figure2", action="store_true", help="also print each run's teacher hit rate by position")
    parser.add_argument("--figure2-data", type=Path, metavar="CSV", help="write the hit rates as CSV for plotting")
    parser.add_argument("--bins", type=int, default=FIGURE2_BINS, help="position bins of the hit rate (default 10)")
    args = parser.parse_args(argv)
    if args.bins < 1:
        raise ConfigError(f"--bins: must be >= 1, got {args.bins}")
    rows = [run_row(p, bins=args.bins) for p in args.runs]
    print(json.dumps(rows, indent=2) if args.json else render_table(rows))
    if args.figure2 and not args.json:
        for row in rows:
            if row.get("teacher_hit_rate"):
                print("\n" + render_hit_rate(row["run"], row["teacher_hit_rate"]))
    if args.figure2_data:
        write_hit_rate_csv(args.figure2_data, {r["run"]: r["teacher_hit_rate"] for r in rows if r.get("teacher_hit_rate")})
        print(f"wrote {args.figure2_data}", file=sys.stderr)
    if not args.json:
        for row in rows:
            for name, ends in (row.get("step_ends") or {}).items():
                empty = (row.get("empty_steps") or {}).get(name, 0)
                ended = ", ".join(f"{end} {n}" for end, n in sorted(ends.items()))
                print(f"{row['run']}: {name} steps ended {ended}; {empty} empty")
            if row.get("problems"):
                flags = row.get("quality_flags") or {}
                found = ", ".join(f"{flag} {n}" for flag, n in flags.items()) or "none"
                print(f"{row['run']}: quality flags (records; cord export drops some by default): {found}")
            for warning in row.get("warnings") or []:
                print(f"warning: {row['run']}: {warning}", file=sys.stderr)
    return 0
