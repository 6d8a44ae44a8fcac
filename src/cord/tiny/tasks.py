"""Seeded generator of multi-step arithmetic word problems with step-level checks.

Every problem starts from a one-digit quantity and applies 2 to 4 operations, one per
sentence.  Each operation belongs to one *step skill*:

* ``addsub``: add or subtract a one-digit number (``12 + 5 = 17``, ``17 - 4 = 13``);
* ``mul``:    double or triple (``12 * 3 = 36``);
* ``div``:    split into 2 or 3 equal parts and keep one (``36 / 3 = 12``).

A ``mixed`` problem uses at least two different skills, so a model that only knows one
skill cannot solve it.  Running values stay in 1..99 and divisions are exact.

The reasoning format the tiny models write (and :func:`check_trace` parses) is::

    <think>
    ### Step 1. 7 + 5 = 12
    ### Step 2. 12 * 3 = 36
    </think>
    The final answer is \\boxed{36}.

Models trained on both layouts (``cord train-tiny --layouts steps free``) write that one under the
step instruction and the *free* layout under the plain reasoning instruction: each operation a
sentence opened by its ordinal, paragraphs separated by blank lines, and now and then a check
sentence that restates the last operation (``Let me check: 12 * 3 = 36.``), so the line-break and
prefix segmenters have something to cut::

    <think>
    First, 7 + 5 = 12. Let me check: 7 + 5 = 12.

    Second, 12 * 3 = 36.
    </think>
    The final answer is \\boxed{36}.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import Field

from ..command import command_parser
from ..config import Count, Section, Text
from ..errors import ConfigError
from ..prompts import FINAL_ANSWER, STEP_MARKER, THINK, THINK_CLOSE, THINK_OPEN
from ..records.rundir import atomic_writer

SKILLS = ("addsub", "mul", "div")
SKILL_OF_OP = {"+": "addsub", "-": "addsub", "*": "mul", "/": "div"}
MAX_VALUE = 99
MIN_STEPS, MAX_STEPS = 2, 4

NAMES = [
    ("Tom", "he", "his"),
    ("Anna", "she", "her"),
    ("Sam", "he", "his"),
    ("Mia", "she", "her"),
    ("Leo", "he", "his"),
    ("Zoe", "she", "her"),
    ("Ben", "he", "his"),
    ("Ivy", "she", "her"),
    ("Max", "he", "his"),
    ("Ella", "she", "her"),
    ("Omar", "he", "his"),
    ("Nina", "she", "her"),
]
ITEMS = ["apples", "marbles", "coins", "stickers", "books", "pencils", "cards", "shells", "stamps", "cookies", "beads", "toys"]

_ADD = ["Then {p} finds {b} more.", "Then {p} gets {b} more.", "Then {p} buys {b} more."]
_SUB = ["Then {p} gives away {b}.", "Then {p} loses {b}.", "Then {p} eats {b}."]
_MUL = {
    2: ["Then the number of {items} doubles.", "Then {p} doubles {q} {items}."],
    3: ["Then the number of {items} triples.", "Then {p} triples {q} {items}."],
}
_DIV = [
    "Then {p} splits {q} {items} into {b} equal piles and keeps one pile.",
    "Then {p} divides {q} {items} into {b} equal shares and keeps one share.",
]

CHECK_CUE = "Let me check:"  # opens a check sentence of the free layout (a prefix-segmenter cue)
# open the free layout's operations: the k-th sentence of the problem, as "### Step k." says in the other
ORDINALS = ("First", "Second", "Third", "Fourth")
FREE_SENTENCE_END = re.compile(r"(?<=\.)\s+|\n+")
ORDINAL_OPENING = re.compile(r"^(?:" + "|".join(ORDINALS) + r"),\s*")

_NUM = r"(-?\d+)"
_OP = r"([+\-*/x×÷])"
STEP_LINE_RE = re.compile(
    r"^###\s*Step\s*(\d+)\s*[.:]\s*(?:[^=\n]*?:\s*)?" + _NUM + r"\s*" + _OP + r"\s*" + _NUM + r"\s*=\s*" + _NUM + r"\s*\.?\s*$"
)
_EQ_RE = re.compile(r"^\s*" + _NUM + r"\s*" + _OP + r"\s*" + _NUM + r"\s*=\s*" + _NUM + r"\s*$")
_OP_NORMAL = {"x": "*", "×": "*", "÷": "/"}


def apply_op(a: int, op: str, b: int) -> int:
    """Result of ``a op b`` (``/`` is floor division; used for implied answers)."""
    op = _OP_NORMAL.get(op, op)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a // b if b else 0
    raise ValueError(f"unknown operator {op!r}")


def _sample_skills(rng: random.Random, mix: str, steps: int | None = None) -> list[str]:
    n = steps or rng.randint(MIN_STEPS, MAX_STEPS)
    if mix in SKILLS:
        return [mix] * n
    if mix != "mixed":
        raise ValueError(f"unknown mix {mix!r}; expected 'mixed' or one of {SKILLS}")
    while True:
        skills = [rng.choice(SKILLS) for _ in range(n)]
        if len(set(skills)) >= 2:
            return skills


def _sample_chain(rng: random.Random, skills: list[str]) -> tuple[int, list[tuple[str, int, int]]] | None:
    start = rng.randint(2, 9)
    v = start
    ops: list[tuple[str, int, int]] = []
    for k, skill in enumerate(skills):
        if skill == "addsub":
            # Prefer values that keep a later division possible.
            choices = []
            for op in ("+", "-"):
                for b in range(1, 10):
                    r = apply_op(v, op, b)
                    if 1 <= r <= MAX_VALUE:
                        choices.append((op, b, r))
            nxt = skills[k + 1] if k + 1 < len(skills) else None
            if nxt == "div":
                good = [c for c in choices if c[2] % 2 == 0 or c[2] % 3 == 0]
                choices = good or choices
        elif skill == "mul":
            choices = [("*", b, v * b) for b in (2, 3) if v * b <= MAX_VALUE]
        else:
            choices = [("/", b, v // b) for b in (2, 3) if v % b == 0 and v // b >= 1]
        if not choices:
            return None
        op, b, r = rng.choice(choices)
        ops.append((op, b, r))
        v = r
    return start, ops


def _render(rng: random.Random, start: int, ops: list[tuple[str, int, int]]) -> str:
    name, p, q = rng.choice(NAMES)
    items = rng.choice(ITEMS)
    parts = [f"{name} has {start} {items}."]
    for op, b, _ in ops:
        if op == "+":
            t = rng.choice(_ADD)
        elif op == "-":
            t = rng.choice(_SUB)
        elif op == "*":
            t = rng.choice(_MUL[b])
        else:
            t = rng.choice(_DIV)
        parts.append(t.format(p=p, q=q, b=b, items=items))
    parts.append(f"How many {items} does {name} have now?")
    return " ".join(parts)


def make_problem(rng: random.Random, mix: str = "mixed", idx: int = 0, prefix: str = "p", steps: int | None = None) -> dict:
    """One problem row drawn from ``rng`` (``steps`` operations, else 2 to 4)."""
    while True:
        skills = _sample_skills(rng, mix, steps)
        chain = _sample_chain(rng, skills)
        if chain is not None:
            break
    start, ops = chain
    steps, v = [], start
    for op, b, r in ops:
        steps.append(f"{v} {op} {b} = {r}")
        v = r
    return {
        "id": f"{prefix}{idx:05d}",
        "problem": _render(rng, start, ops),
        "answer": str(v),
        "skills": [SKILL_OF_OP[op] for op, _, _ in ops],
        "reference_steps": steps,
    }


def generate_problems(n: int, seed: int, mix: str = "mixed", steps: int | None = None) -> list[dict]:
    """``n`` problems, deterministic in ``seed`` (and ``mix``, ``steps``); ``steps`` operations
    each (a mixed problem needs two or more), else 2 to 4."""
    if mix != "mixed" and mix not in SKILLS:
        raise ValueError(f"unknown mix {mix!r}; expected 'mixed' or one of {SKILLS}")
    if steps is not None and not (1 if mix != "mixed" else 2) <= steps <= MAX_STEPS:
        raise ValueError(f"steps: {mix} problems take {1 if mix != 'mixed' else 2} to {MAX_STEPS} operations, got {steps}")
    rng = random.Random(f"cord-tiny-tasks:{seed}:{mix}" + (f":{steps}" if steps else ""))
    prefix = ("mixed" if mix == "mixed" else mix) + (str(steps) if steps else "") + "-"
    return [make_problem(rng, mix, i, prefix=f"{prefix}s{seed}-", steps=steps) for i in range(n)]


class TinyTasksConfig(Section):
    """`data.tiny`: generated problems instead of a file (registered in cord.registry.PROBLEM_GENERATORS)."""

    n: Count = Field(50, description="how many problems")
    seed: int = Field(0, description="the generator's seed (the same seed, the same problems)")
    mix: Text = Field("mixed", description="mixed (two or more skills per problem), or one skill: addsub, mul, div")
    steps: Count | None = Field(None, description="operations per problem; null: 2 to 4")

    def rows(self) -> list[dict]:
        """The problems as rows (id, problem, answer, skills, reference_steps); ValueError for a mix or step count it cannot make."""
        return generate_problems(self.n, self.seed, self.mix, **({"steps": self.steps} if self.steps else {}))


def step_heading(number: int) -> str:
    """`### Step 3.`: how a step opens in the prompt-guided layout."""
    return f"{STEP_MARKER} {number}."


def boxed_answer(answer: str) -> str:
    """The final-answer text after </think> in the tiny models' layout."""
    return f"\n{FINAL_ANSWER} \\boxed{{{answer}}}."


