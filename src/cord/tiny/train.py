"""Train the shipped tiny models from generated problems (seeded, CPU, minutes).

``cord train-tiny [--only NAME] [--seconds S] [--steps N] [--out DIR] [--seed N]``

Every model is a 4-layer Llama (hidden 128, 4 heads, MLP 256, tied embeddings) sharing one
byte-level BPE tokenizer.  The user turn is the question and the default step instruction
(``search.step_instruction``), as the core writes it for real teachers; no system message.
What differs is the training data:

* specialists (``tiny-addsub``, ``tiny-mul``, ``tiny-div``): problems that use only their
  skill (full loss) plus mixed problems in which only the lines of their own skill (and the
  structure: step markers, ``</think>``, the final answer) carry loss.  They learn to
  continue after other teachers' steps but can only write their own kind of step.
* generalist (``tiny-generalist``): every skill, full loss, short training (weak on purpose).
* reader / meta-prover (``tiny-reader``): the scoring template
  ``<question> <think> prefix </think> The final answer is N.`` where the prefix is a
  (partial, sometimes deliberately corrupted) reasoning and N is the answer that prefix
  implies (the result of the last step that did what the problem says, or of the first one that
  did not, carried through the problem's remaining operations).  Loss on "N." only: it never
  learns to write steps.

Training length is a fixed number of optimizer steps per model (seeded, reproducible; about
10 minutes for each teacher on an idle 2-core CPU, about 28 for the reader, whose mental
arithmetic is what CoRD's beam rests on).  ``--steps`` overrides it; ``--seconds`` is an
optional wall-clock cap (the learning-rate schedule follows whichever of the two runs out first;
the model card's figures are for the shipped, step-complete models).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..command import command_parser
from ..prompts import ANSWER_END, ANSWER_LEAD, REASONING_INSTRUCTION, THINK_CLOSE, THINK_OPEN, user_turn
from . import MODEL_ROLES
from .tasks import SKILL_OF_OP, SKILLS, apply_op, boxed_answer, free_layout, make_problem, step_heading, step_line
from .tokenizer import IM_END, IM_START, build_tokenizer, default_corpus, render_chat, render_prompt, save


@dataclass
class Spec:
    name: str
    kind: str  # "specialist" | "generalist" | "reader"
    skill: str | None = None
    steps: int = 600
    own_share: float = 0.4  # specialists: share of single-skill problems (full loss)
    corrupt_p: float = 0.5  # reader: share of corrupted prefixes
    arch: dict = field(default_factory=dict)


SPECS: dict[str, Spec] = {
    "tiny-addsub": Spec("tiny-addsub", "specialist", "addsub", steps=1000),
    "tiny-mul": Spec("tiny-mul", "specialist", "mul", steps=1000),
    "tiny-div": Spec("tiny-div", "specialist", "div", steps=1000),
    "tiny-generalist": Spec("tiny-generalist", "generalist", steps=500),
    "tiny-reader": Spec("tiny-reader", "reader", steps=3000),
}
assert set(SPECS) == set(MODEL_ROLES)

LAYOUTS = ("steps", "free")  # tasks.py: "### Step" lines, or sentences with blank lines and check cues
ARCH = dict(
    hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512
)


# --------------------------------------------------------------------------- examples
# An example is a list of (text, loss) segments; segments are tokenized separately and
# concatenated, so a boundary is always a token boundary.


def layout_prompt(question: str, layout: str) -> str:
    """The chat prompt a layout answers: the step instruction asks for ``### Step`` lines, the plain
    reasoning instruction (what the line-break and prefix segmentations send) for the free layout."""
    return render_prompt(question) if layout == "steps" else render_chat(user_turn(question, REASONING_INSTRUCTION))


def teacher_example(row: dict, own: set[str] | None, layout: str = "steps", rng: random.Random | None = None) -> list[tuple[str, bool]]:
    """Reference assistant turn; with ``own`` only those skills' equations carry loss (a free
    layout's check sentences restate an operation and always do: copying is no skill)."""
    segs: list[tuple[str, bool]] = [(layout_prompt(row["problem"], layout), False), (THINK_OPEN, True)]
    if layout == "free":
        assert rng is not None
        stated: set[int] = set()
        for text, index in free_layout(rng, row["reference_steps"]):
            first = index is not None and index not in stated
            segs.append((text, not first or own is None or row["skills"][index] in own))
            if index is not None:
                stated.add(index)
    else:
        for k, (eq, skill) in enumerate(zip(row["reference_steps"], row["skills"]), start=1):
            segs.append((step_heading(k), True))
            segs.append((" " + eq, own is None or skill in own))
            segs.append(("\n", True))
    segs.append((THINK_CLOSE, True))
    segs.append((boxed_answer(row["answer"]), True))
    segs.append((IM_END, True))
    return segs


