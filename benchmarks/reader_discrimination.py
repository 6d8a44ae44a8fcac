"""How well a meta-prover tells a right prefix from a wrong one, on fresh tiny problems.

    python benchmarks/reader_discrimination.py [--model DIR] [--n 400] [--end .]

Pairs: the right prefix of j steps against the same prefix with its last step replaced by a wrong
one (another skill's operator, a wrong operand, or an arithmetic slip, as in training), grouped
by the operations the problem still has after the prefix (0: a complete trace). A further set of
pairs holds a complete valid trace against one that strays at step 1 and lands back on the right
number at step 2 (the shape of "right answer, invalid trace"). Pairwise accuracy is the share of
pairs in which S(right) > S(wrong); S scores the answer followed by `--end` (search.answer_end).
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cord.prompts import ANSWER_END, ANSWER_LEAD, THINK_CLOSE, THINK_OPEN
from cord.scoring.meta_prover import predictive_perplexity
from cord.tiny import META_PROVER, model_path
from cord.tiny.tasks import make_problem, reference_chain, step_line
from cord.tiny.tokenizer import render_prompt
from cord.tiny.train import corrupt_step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(model_path(META_PROVER)))
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--end", default=ANSWER_END)
    args = parser.parse_args()
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()

    @torch.no_grad()
    def score(question: str, lines: list[str], answer: str) -> float:
        context = render_prompt(question) + THINK_OPEN + "".join(lines) + THINK_CLOSE + ANSWER_LEAD
        c = tok(context, add_special_tokens=False).input_ids
        a = tok(answer + args.end, add_special_tokens=False).input_ids
        logprobs = model(torch.tensor([c + a])).logits[0].log_softmax(-1)
        return predictive_perplexity([logprobs[len(c) - 1 + i, t].item() for i, t in enumerate(a)])

    rng = random.Random("reader-discrimination:303")
    wins: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _ in range(args.n):
        row = make_problem(rng, "mixed")
        start, chain = reference_chain(row)
        ops, values = [(op, b) for op, b, _ in chain], [start, *(c for _, _, c in chain)]
        lines = [step_line(k + 1, values[k], op, b, values[k + 1]) for k, (op, b) in enumerate(ops)]
        j = rng.randint(1, len(ops))
        op2, b2, c2 = corrupt_step(rng, values[j - 1], *ops[j - 1])
        if c2 != values[j]:
            wrong = lines[: j - 1] + [step_line(j, values[j - 1], op2, b2, c2)]
            group = f"{len(ops) - j} left"
            wins[group][0] += score(row["problem"], lines[:j], row["answer"]) > score(row["problem"], wrong, row["answer"])
            wins[group][1] += 1
        if len(ops) >= 2:
            op1, b1, c1 = corrupt_step(rng, start, *ops[0])
            if c1 != values[1]:
                strayed = [step_line(1, start, op1, b1, c1), step_line(2, c1, "+", 1, values[2]), *lines[2:]]
                wins["strays, lands"][0] += score(row["problem"], lines, row["answer"]) > score(row["problem"], strayed, row["answer"])
                wins["strays, lands"][1] += 1
    partial = [sum(wins[g][i] for g in wins if g.endswith("left") and not g.startswith("0")) for i in (0, 1)]
    print(f"{args.model}, answer end {args.end!r}, {args.n} problems")
    for group in sorted(wins):
        print(f"  {group:<14} pairwise {wins[group][0] / wins[group][1]:.2f} ({wins[group][1]} pairs)")
    print(f"  {'partial':<14} pairwise {partial[0] / partial[1]:.2f} ({partial[1]} pairs)")


if __name__ == "__main__":
    main()