# --------------------------------------------------------------------------- parsing


def parse_equation(eq: str) -> tuple[int, str, int, int] | None:
    """``"7 + 5 = 12"`` -> ``(7, "+", 5, 12)``; None when it is not one equation."""
    m = _EQ_RE.match(eq)
    if not m:
        return None
    a, op, b, c = m.groups()
    return int(a), _OP_NORMAL.get(op, op), int(b), int(c)


def reference_chain(row: dict) -> tuple[int, list[tuple[str, int, int]]]:
    """``(start, [(op, operand, result), ...])`` from a row's ``reference_steps``."""
    ops = []
    start = None
    for s in row["reference_steps"]:
        parsed = parse_equation(s)
        if parsed is None:
            raise ValueError(f"bad reference step {s!r}")
        a, op, b, c = parsed
        if start is None:
            start = a
        ops.append((op, b, c))
    if start is None:
        raise ValueError("row has no reference steps")
    return start, ops


def parse_steps(reasoning: str) -> list[tuple[int, tuple[int, str, int, int] | None]]:
    """Every ``### Step k.`` line of ``reasoning`` as ``(k, (a, op, b, c) or None)``; in the free
    layout (no ``###`` line), every sentence that is not a check, numbered from 1.

    A line whose marker is present but whose body is not exactly one equation yields None.
    """
    out = []
    text = reasoning.replace(THINK, "\n").replace(THINK_CLOSE, "\n")
    if "###" not in text:
        return parse_free_steps(text)
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("###"):
            continue
        m = STEP_LINE_RE.match(line)
        if m:
            k, a, op, b, c = m.groups()
            out.append((int(k), (int(a), _OP_NORMAL.get(op, op), int(b), int(c))))
        else:
            mk = re.match(r"^###\s*Step\s*(\d+)", line)
            out.append((int(mk.group(1)) if mk else -1, None))
    return out