def corrupt_step(rng: random.Random, a: int, op: str, b: int) -> tuple[str, int, int]:
    """A plausible wrong step from ``a`` where ``a op b`` was expected."""
    r = rng.random()
    if r < 0.6:  # another skill's operator (what a foreign specialist writes)
        other = [o for o in ("+", "-", "*", "/") if SKILL_OF_OP[o] != SKILL_OF_OP[op]]
        op2 = rng.choice(other)
        b2 = b if (rng.random() < 0.5 and 1 <= b <= 9) else (rng.choice((2, 3)) if op2 in "*/" else rng.randint(1, 9))
        if op2 == "/" and rng.random() < 0.7:
            b2 = rng.choice((2, 3))
        return op2, b2, apply_op(a, op2, b2)
    if r < 0.8:  # right operator, wrong operand
        choices = [x for x in ((2, 3) if op in "*/" else range(1, 10)) if x != b] or [b + 1]
        b2 = rng.choice(choices)
        return op, b2, apply_op(a, op, b2)
    # right operator and operand, wrong arithmetic
    true = apply_op(a, op, b)
    c = true + rng.choice((-10, -2, -1, 1, 2, 10))
    return op, b, max(0, c)


def _landing_step(rng: random.Random, v: int, target: int, op: str, b: int) -> tuple[str, int, int]:
    """A wrong step from ``v`` whose stated result is ``target`` (what the right chain has there):
    reasoning that strays and lands back on the right number."""
    fits = [(o, x) for o in "+-" for x in range(1, 10) if apply_op(v, o, x) == target]
    fits += [(o, x) for o in "*/" for x in (2, 3) if apply_op(v, o, x) == target and (o != "/" or v % x == 0)]
    fits = [(o, x) for o, x in fits if (o, x) != (op, b)]
    if fits:
        o, x = rng.choice(fits)
        return o, x, target
    return rng.choice("+-*/"), rng.choice((2, 3)), target  # wrong arithmetic that lands


def _carry(value: int, ops: list[tuple[str, int, int]]) -> int:
    """`value` carried through the problem's operations `ops`."""
    for op, b, _ in ops:
        value = apply_op(value, op, b)
    return value


def reader_example(rng: random.Random, row: dict, corrupt_p: float, stray_p: float = 0.7, layout: str = "steps") -> list[tuple[str, bool]]:
    """Meta-prover text: question, a (partial, maybe corrupted) prefix, the implied answer.

    The prefix holds the first j steps (1 <= j <= n).  With probability ``corrupt_p`` one
    of them (the last one in 60 % of the cases) is replaced by a plausible wrong step (another
    skill's operator, a wrong operand, or wrong arithmetic).  With probability ``stray_p`` the
    steps after it stray too: another wrong step, or one that lands back on the number the right
    chain has there.  The target is the answer the prefix implies to a reader
    who trusts the stated results while the steps do what the problem says: from the first
    step that does not, it takes that step's result and finishes the problem itself ("errors
    propagate"; later lines are not trusted).  The closing "." carries loss, so the answer is
    scored as a whole number, not as the first digits of a longer one.
    """
    start = int(row["reference_steps"][0].split(" ", 1)[0])
    ops = []
    for s in row["reference_steps"]:
        _, op, b, _, c = s.split(" ")
        ops.append((op, int(b), int(c)))
    n = len(ops)
    j = rng.randint(1, n)  # number of step lines in the prefix
    bad = None
    if rng.random() < corrupt_p:
        bad = j if (j == 1 or rng.random() < 0.6) else rng.randint(1, j - 1)
    stray = bad is not None and rng.random() < stray_p
    written, v, implied = [], start, None  # (a, op, b, c) of each step of the prefix
    for k in range(1, j + 1):
        op, b, ref = ops[k - 1]
        if k == bad:
            op2, b2, c = corrupt_step(rng, v, op, b)
            written.append((v, op2, b2, c))
            implied = _carry(c, ops[k:])
        elif bad is not None and k > bad and stray and (r := rng.random()) < 0.8:
            # the prefix's last line lands back on the right number in 60 % of these (the shape of a
            # trace that reaches the answer through wrong steps), an earlier one in 25 %
            land = r < (0.6 if k == j else 0.25)
            op2, b2, c = _landing_step(rng, v, ref, op, b) if land else corrupt_step(rng, v, op, b)
            written.append((v, op2, b2, c))
        else:
            c = apply_op(v, op, b)
            written.append((v, op, b, c))
        v = c
    if implied is None:
        implied = _carry(v, ops[j:])
    if layout == "free":  # the same operations as sentences (the last one's check, if any, restates it)
        lines = [text for text, _ in free_layout(rng, [f"{a} {op} {b} = {c}" for a, op, b, c in written])]
        # a prefix the search scores ends as its last step did: a line break, a blank line (line-break
        # segmentation) or a sentence end (prefix segmentation)
        lines[-1] = rng.choice(("\n", "\n\n", " "))
    else:
        lines = [step_line(k, *step) for k, step in enumerate(written, start=1)]
    ctx = layout_prompt(row["problem"], layout) + THINK_OPEN + "".join(lines) + THINK_CLOSE
    ans = str(implied)
    if rng.random() < 0.5:  # "... is" + " 32"  (joint tokenization)
        return [(ctx + ANSWER_LEAD.rstrip(" "), False), (" " + ans + ANSWER_END, True)]
    return [(ctx + ANSWER_LEAD, False), (ans + ANSWER_END, True)]  # "... is " + "32." (separately)


