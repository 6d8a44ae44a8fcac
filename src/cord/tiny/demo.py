"""`cord demo`: the paper's Table 2 in miniature, on the shipped tiny models, on a CPU.

Makes N mixed problems (each needs more than one step skill), then runs on the same problems:
each teacher alone (one trajectory), Curation (B complete trajectories per teacher, best by
predictive perplexity), CoRD greedy (B = 1) and CoRD (beam B). Writes one run directory per
method under OUT and a one-page `summary.md`.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

from ..command import command_parser
from ..config import Config, DataConfig, ModelConfig, SearchConfig
from ..data import load_problems
from ..records import atomic_write
from ..results.compare import render_table, run_row
from ..run import run
from . import HETEROGENEOUS_TEACHERS, HOMOGENEOUS_TEACHER, HOMOGENEOUS_TEMPERATURES, META_PROVER, TEACHER_TEMPERATURE
from .tasks import TinyTasksConfig

TINY_BUDGET = dict(reasoning_budget=256, answer_budget=24)


def tiny_config(setting: str, n: int, seed: int, beam_size: int = 4) -> Config:
    """The embedded default: the tiny recipe as a Config (same as recipes/tiny-*.yaml)."""
    if setting == "hetero":
        teachers = [
            ModelConfig(name=name.removeprefix("tiny-"), model=f"tiny:{name}", temperature=TEACHER_TEMPERATURE, max_step_tokens=32)
            for name in HETEROGENEOUS_TEACHERS
        ]
    else:
        teachers = [
            ModelConfig(
                name=f"{HOMOGENEOUS_TEACHER.removeprefix('tiny-')}-t{t}",
                model=f"tiny:{HOMOGENEOUS_TEACHER}",
                temperature=t,
                max_step_tokens=32,
            )
            for t in HOMOGENEOUS_TEMPERATURES
        ]
    return Config(
        teachers=teachers,
        meta_prover=ModelConfig(name=META_PROVER.removeprefix("tiny-"), model=f"tiny:{META_PROVER}"),
        search=SearchConfig(beam_size=beam_size, problems_in_flight=64, seed=seed, trajectory_style="steps", **TINY_BUDGET),
        data=DataConfig(tiny=TinyTasksConfig(n=n, seed=seed, mix="mixed")),
    )


def demo_runs(base: Config) -> list[tuple[str, Config]]:
    """(label, config) for every method of the comparison, all on the same problems and teachers."""
    runs = []
    for teacher in base.teachers:
        c = copy.deepcopy(base)
        c.teachers = [copy.deepcopy(teacher)]
        c.search.method, c.search.rollouts = "curation", 1
        runs.append((f"{teacher.name} alone", c))
    for method in ("curation", "greedy", "cord"):
        c = copy.deepcopy(base)
        c.search.method = method
        runs.append((method if method != "cord" else f"cord (B={base.search.beam_size})", c))
    return runs


def compare(base: Config, out: Path, progress: bool = True, engine_cache: dict | None = None, setting: str = "") -> list[dict]:
    problems = load_problems(base.data)
    cache = {} if engine_cache is None else engine_cache
    rows = []
    for label, config in demo_runs(base):
        slug = label.split(" ")[0].replace("(", "").replace("=", "")
        config.output_dir = str(out / (f"{setting}-{slug}" if setting else slug))
        run(config, problems=problems, overwrite=True, progress=progress, engine_cache=cache, label=label)
        rows.append(run_row(Path(config.output_dir), label))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(prog="cord demo", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="number of mixed problems (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument(
        "--setting",
        choices=["hetero", "homo", "both"],
        default="hetero",
        help="heterogeneous specialists, one model at three temperatures, or both",
    )
    parser.add_argument("--quiet", "-q", action="store_true")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be >= 1")
    start = time.perf_counter()
    sections, all_rows = [], {}
    for setting in ["hetero", "homo"] if args.setting == "both" else [args.setting]:
        base = tiny_config(setting, args.n, args.seed, args.beam_size)
        rows = compare(base, args.out, progress=not args.quiet, setting=setting)
        title = f"{'Heterogeneous' if setting == 'hetero' else 'Homogeneous'} teachers, {args.n} mixed problems, seed {args.seed}"
        table = render_table(rows, title)
        print("\n" + table + "\n")
        sections.append(table)
        all_rows[setting] = rows
    seconds = time.perf_counter() - start
    page = "\n\n".join(
        [
            "# cord demo",
            "Tiny step-skill specialists (add/subtract, double/triple, split) as teachers, the tiny reader as "
            "meta-prover, all shipped with the package (see MODELS.md). Every method sees the same problems; "
            "each problem needs more than one skill, so no single teacher can write a whole valid trace. "
            "Valid traces: every step's equation right and the answer right.",
            *sections,
            f"Total wall time: {seconds:.0f} s. Run directories: {args.out}/",
        ]
    )
    atomic_write(args.out / "summary.md", page + "\n")
    atomic_write(args.out / "summary.json", json.dumps(all_rows, indent=2) + "\n")
    print(f"wrote {args.out}/summary.md ({seconds:.0f} s)", file=sys.stderr)
    return 0