def parse_free_steps(text: str) -> list[tuple[int, tuple[int, str, int, int] | None]]:
    """The free layout's operations: every sentence but the check sentences, as ``(k, equation or
    None)``; a sentence that is not one equation yields None."""
    sentences = [s.strip() for s in FREE_SENTENCE_END.split(text) if s.strip()]
    out = []
    for sentence in sentences:
        if sentence.startswith(CHECK_CUE):
            continue
        out.append((len(out) + 1, parse_equation(ORDINAL_OPENING.sub("", sentence).removesuffix("."))))
    return out


def _same_number(predicted: str | None, answer: str) -> bool:
    if predicted is None:
        return False
    p = str(predicted).strip()
    m = re.search(r"\\boxed\{([^{}]*)\}", p)
    if m:
        p = m.group(1).strip()
    p = p.strip().rstrip(".").strip().strip("$").strip()
    try:
        return float(p) == float(str(answer).strip())
    except ValueError:
        return p == str(answer).strip()


def check_trace(row: dict, reasoning: str, predicted: str | None) -> bool:
    """True when the trace is a valid solution of ``row``.

    Valid means: the ``### Step k.`` lines are numbered 1..n with n the number of reference
    steps; every line is one equation ``a op b = c`` that is arithmetically right; it uses
    the same operator and operand as the reference step; its left operand is the previous
    line's result (the start quantity for step 1); and ``predicted`` equals the answer.
    """
    if not _same_number(predicted, row["answer"]):
        return False
    start, ops = reference_chain(row)
    steps = parse_steps(reasoning or "")
    if len(steps) != len(ops):
        return False
    prev = start
    for i, ((k, eq), (rop, rb, _)) in enumerate(zip(steps, ops), start=1):
        if k != i or eq is None:
            return False
        a, op, b, c = eq
        if op != rop or b != rb or a != prev:
            return False
        if op == "/" and (b == 0 or a % b):
            return False
        if apply_op(a, op, b) != c:
            return False
        prev = c
    return str(prev) == str(row["answer"]).strip()


