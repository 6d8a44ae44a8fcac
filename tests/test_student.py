"""After export: `cord train` (TRL SFTTrainer) and `cord eval-student` (Pass@1 avg@n) on the tiny models."""

from __future__ import annotations

import json

import pytest
import yaml
from transformers import AutoTokenizer

from cord.config import ConfigError
from cord.engines.chat import ChatTokenizer
from cord.prompts import REASONING_INSTRUCTION, user_turn
from cord.results.export import export
from cord.student.evaluate import EvalConfig, evaluate, graded_sample, summarize
from cord.student.train import adds_bos, load_train_config, text_pairs
from cord.tiny import model_path
from helpers import ROOT, cord_here, model_with_template, needs_real, needs_tiny

pytestmark = needs_tiny
ROW = {
    "messages": [
        {"role": "user", "content": "Ann has 3 apples. Then she gets 4 more. How many apples does Ann have now?"},
        {"role": "assistant", "content": "<think>\n### Step 1. 3 + 4 = 7\n</think>\nThe final answer is \\boxed{7}."},
    ]
}


def test_the_completion_keeps_the_reasoning_even_when_the_template_strips_think_from_assistant_turns(tmp_path):
    folder = model_with_template(str(model_path("tiny-generalist")), tmp_path / "r1-like", "strips-think")
    tok = AutoTokenizer.from_pretrained(folder)
    # what a conversational dataset would train on: the template drops the reasoning
    assert "### Step 1." not in tok.apply_chat_template(ROW["messages"], tokenize=False)
    (pair,) = text_pairs([ROW], tok, "rows")
    assert pair["prompt"].endswith("<|im_start|>assistant\n<think>\n")  # the template opened <think> ...
    assert pair["completion"] == "### Step 1. 3 + 4 = 7\n</think>\nThe final answer is \\boxed{7}." + tok.eos_token  # ... so no second one


def test_a_template_that_does_not_open_think_gets_the_whole_assistant_turn():
    tok = AutoTokenizer.from_pretrained(model_path("tiny-generalist"))
    (pair,) = text_pairs([{"prompt": ROW["messages"][:1], "completion": ROW["messages"][1:]}], tok, "rows")
    assert pair["prompt"].endswith("<|im_start|>assistant\n") and pair["completion"].startswith("<think>\n### Step 1.")


@needs_real
def test_a_tokenizer_that_adds_bos_itself_trains_on_one_bos_and_the_prompt_evaluation_sends(tmp_path):
    """Gemma's hub tokenizer puts BOS before any text it tokenizes (its tokenizer.json's post-processor,
    which the GGUF conversion lacks and this test restores), and its instruct template writes
    `{{ bos_token }}` too: TRL tokenizes cord train's text with special tokens, so the rendered BOS
    text must go, and the sequence must start with exactly the ids evaluation sends."""
    import shutil

    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    from cord.engines import resolve_model

    folder = tmp_path / "gemma-with-template"
    shutil.copytree(resolve_model("real:gemma-3-270m"), folder)
    backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
    backend.post_processor = TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)])
    backend.save(str(folder / "tokenizer.json"))
    (folder / "chat_template.jinja").write_text(
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
        "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    tok = AutoTokenizer.from_pretrained(folder)
    assert adds_bos(tok) and tok.apply_chat_template(ROW["messages"][:1], tokenize=False).startswith("<bos>")
    (pair,) = text_pairs([ROW], tok, "rows")
    trained = tok(pair["prompt"] + pair["completion"]).input_ids  # what TRL's tokenization gives
    assert trained.count(tok.bos_token_id) == 1 and trained[0] == tok.bos_token_id
    chat = ChatTokenizer(str(folder))  # what every engine sends at evaluation
    sent = chat.ids(chat.chat_prompt(ROW["messages"][0]["content"]))
    assert sent.count(tok.bos_token_id) == 1 and trained[: len(sent)] == sent
    # a tokenizer that adds no BOS of its own keeps the template's
    assert not adds_bos(AutoTokenizer.from_pretrained(model_path("tiny-generalist")))


def test_train_config_refusals_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="data: required"):
        load_train_config(None, ["model=tiny:tiny-generalist"])
    with pytest.raises(ConfigError, match="batch_size: 8 is not a multiple"):
        load_train_config(None, ["model=m", "data=d", "per_device_batch_size=3"])
    with pytest.raises(ConfigError, match="unknown config key"):
        load_train_config(None, ["model=m", "data=d", "epochz=3"])
    for recipe in sorted((ROOT / "recipes" / "student").glob("*.yaml")):
        assert load_train_config(str(recipe), ["data=d"]).model


