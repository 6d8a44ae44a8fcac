"""What real teachers are sent: chat templates that open <think>, inject a system prompt, or add BOS
(tests/helpers.TEMPLATES), and `cord generate --dry-run`."""

import json

import pytest

from cord.engines.chat import ChatTokenizer
from cord.prompts import teacher_prompt
from cord.scoring.meta_prover import meta_prover_request
from helpers import ROOT, cord, model_with_template, needs_tiny

QUESTION = "What is 3 + 4?"


def test_a_template_that_opens_think_gets_no_second_one(random_model, tmp_path):
    chat = ChatTokenizer(model_with_template(random_model, tmp_path / "qwq", "opens-think")).chat_prompt(QUESTION)
    assert chat.endswith("<|im_start|>assistant\n<think>\n")
    assert teacher_prompt(chat, "", "### Step") == chat + "### Step"
    scored = meta_prover_request(chat, ("### Step 1. 3 + 4 = 7\n",), "", "7")
    assert scored.context.count("<think>") == 1 and scored.context.endswith("7\n</think> The final answer is ")
    plain = ChatTokenizer(random_model).chat_prompt(QUESTION)
    assert teacher_prompt(plain, "", "### Step") == plain + "<think>\n### Step"


def test_a_model_without_a_template_gets_the_plain_layout_with_its_bos(random_model, tmp_path):
    import json
    import shutil

    base = tmp_path / "base"
    shutil.copytree(random_model, base)
    (base / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    config["bos_token"] = "<|endoftext|>"
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    tok = ChatTokenizer(str(base))
    assert not tok.has_template
    plain = tok.chat_prompt(QUESTION, "Be brief.")
    assert plain == f"<|endoftext|>Be brief.\n\n{QUESTION}\n\n"
    assert tok.ids(plain)[0] == tok.tokenizer.bos_token_id and "no chat template: plain layout" in tok.special_tokens()


def test_the_templates_system_prompt_is_kept_unless_the_recipe_sets_one(random_model, tmp_path):
    tok = ChatTokenizer(model_with_template(random_model, tmp_path / "phi", "injects-system"))
    assert "You are Phi" in tok.chat_prompt(QUESTION)
    mine = tok.chat_prompt(QUESTION, "Be brief.")
    assert "You are Phi" not in mine and "Be brief." in mine


def test_a_template_that_writes_bos_gets_exactly_one(random_model, tmp_path):
    tok = ChatTokenizer(model_with_template(random_model, tmp_path / "llama", "adds-bos"))
    prompt = teacher_prompt(tok.chat_prompt(QUESTION), "", "### Step")
    ids = tok.ids(prompt)
    assert ids.count(tok.tokenizer.bos_token_id) == 1 and ids[0] == tok.tokenizer.bos_token_id


def test_dry_run_prints_each_teachers_prompt_and_the_scored_text_and_writes_nothing(random_model, tmp_path):
    qwq = model_with_template(random_model, tmp_path / "qwq", "opens-think")
    phi = model_with_template(random_model, tmp_path / "phi", "injects-system")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"teachers:\n  - {{name: qwq, model: {qwq}, temperature: 0.6}}\n  - {{name: phi, model: {phi}, temperature: 0.6}}\n"
        f"meta_prover: {{name: qwq, model: {qwq}}}\ndata: {{tiny: {{n: 2, seed: 1}}}}\noutput_dir: {tmp_path / 'never'}\n"
    )
    code, stdout, err = cord("generate", "--config", recipe, "--dry-run")
    assert code == 0, err
    assert "teacher qwq" in stdout and "<think> opened by the chat template" in stdout
    assert "teacher phi" in stdout and "You are Phi" in stdout and "system prompt: left to the chat template" in stdout
    assert "<|im_start|>assistant\n<think>\n### Step\n" in stdout and "<think>\n<think>" not in stdout
    assert "meta-prover qwq" in stdout and "</think> The final answer is " in stdout
    assert stdout.count("special tokens: ") == 3 and "the prompt's first token is" in stdout
    assert stdout.count("device: the first GPU if one is visible, else the CPU") == 3  # where each model runs
    assert "is continued with '\\nThe final answer is \\\\boxed{'" in stdout
    assert not (tmp_path / "never").exists()


@needs_tiny
def test_dry_run_on_the_tiny_recipe():
    code, stdout, err = cord("generate", "--config", ROOT / "recipes" / "tiny-hetero.yaml", "--dry-run")
    assert code == 0, err
    assert stdout.count("<think> opened by cord") == 3 and "scores the answer's" in stdout