def implied_answer(row: dict, reasoning: str) -> int | None:
    """The answer a reader would state after ``reasoning`` (a possibly partial prefix).

    Take the result of the last step line and apply the problem's remaining operations to
    it.  Used to train the meta-prover ("errors propagate").  None if no step parses.
    """
    start, ops = reference_chain(row)
    steps = [eq for _, eq in parse_steps(reasoning or "")]
    if not steps:
        v, done = start, 0
    else:
        if steps[-1] is None:
            return None
        v, done = steps[-1][3], len(steps)
    for op, b, _ in ops[done:]:
        v = apply_op(v, op, b)
    return v


# --------------------------------------------------------------------------- text


def step_line(k: int, a: int, op: str, b: int, c: int) -> str:
    """One reasoning line, ``### Step k. a op b = c``, with its line break."""
    return f"{step_heading(k)} {a} {op} {b} = {c}\n"


def free_layout(rng: random.Random, equations: list[str]) -> list[tuple[str, int | None]]:
    """The free layout of ``equations`` as ``(text, index)`` pieces: ``index`` is the operation a
    piece states (None for ordinals, separators and check cues). Each operation is a sentence that
    opens with its ordinal ("Second, 12 * 3 = 36."); after one, a check sentence follows with
    probability 1/3, and a paragraph ends (a blank line) with probability 1/2; the last sentence
    ends the reasoning with a line break."""
    pieces: list[tuple[str, int | None]] = []
    for i, eq in enumerate(equations):
        pieces += [(f"{ORDINALS[i]}, ", None), (f"{eq}.", i)]
        if rng.random() < 1 / 3:
            pieces += [(" " if rng.random() < 0.5 else "\n\n", None), (f"{CHECK_CUE} ", None), (f"{eq}.", i)]
        pieces.append(("\n" if i == len(equations) - 1 else "\n\n" if rng.random() < 0.5 else " ", None))
    return pieces


def reasoning_text(steps: Iterable[str]) -> str:
    """``<think>`` block for a list of step equations."""
    body = "".join(f"{step_heading(i)} {s}\n" for i, s in enumerate(steps, start=1))
    return THINK_OPEN + body + THINK_CLOSE


def assistant_text(row: dict) -> str:
    """The full reference assistant turn (without the end-of-turn token)."""
    return reasoning_text(row["reference_steps"]) + boxed_answer(row["answer"])


def write_jsonl(rows: Iterable[dict], path) -> Path:
    """`rows` as JSONL at `path`, written whole or not at all."""
    path = Path(path)
    with atomic_writer(path) as f:
        for r in rows:
            f.write((json.dumps(r, ensure_ascii=False) + "\n").encode())
    return path


def main(argv: list[str] | None = None) -> int:
    ap = command_parser(
        prog="cord tasks",
        description="Write seeded multi-step arithmetic word problems as JSONL (id, problem, answer, skills, reference_steps).",
    )
    ap.add_argument("--n", type=int, default=100, help="number of problems (default 100)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--out", required=True, help="output JSONL path")
    ap.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    ap.add_argument("--mix", default="mixed", choices=("mixed",) + SKILLS, help="'mixed' (at least two skills per problem) or one skill")
    args = ap.parse_args(argv)
    if args.n < 0:
        ap.error("--n must be >= 0")
    if Path(args.out).exists() and not args.overwrite:
        raise ConfigError(f"{args.out}: already exists (use --overwrite to replace it)")
    rows = generate_problems(args.n, args.seed, args.mix)
    write_jsonl(rows, args.out)
    print(f"wrote {len(rows)} problems to {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