def sample_example(rng: random.Random, spec: Spec, layouts: tuple[str, ...] = ("steps",)) -> list[tuple[str, bool]]:
    # one layout draws nothing, so the shipped models' example stream stays what it was
    layout = layouts[0] if len(layouts) == 1 else rng.choice(layouts)
    if spec.kind == "specialist":
        if rng.random() < spec.own_share:
            return teacher_example(make_problem(rng, spec.skill), None, layout, rng)
        while True:
            row = make_problem(rng, "mixed")
            if spec.skill in row["skills"]:
                return teacher_example(row, {spec.skill}, layout, rng)
    if spec.kind == "generalist":
        mix = "mixed" if rng.random() < 0.5 else rng.choice(SKILLS)
        return teacher_example(make_problem(rng, mix), None, layout, rng)
    if spec.kind == "reader":
        mix = "mixed" if rng.random() < 0.7 else rng.choice(SKILLS)
        return reader_example(rng, make_problem(rng, mix), spec.corrupt_p, layout=layout)
    raise ValueError(spec.kind)


class Encoder:
    def __init__(self, tok):
        self.backend = tok.backend_tokenizer if hasattr(tok, "backend_tokenizer") else tok._tokenizer
        self.pad_id = tok.pad_token_id

    def encode(self, segs):
        ids, labels = [], []
        encs = self.backend.encode_batch([s for s, _ in segs], add_special_tokens=False)
        for (_, loss), enc in zip(segs, encs):
            ids.extend(enc.ids)
            labels.extend(enc.ids if loss else [-100] * len(enc.ids))
        return ids, labels