@pytest.mark.slow
def test_train_then_evaluate_a_tiny_student_end_to_end_and_resume_the_evaluation(tmp_path):
    """The export's user instruction goes with the trained model, and evaluation sends the same user turn."""
    rows = tmp_path / "train.jsonl"
    question = ROW["messages"][0]["content"]
    row = {
        "messages": [{"role": "user", "content": user_turn(question, "Show your work.")}, ROW["messages"][1]],
        "user_instruction": "Show your work.",
    }
    rows.write_text("".join(json.dumps(row) + "\n" for _ in range(8)))
    student = tmp_path / "student"
    train = ("train", "-c", ROOT / "recipes" / "student" / "tiny.yaml", "--data", rows, "--out", student, "per_device_batch_size=4")
    code, shown, err = cord_here(*train, "--dry-run")
    assert code == 0 and not student.exists(), err
    prompt, completion = shown.split("--- no loss: the prompt (")[1].split("--- loss: the completion (")
    assert prompt.rstrip().endswith("<|im_start|>assistant") and "Show your work." in prompt
    assert completion.split("\n", 1)[1].startswith("<think>\n### Step 1.") and "\\boxed{7}.<|im_end|>\n---" in completion
    assert "0 of 8 rows exceed max_length 512" in shown
    assert "optimizer steps: 3 (batch 16 = 4 per device x 4 accumulated x 1 device(s), 3 epochs)" in shown
    code, _, err = cord_here(*train)
    assert code == 0, err
    info = json.loads((student / "cord_train.json").read_text())
    assert info["rows"] == 8 and info["steps"] == 3 and info["train_loss"] > 0 and info["user_instruction"] == "Show your work."
    assert (student / "model.safetensors").is_file() and (student / "tokenizer.json").is_file()

    out = tmp_path / "eval"
    code, stdout, err = cord_here("eval-student", "--model", student, "--data", "tiny:3", "--dry-run", "--out", out)
    assert code == 0 and not out.exists(), err
    assert '"Show your work." (' in err and "cord_train.json" in err
    assert stdout.rstrip("\n").endswith("\n\nShow your work.<|im_end|>\n<|im_start|>assistant")
    args = ("eval-student", "--model", student, "--data", "tiny:3", "--n", "2", "--max-tokens", "80", "--out", out)
    code, stdout, err = cord_here(*args)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["user_instruction"] == "Show your work."
    assert summary["problems"] == 3 and summary["samples_per_problem"] == 2 and 0 <= summary["pass@1"] <= 1
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(len(json.loads(line)["samples"]) == 2 for line in lines)
    before = (out / "samples.jsonl").read_bytes()
    code, stdout, err = cord_here(*args)  # the same command again: everything is already there
    assert code == 0 and (out / "samples.jsonl").read_bytes() == before and json.loads(stdout)["pass@1"] == summary["pass@1"]
    code, _, err = cord_here(*args[:-2], "--temperature", "1.0", "--out", out)
    assert code == 2 and "other settings" in err


def test_an_eval_directory_with_a_torn_last_line_redoes_that_problem_only(tmp_path):
    cfg = EvalConfig(model="tiny:tiny-generalist", data="tiny:3", n=2, max_tokens=60, instruction="", output_dir=str(tmp_path / "e"))
    evaluate(cfg, log=None)
    samples = tmp_path / "e" / "samples.jsonl"
    whole = samples.read_bytes()
    samples.write_bytes(whole[: whole.rfind(b"\n", 0, len(whole) - 1) + 1] + b'{"id": "torn')
    evaluate(cfg, log=None)
    assert samples.read_bytes() == whole  # per-request seeds: the redone problem comes out the same


def test_eval_student_takes_a_question_answer_file_and_a_datasets_folder_with_generates_field_options(tmp_path):
    import datasets

    question = "Ann has 3 apples. Then she gets 4 more. How many apples does Ann have now?"
    rows = [{"question": question, "answer": "7", "n": i} for i in range(3)]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = ("eval-student", "--model", "tiny:tiny-generalist", "--n", "1", "--max-tokens", "40", "--instruction", "")
    code, _, err = cord_here(*base, "--data", tmp_path / "qa.jsonl", "--out", tmp_path / "e0")
    assert code == 2 and "missing or empty field 'problem' (--question-field); the row has 'question', 'answer', 'n'" in err
    assert not (tmp_path / "e0").exists()
    mapped = ("--question-field", "question")
    code, stdout, err = cord_here(*base, "--data", tmp_path / "qa.jsonl", *mapped, "--id-field", "n", "--out", tmp_path / "e1")
    assert code == 0, err
    assert json.loads(stdout)["problems"] == 3
    assert [json.loads(line)["id"] for line in (tmp_path / "e1" / "samples.jsonl").read_text().splitlines()] == ["0", "1", "2"]
    datasets.Dataset.from_list(rows).save_to_disk(tmp_path / "qa-folder")
    code, stdout, err = cord_here(*base, "--data", tmp_path / "qa-folder", *mapped, "--limit", "2", "--out", tmp_path / "e2")
    assert code == 0 and json.loads(stdout)["problems"] == 2, err


