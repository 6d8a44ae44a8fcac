"""`cord evaluate RUN_DIR [RUN_DIR ...] [--json]`: one table across run directories."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from .config import ConfigError
from .records import CONFIG, read_records, summarize

COLUMNS = (
    ("run", "run"),
    ("method", "method"),
    ("teachers", "teachers"),
    ("problems", "n"),
    ("accuracy", "accuracy"),
    ("valid_trace_rate", "valid traces"),
    ("mean_predictive_perplexity", "pred. perplexity"),
    ("teacher_tokens", "teacher tokens"),
    ("meta_prover_tokens", "MP tokens"),
    ("seconds", "seconds"),
    ("meta_prover_share", "MP share"),
    ("cap_share", "steps at cap"),
    ("failures", "failures"),
)


def run_row(path: Path, label: str | None = None) -> dict:
    if not (path / CONFIG).is_file():
        raise ConfigError(f"{path}: not a cord run directory (no {CONFIG})")
    config = yaml.safe_load((path / CONFIG).read_text())
    records = read_records(path)
    s = summarize(records)
    if not records:
        return {"run": label or path.name, "method": (config.get("search") or {}).get("method"), "problems": 0}
    return {
        "run": label or path.name,
        "method": s["method"],
        "teachers": ", ".join(t.get("name") or str(t.get("model")) for t in config.get("teachers") or []),
        "problems": s["problems"],
        "accuracy": s["accuracy"],
        "valid_trace_rate": s["valid_trace_rate"],
        "mean_predictive_perplexity": s["mean_predictive_perplexity"],
        "teacher_tokens": s["tokens"]["teachers_total"],
        "meta_prover_tokens": s["tokens"]["meta_prover"],
        "seconds": s["generation_seconds"] + s["scoring_seconds"],
        "meta_prover_share": s["meta_prover_share"],
        "failures": s["failures"],
        "cap_share": (sum(e.get("cap", 0) for e in s["step_ends"].values()) / total)
        if (total := sum(sum(e.values()) for e in s["step_ends"].values()))
        else None,
        "step_ends": s["step_ends"],
        "warnings": s["warnings"],
    }


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("accuracy", "valid_trace_rate", "meta_prover_share", "cap_share"):
        return f"{100 * value:.1f}%"
    if key == "mean_predictive_perplexity":
        return f"{value:.3f}"
    if key == "seconds":
        return f"{value:.1f}"
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
    parser = argparse.ArgumentParser(prog="cord evaluate", description="Compare run directories side by side.")
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = parser.parse_args(argv)
    rows = [run_row(p) for p in args.runs]
    print(json.dumps(rows, indent=2) if args.json else render_table(rows))
    if not args.json:
        for row in rows:
            for name, ends in (row.get("step_ends") or {}).items():
                print(f"{row['run']}: {name} steps ended " + ", ".join(f"{end} {n}" for end, n in sorted(ends.items())))
            for warning in row.get("warnings") or []:
                print(f"warning: {row['run']}: {warning}", file=sys.stderr)
    return 0
