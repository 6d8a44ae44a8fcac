"""`cord report RUN_DIR... --out report.html`: one self-contained HTML page (no network) to read runs.

The comparison table across runs (over every problem), the teacher hit rate by position (the
paper's Figure 2) as SVG, and problems: the chosen trajectory with each step coloured by its teacher
and its score, the score along the steps, the final answer and its grade, and the runners-up kept
with `search.keep_top_k` on demand. Everything is rendered here with every model-written string
escaped; the page's one small script (assets/report.js) only filters and searches.

The page opens at any size: records stream from disk, and each run shows at most `max_problems`
problems (and at most its share of PAGE_BUDGET bytes), chosen by one stated rule: failures first
(up to a quarter), then the same number of each grade (right, wrong, not graded), spread evenly
over the input order. `--ids` and `--grade` make a page of any other problems. A teacher's colour
follows from its name, so it is the same in every report.
"""

from __future__ import annotations

import datetime
import html
import zlib
from importlib import resources
from pathlib import Path
from string import Template

from ...command import command_parser
from ...errors import ConfigError
from ...records import Alternative, Record, RunData, answer_only_perplexity, atomic_write, read_run
from ..compare import COLUMNS, _cell, row_of

# Okabe-Ito: distinguishable with the common colour-vision deficiencies
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#F0E442", "#999999", "#000000")
TABLE_KEYS = (
    "run",
    "method",
    "teachers",
    "problems",
    "accuracy",
    "accuracy_ci95",
    "valid_trace_rate",
    "mean_predictive_perplexity",
    "mean_predictive_perplexity_with_end",
    "teacher_tokens",
    "seconds",
    "cost",
    "cost_per_problem",
    "meta_prover_share",
    "failures",
)


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


MAX_PROBLEMS = 200  # problems shown per run unless --max-problems says otherwise
PAGE_BUDGET = 15 * 2**20  # bytes of problem cards in one page, shared by its runs


def colour_of(name: str) -> str:
    """A teacher's colour, from its name alone: the same teacher has it in every report."""
    return PALETTE[zlib.crc32(name.encode("utf-8")) % len(PALETTE)]


def teacher_colours(runs: list[RunData]) -> dict[str, str]:
    names: set[str] = set()
    for run in runs:
        for r in run.records:
            for t in (r, *r.alternatives):
                for s in t.steps:
                    names.add(s.teacher)
                    names.update(c["teacher"] for c in s.candidates or [])
    return {name: colour_of(name) for name in sorted(names)}