@needs_tiny
def test_dry_run_shows_each_teachers_sampling_settings():
    overrides = ("teachers.0.top_k=40", "teachers.0.presence_penalty=1.0", "teachers.1.min_p=0.05")
    code, stdout, err = cord("generate", "--config", ROOT / "recipes" / "tiny-hetero.yaml", "--dry-run", *overrides)
    assert code == 0, err
    assert "(transformers), temperature 0.6, top_p 1.0, top_k 40, presence_penalty 1.0, max_step_tokens" in stdout
    assert "(transformers), temperature 0.6, top_p 1.0, min_p 0.05, max_step_tokens" in stdout


def test_dry_run_estimates_tokens_and_cost_at_the_budgets_and_from_records_already_there(tmp_path):
    recipe, out = ROOT / "recipes" / "tiny-hetero.yaml", tmp_path / "run"
    prices = ["teachers.0.price={input: 0.5, output: 2.0}", "meta_prover.price={input: 0.2, output: 0.2}", "data.tiny.n=20"]
    code, stdout, err = cord("generate", "-c", recipe, "--out", out, "--dry-run", *prices)
    assert code == 0 and not out.exists(), err
    estimate = stdout.split("estimate for 20 problems (cord, B = 4, K = 3):\n")[1]
    assert "at the budgets, per problem, if every trajectory ran to search.reasoning_budget (256) in steps of max_step_tokens" in estimate
    assert "    addsub: " in estimate and " generated tokens, $" in estimate and "    mul: " in estimate
    assert "    cost: $" in estimate and "for 20 problems; excludes teachers.1, teachers.2 (no price)\n" in estimate
    assert "    not a bound: each round re-sends the prompt and every accepted step" in estimate
    assert f"expected: no records in {out} yet" in estimate
    assert f"time: no finished records in {out} yet; run a few with --limit to measure" in estimate

    code, _, err = cord("generate", "-c", recipe, "--out", out, "-q", "--limit", "3", *prices)
    assert code == 0, err
    code, stdout, err = cord("generate", "-c", recipe, "--out", out, "--dry-run", *prices)
    expected = stdout.split(f"expected from the 3 finished problems in {out}, per problem: ")[1]
    spent = json.loads((out / "summary.json").read_text())["cost"]["per_problem"]
    assert (
        f"cost: ${spent:,.4f} per problem, ${spent * 20:,.2f} for 20 problems (at the prices configured now); excludes teachers.1"
        in expected
    )
    assert "  time: about " in expected and " for the 17 problems left: " in expected and "divided by 3 at a time" in expected


def test_the_time_left_is_the_finished_problems_wall_time_over_those_that_ran_at_once():
    from cord.config import load_config
    from cord.data import Problem
    from cord.estimate import time_left
    from cord.records import Record

    config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", ["search.problems_in_flight=2", "output_dir=runs/x"])
    problems = [Problem(f"p{i}", "q", "1") for i in range(10)]
    records = [Record(f"p{i}", "q", "1", "cord", seconds=s) for i, s in enumerate((30.0, 50.0, 60.0))]
    records.append(Record("p3", "q", "1", "cord", seconds=5.0, failed="scoring: boom"))  # done (not run again), not a pace
    shown = time_left(config, problems, records)
    assert (
        shown[0] == "  time: about 2 min for the 6 problems left: 46.7 s of wall time a problem over the 3 finished, divided by 2 at a time"
    )
    assert "min(search.problems_in_flight, their count) = 2 at a time" in shown[1]
    assert time_left(config, problems[:4], records) == ["  time: none left to run: every problem planned has a record in runs/x"]
    assert time_left(config, problems, records[3:])[0].startswith("  time: no finished records in runs/x yet")


@needs_tiny
@pytest.mark.parametrize("method, style, asked", [("cord", "own", 4), ("curation", "steps", 4), ("curation", "own", 0)])
def test_the_meta_prover_reads_the_question_with_the_instruction_the_teachers_were_given(method, style, asked):
    """In the teachers' own style (Curation's default) no model's user turn asks for steps, the
    meta-prover's included; otherwise all four do (`search.trajectory_style` is Curation's alone)."""
    overrides = ("--method", method, f"search.trajectory_style={style}")
    code, stdout, err = cord("generate", "--config", ROOT / "recipes" / "tiny-hetero.yaml", "--dry-run", *overrides)
    assert code == 0, err
    assert stdout.count("start every step on a new line") == asked
    assert stdout.count("Please reason step by step, and put your final answer within") == 4