def test_eval_student_takes_gsm8k_style_answers_and_resumes_a_directory_written_before_the_option(tmp_path):
    rows = [{"question": "Ann has 3 apples and gets 4 more. How many now?", "answer": "She has 3 + 4 = 7.\n#### 7"}]
    (tmp_path / "gsm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["eval-student", "--model", "tiny:tiny-generalist", "--n", "1", "--max-tokens", "40", "--instruction", ""]
    args += ["--data", tmp_path / "gsm.jsonl", "--question-field", "question", "--out", tmp_path / "e"]
    code, _, err = cord_here(*args, "--answer-format", "gsm8k")
    assert code == 0, err
    assert json.loads((tmp_path / "e" / "samples.jsonl").read_text())["answer"] == "7"
    settings = tmp_path / "e" / "eval_config.yaml"  # as an earlier cord wrote it: no answer_regex key
    settings.write_text("".join(line for line in settings.read_text().splitlines(True) if not line.startswith("answer_regex")))
    code, _, err = cord_here(*args, "--answer-format", "gsm8k")
    assert code == 0, err
    code, _, err = cord_here(*args)  # raw answers: other settings
    assert code == 2 and "other settings" in err


def test_pass_at_1_is_the_mean_over_problems_of_the_share_of_right_samples():
    lines = [{"samples": [{"correct": c, "tokens": 1, "finish": "eos"} for c in cs]} for cs in ([1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0])]
    s = summarize(lines, 4)
    assert s["pass@1"] == pytest.approx((0.5 + 0.25 + 0) / 3)
    assert s["pass@4"] == pytest.approx(2 / 3)
    assert s["pass@1_ci95"][0] <= s["pass@1"] <= s["pass@1_ci95"][1]


def test_export_and_evaluation_send_the_student_the_same_user_turn_by_default(kept_run, tmp_path):
    export([kept_run], tmp_path / "m.jsonl", keep="all")
    row = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert row["user_instruction"] == REASONING_INSTRUCTION
    assert row["messages"][0]["content"] == user_turn(row["messages"][0]["content"].split("\n\n")[0], REASONING_INSTRUCTION)
    # an untrained model (no cord_train.json) is evaluated with the same default
    cfg = EvalConfig(model="tiny:tiny-generalist", data="tiny:1", output_dir=str(tmp_path / "e"))
    shown = evaluate(cfg, log=None, dry_run=True)
    assert f"\n\n{REASONING_INSTRUCTION}<|im_end|>" in shown["prompt"] and not (tmp_path / "e").exists()
    export([kept_run], tmp_path / "bare.jsonl", keep="all", instruction="")
    assert json.loads((tmp_path / "bare.jsonl").read_text().splitlines()[0])["user_instruction"] == ""


def test_train_refuses_an_export_format_it_does_not_read(kept_run, tmp_path):
    export([kept_run], tmp_path / "a.jsonl", fmt="alpaca", keep="all")
    code, _, err = cord_here("train", "--model", "tiny:tiny-generalist", "--data", tmp_path / "a.jsonl", "--out", tmp_path / "s")
    assert code == 2 and "expected a `messages` or `prompt-completion` row" in err


CUT_OFF = "<think>\n### Step 1. 7 + 10 = 17\nSo the answer is \\boxed{17}. Let me check: 7 + 10"  # hit max_tokens


def test_a_sample_is_graded_after_its_closing_think_tag_and_one_that_never_closes_it_is_wrong():
    assert graded_sample(CUT_OFF, "17") == {"predicted": None, "correct": False, "unclosed": True}
    closed = CUT_OFF + " = 17\n</think>\nThe final answer is \\boxed{17}."
    assert graded_sample(closed, "17") == {"predicted": "17", "correct": True, "unclosed": False}
    # a chat template that opens <think> in the prompt: the sample starts inside the reasoning
    assert graded_sample("### Step 1. 7 + 10 = 17\n</think>\n\\boxed{17}", "17")["correct"]
    # a student trained to answer without a think block (--no-think): the whole text
    assert graded_sample("7 + 10 = 17, so \\boxed{17}", "17", think=False)["correct"]
    cut, right = {"correct": False, "unclosed": True, "tokens": 80, "finish": "length"}, {"correct": True, "tokens": 9, "finish": "eos"}
    lines = [{"samples": [cut, right]}]
    assert summarize(lines, 2)["unclosed"] == 1


def test_a_directory_graded_before_the_closing_tag_rule_resumes_graded_by_it(tmp_path):
    """Its cut-off sample was right by the number inside its reasoning; it is wrong now."""
    cfg = EvalConfig(model="tiny:tiny-generalist", data="tiny:1", n=1, instruction="", output_dir=str(tmp_path / "e"))
    from cord.config import to_dict
    from cord.data.evalsets import load_eval_set

    (problem,) = load_eval_set("tiny:1", None, {})
    text = f"<think>\n### Step 1. it is \\boxed{{{problem.answer}}}"
    old = {"text": text, "predicted": problem.answer, "correct": True, "tokens": 80, "finish": "length"}
    (tmp_path / "e").mkdir()
    settings = {k: v for k, v in to_dict(cfg).items() if k != "think"} | {"limit": None, "output_dir": None}
    (tmp_path / "e" / "eval_config.yaml").write_text(yaml.safe_dump(settings))
    row = {"id": problem.id, "question": problem.question, "answer": problem.answer, "samples": [old]}
    (tmp_path / "e" / "samples.jsonl").write_text(json.dumps(row) + "\n")
    summary = evaluate(cfg, log=None)
    assert summary["pass@1"] == 0 and summary["unclosed"] == 1