def chosen(
    run: RunData, limit: int, budget: int, ids: set[str] | None, grade: str | None, colours: dict[str, str]
) -> tuple[list[str], str]:
    """The run's problem cards the page shows, and the rule that chose them, in a line. Two passes
    over the records: one counts each grade, one takes failures first (up to a quarter of
    `limit`) and then an even share of each grade, spread evenly over the input order, until
    `limit` problems or `budget` bytes."""
    if ids is not None or grade is not None:
        cards = []
        for r in run.records:
            if (ids is None or r.id in ids) and (grade is None or grade_of(r, r.failed) == grade) and len(cards) < limit:
                cards.append(problem_card(run, r, colours))
        return cards, f"{len(cards)} problems asked for ({'--ids' if ids is not None else f'--grade {grade}'})"
    counts: dict[str, int] = {}
    for r in run.records:
        counts[grade_of(r, r.failed)] = counts.get(grade_of(r, r.failed), 0) + 1
    quota = {"failed": min(counts.get("failed", 0), limit // 4)}
    rest = [g for g in ("right", "wrong", "ungraded") if counts.get(g)]
    left = limit - quota["failed"]
    for i, g in enumerate(sorted(rest, key=lambda g: counts[g])):  # smaller grades first; what they leave goes on
        quota[g] = min(counts[g], left // (len(rest) - i))
        left -= quota[g]
    seen: dict[str, int] = {}
    cards, size = [], 0
    for r in run.records:
        g = grade_of(r, r.failed)
        k, n, q = seen.get(g, 0), counts[g], quota.get(g, 0)
        seen[g] = k + 1
        if q and (k * q) // n != ((k + 1) * q) // n:  # evenly spread: the k-th of n is taken q times in n
            card = problem_card(run, r, colours)
            if size + len(card) > budget:
                break
            cards.append(card)
            size += len(card)
    total = sum(counts.values())
    if len(cards) == total:
        return cards, f"all {total} problems"
    shown = ", ".join(f"{quota.get(g, 0)} of {counts[g]} {BADGE[g]}" for g in ("failed", "right", "wrong", "ungraded") if counts.get(g))
    cut = " (the page's size budget stopped it early)" if len(cards) < sum(quota.values()) else ""
    return cards, f"{len(cards)} of {total} problems: {shown}, spread evenly over the input order{cut}"


def runs_table(rows: list[dict]) -> str:
    heads = {k: h for k, h in COLUMNS}
    keys = [k for k in TABLE_KEYS if any(k in r for r in rows)]
    out = ['<div class="table"><table class="runs"><thead><tr>', *(f"<th>{esc(heads[k])}</th>" for k in keys), "</tr></thead><tbody>"]
    for r in rows:
        cells = "".join(f"<td{' class=text' if k in ('run', 'method', 'teachers') else ''}>{esc(_cell(k, r.get(k)))}</td>" for k in keys)
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def hit_rate_chart(name: str, figure: dict, colours: dict[str, str], width: int = 340, height: int = 170) -> str:
    """Stacked bars: per position bin, each teacher's share of the chosen steps."""
    bins = figure["bins"]
    left, bottom, top = 30, 22, 8
    plot_w, plot_h = width - left - 8, height - bottom - top
    bar_w = plot_w / len(bins)
    parts = [f'<svg class="hit-rate" role="img" aria-label="teacher hit rate, {esc(name)}" width="{width}" height="{height}">']
    for tick in (0, 0.5, 1):
        y = top + plot_h * (1 - tick)
        parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{int(tick * 100)}%</text>')
    for b, (lo, _) in enumerate(bins):
        y = top + plot_h
        for teacher, rates in figure["hit_rate"].items():
            rate = rates[b] or 0.0
            if rate <= 0:
                continue
            h = plot_h * rate
            y -= h
            parts.append(
                f'<rect class="bar" data-teacher="{esc(teacher)}" x="{left + b * bar_w + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{h:.1f}" fill="{colours.get(teacher, "#999")}"><title>{esc(teacher)}: {100 * rate:.0f}% of '
                f"{figure['steps'][b]} steps</title></rect>"
            )
        if b % max(1, len(bins) // 5) == 0:
            parts.append(f'<text x="{left + b * bar_w:.1f}" y="{height - 8}">{lo:.1f}</text>')
    parts.append(f'<text x="{width - 8}" y="{height - 8}" text-anchor="end">1.0</text></svg>')
    return f'<figure class="chart">{"".join(parts)}<figcaption>{esc(name)}</figcaption></figure>'


def sparkline(scores: list[float | None], width: int = 160, height: int = 28) -> str:
    points = [(i, s) for i, s in enumerate(scores) if s is not None]
    if len(points) < 2:
        return ""
    top = max(s for _, s in points) or 1.0
    coords = " ".join(f"{4 + i * (width - 8) / (len(scores) - 1):.1f},{height - 3 - (height - 6) * s / top:.1f}" for i, s in points)
    return (
        f'<svg class="scores" width="{width}" height="{height}" role="img" aria-label="score along the steps">'
        f'<polyline points="{coords}" fill="none" stroke="#0072B2" stroke-width="1.5"/></svg>'
    )


def grade_of(t: Record | Alternative, failed: str | None = None) -> str:
    if failed:
        return "failed"
    return "ungraded" if t.correct is None else "right" if t.correct else "wrong"


BADGE = {"right": "correct", "wrong": "incorrect", "ungraded": "not graded", "failed": "failed"}
ANSWER_FALLBACKS = {"prefilled": ", continued after a pre-filled boxed line", "empty": ", nothing to grade even pre-filled"}


def rivals(candidates: list[dict] | None, colours: dict[str, str]) -> str:
    """The candidates that lost to a step (search.keep_candidates), on demand."""
    if not candidates:
        return ""
    items = "".join(
        f'<div class="step rival" data-teacher="{esc(c["teacher"])}" style="border-left-color: {colours.get(c["teacher"], "#999")}">'
        f'<div class="meta">{esc(c["teacher"])} · score {c["score"]:.3f}</div><pre>{esc(c["text"])}</pre></div>'
        for c in candidates
    )
    return f"<details class='rivals'><summary>{len(candidates)} candidate(s) that lost here</summary>{items}</details>"


def trajectory(t: Record | Alternative, colours: dict[str, str]) -> str:
    out = []
    for k, step in enumerate(t.steps, 1):
        colour = colours.get(step.teacher, "#999")
        score = "-" if step.score is None else f"{step.score:.3f}"
        also = [name for name in step.proposers or [] if name != step.teacher]  # proposed the same text: credited too
        who = esc(step.teacher) + (f" (also proposed by {esc(', '.join(also))})" if also else "")
        out.append(
            f'<div class="step" data-teacher="{esc(step.teacher)}" style="border-left-color: {colour}; background-color: {colour}22">'
            f'<div class="meta">step {k} · {who} · score {score} · ended at {esc(step.end)}</div>'
            f"<pre>{esc(step.text)}</pre>{rivals(step.candidates, colours)}</div>"
        )
    writer = esc(t.answer_teacher or "-")
    how = ANSWER_FALLBACKS.get(t.answer_fallback or "", "")
    out.append(f'<div class="answer"><span class="muted">final answer ({writer}{how}):</span><pre>{esc(t.final_answer)}</pre></div>')
    return "".join(out)


def perplexities(t: Record | Alternative, schema_version: int) -> str:
    """A card's figures: the predictive perplexity of Eq. 3 (the answer alone), then S as the
    search ranked it where that also scored search.answer_end."""
    eq3, ranked = answer_only_perplexity(t, schema_version), t.predictive_perplexity
    shown = "PP -" if eq3 is None else f"PP {eq3:.3f}"
    return shown if ranked is None or ranked == eq3 else f"{shown} · S with end {ranked:.3f}"


def problem_card(run: RunData, r: Record, colours: dict[str, str]) -> str:
    grade = grade_of(r, r.failed)
    teachers = "\u001f".join(sorted({name for s in r.steps for name in s.proposers or [s.teacher]}))  # every proposer credited
    head = (
        f"<header><strong>{esc(r.id)}</strong><span class='muted'>{esc(run.path.name)} · {esc(r.method)}</span>"
        f'<span class="badge {grade}">{BADGE[grade]}</span><span class="muted">reference {esc(r.answer)} · predicted '
        f"{esc(r.predicted if r.predicted is not None else '-')} · {perplexities(r, r.schema_version)}"
        f"{'' if r.valid_trace is None else ' · trace ' + ('valid' if r.valid_trace else 'not valid')}"
        f"{'' if r.cost is None else f' · ${r.cost:.4g}'}</span>"
        f"{sparkline([s.score for s in r.steps])}</header>"
    )
    body = [f'<pre class="question">{esc(r.question)}</pre>']
    if r.failed:
        body.append(f'<p class="muted">failed: {esc(r.failed)}</p>')
    body.append(trajectory(r, colours))
    if r.judge_reply:
        body.append(f"<details><summary>judge's reply</summary><pre>{esc(r.judge_reply)}</pre></details>")
    for i, alt in enumerate(r.alternatives, 2):
        summary = f"runner-up {i} ({BADGE[grade_of(alt)]}, {perplexities(alt, r.schema_version)})"
        body.append(f"<details class='alternative'><summary>{summary}</summary>{trajectory(alt, colours)}</details>")
    attrs = f'data-id="{esc(r.id)}" data-grade="{grade}" data-method="{esc(r.method)}" data-teachers="{esc(teachers)}"'
    return f'<article class="problem" {attrs}>{head}{"".join(body)}</article>'


def build(
    run_dirs: list[str | Path],
    title: str = "cord report",
    max_problems: int | None = None,
    ids: set[str] | None = None,
    grade: str | None = None,
) -> str:
    """The page; `max_problems`: problems shown per run (default MAX_PROBLEMS); `ids` / `grade`:
    only these problems, or only problems of this grade (right, wrong, ungraded, failed)."""
    runs = [read_run(p) for p in run_dirs]
    rows = [row_of(run) for run in runs]
    colours = teacher_colours(runs)
    legend = "".join(
        f'<span class="teacher" data-teacher="{esc(t)}"><span class="swatch" style="background: {c}"></span>{esc(t)}</span>'
        for t, c in colours.items()
    )
    charts = "".join(hit_rate_chart(row["run"], row["teacher_hit_rate"], colours) for row in rows if row.get("teacher_hit_rate"))
    limit = MAX_PROBLEMS if max_problems is None else max_problems
    shown, rules = [], []
    for run in runs:
        cards, rule = chosen(run, limit, PAGE_BUDGET // len(runs), ids, grade, colours)
        shown += cards
        rules.append(f"{run.path.name}: {rule}")
    total = sum(len(run.records) for run in runs)
    methods = sorted({row["method"] for row in rows if row.get("method")})
    rest = "" if len(shown) == total else "; others: cord report RUN --ids ID,... or --grade right|wrong|ungraded|failed"
    page = Template(asset("template.html")).substitute(
        title=esc(title),
        subtitle=esc(f"{len(runs)} run(s), {total} problems; made {datetime.datetime.now():%Y-%m-%d %H:%M} by cord"),
        css=asset("report.css"),
        js=asset("report.js"),
        runs_table=runs_table(rows),
        legend=legend,
        charts=charts or '<p class="muted">no steps to chart</p>',
        method_options="".join(f'<option value="{esc(m)}">{esc(m)}</option>' for m in methods),
        teacher_options="".join(f'<option value="{esc(t)}">{esc(t)}</option>' for t in colours),
        problem_count=len(shown),
        truncated=esc(f" ({'; '.join(rules)}{rest})"),
        problems="\n".join(shown),
    )
    return page


def main(argv: list[str] | None = None) -> int:
    import sys

    parser = command_parser(prog="cord report", description="One self-contained HTML page for run directories.")
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--out", default="report.html", help="the HTML file (default report.html)")
    parser.add_argument("--title", default="cord report")
    parser.add_argument(
        "--max-problems", type=int, help=f"problems shown per run (default {MAX_PROBLEMS}; failures first, then each grade evenly)"
    )
    parser.add_argument("--ids", help="comma-separated problem ids: a page of these problems only")
    parser.add_argument("--grade", choices=("right", "wrong", "ungraded", "failed"), help="a page of problems of this grade only")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    if Path(args.out).exists() and not args.overwrite:  # as cord export: a page is not replaced unasked
        raise ConfigError(f"{args.out}: already exists (use --overwrite to replace it)")
    ids = {i.strip() for i in args.ids.split(",") if i.strip()} if args.ids else None
    page = build(args.runs, args.title, args.max_problems, ids, args.grade)
    atomic_write(Path(args.out), page)
    print(f"wrote {args.out} ({len(page) / 1024:.0f} KiB)", file=sys.stderr)
    return 0