def make_batch(encoder, examples, torch):
    rows = [encoder.encode(e) for e in examples]
    width = max(len(i) for i, _ in rows)
    ids = torch.full((len(rows), width), encoder.pad_id, dtype=torch.long)
    lab = torch.full((len(rows), width), -100, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (i, labels) in enumerate(rows):
        ids[r, : len(i)] = torch.tensor(i)
        lab[r, : len(labels)] = torch.tensor(labels)
        att[r, : len(i)] = 1
    return ids, att, lab


# --------------------------------------------------------------------------- training


def tokenizer_for(seed: int, tok_dir: Path | None = None):
    """The shared tokenizer: reuse a saved one when given, else build it (seeded)."""
    from transformers import AutoTokenizer

    if tok_dir is not None and (tok_dir / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(tok_dir))
    return build_tokenizer(default_corpus(seed), vocab_size=640)


def train_one(
    spec: Spec,
    out_dir: Path,
    tok,
    seed: int = 0,
    seconds: float | None = None,
    steps: int | None = None,
    batch_size: int = 32,
    lr: float = 3e-3,
    log_every: int = 50,
    threads: int | None = 2,
    log=print,
    layouts: tuple[str, ...] = ("steps",),
    init: Path | None = None,
) -> dict:
    """Train `spec` from scratch, or from the weights in `init` (fine-tuning: `cord train-tiny
    --init`), on examples in `layouts`; save a model folder with `training_info.json`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if threads:
        torch.set_num_threads(threads)
    if steps is None:
        steps = spec.steps
    rng = random.Random(f"cord-tiny-train:{spec.name}:{seed}")
    torch.manual_seed(seed)
    eos_id = tok.convert_tokens_to_ids(IM_END)
    pad_id = tok.pad_token_id
    cfg = LlamaConfig(
        vocab_size=len(tok),
        **{**ARCH, **spec.arch},
        tie_word_embeddings=True,
        bos_token_id=tok.convert_tokens_to_ids(IM_START),
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        rope_theta=10000.0,
        attention_bias=False,
        mlp_bias=False,
    )
    model = LlamaForCausalLM.from_pretrained(str(init), dtype=torch.float32) if init else LlamaForCausalLM(cfg)
    model.train()
    nparams = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    enc = Encoder(tok)
    warm = 30
    t0 = time.time()
    step, ntok, ema = 0, 0, None
    while True:
        el = time.time() - t0
        frac = max(step / steps if steps else 0.0, el / seconds if seconds else 0.0)
        if frac >= 1.0:
            break
        f = min(1.0, (step + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr * f
        ids, att, lab = make_batch(enc, [sample_example(rng, spec, layouts) for _ in range(batch_size)], torch)
        out = model(input_ids=ids, attention_mask=att, labels=lab)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ntok += int(att.sum())
        ema = out.loss.item() if ema is None else 0.95 * ema + 0.05 * out.loss.item()
        if log and log_every and step % log_every == 0:
            log(f"[{spec.name}] step {step} loss {ema:.4f} lr {lr * f:.2e} {time.time() - t0:.0f}s {ntok / (time.time() - t0):.0f} tok/s")
    took = time.time() - t0
    model.eval()
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    model.generation_config = GenerationConfig(
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=cfg.bos_token_id,
        do_sample=True,
        temperature=0.6,
        top_p=1.0,
        max_new_tokens=128,
    )
    model.save_pretrained(str(out_dir), safe_serialization=True)
    save(tok, out_dir)
    info = {
        "name": spec.name,
        "role": MODEL_ROLES[spec.name],
        "kind": spec.kind,
        "skill": spec.skill,
        "seed": seed,
        "steps": step,
        "batch_size": batch_size,
        "lr": lr,
        "layouts": list(layouts),
        "init": str(init) if init else None,
        "seconds": round(took, 1),
        "train_tokens": ntok,
        "final_loss_ema": round(ema, 4) if ema is not None else None,
        "parameters": nparams,
        "dtype": "float32",
        "torch": torch.__version__,
    }
    (out_dir / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    if log:
        log(f"[{spec.name}] done: {step} steps, {took:.0f}s, {ntok} tokens, loss {ema:.4f} -> {out_dir}")
    return info


def main(argv: list[str] | None = None) -> int:
    ap = command_parser(prog="cord train-tiny", description="Train the embedded tiny teachers and meta-prover (CPU).")
    ap.add_argument("--only", action="append", choices=sorted(SPECS), help="train only this model (repeatable); default: all")
    ap.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="wall-clock cap per model in seconds; training stops at the cap or the step count, "
        "whichever comes first (default: none, so the models are the shipped ones)",
    )
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per model (default: each model's own, see MODELS.md)")
    ap.add_argument(
        "--out",
        default="runs/tiny-models",
        help="output folder (default runs/tiny-models; the shipped models are retrained with --out src/cord/tiny/models in a checkout)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3; lower it to fine-tune with --init)")
    ap.add_argument(
        "--layouts",
        nargs="+",
        default=["steps"],
        choices=LAYOUTS,
        help="reasoning layouts to train on: 'steps' (### Step lines, under the step instruction; the shipped models) "
        "and 'free' (sentences, blank lines and check cues, under the plain reasoning instruction); default steps",
    )
    ap.add_argument("--init", default=None, help="start each model from the weights in INIT/<name> (fine-tuning) instead of from scratch")
    args = ap.parse_args(argv)
    out = Path(args.out)
    names = args.only or list(SPECS)
    init = Path(args.init) if args.init else None
    if init is not None:
        missing = [n for n in names if not (init / n / "config.json").is_file()]
        if missing:
            ap.error(f"--init: no model folder {init / missing[0]}")
    # Reuse the tokenizer of an already trained model in `out` (or the one fine-tuned) so all models share it.
    existing = next((d / n for d in (out, init) if d for n in SPECS if (d / n / "tokenizer.json").is_file()), None)
    tok = tokenizer_for(args.seed, existing)
    for name in names:
        train_one(
            SPECS[name],
            out / name,
            tok,
            seed=args.seed,
            seconds=args.seconds,
            steps=args.steps,
            batch_size=args.batch_size,
            threads=args.threads,
            lr=args.lr,
            log=lambda m: print(m, file=sys.stderr, flush=True),
            layouts=tuple(args.layouts),
            init=init / name if init else None,
        )
    print(f"wrote {', '.join(names)} to {out}; use them as model: {out}/<name>", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
