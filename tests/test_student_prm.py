"""`cord train` beyond cord's own fields (any trl.SFTConfig field, a peft LoRA adapter) and on
stepwise rows: a process reward model the `prm` selection reads, trained on the tiny models."""

from __future__ import annotations

import json
import re

import pytest
from transformers import AutoTokenizer

from cord.config import ConfigError
from cord.engines.base import ScoreRequest
from cord.engines.chat import ChatTokenizer
from cord.scoring.selection import math_shepherd_text
from cord.student import prm
from cord.student.train import load_train_config
from cord.student.trl_options import trainer_arguments
from cord.tiny import model_path
from cord.tiny.tasks import generate_problems, parse_equation
from helpers import ROOT, cord_here, needs_tiny, random_config

pytestmark = needs_tiny
TAG, GOOD, BAD = " \u043a\u0438", "+", "-"


def stepwise_rows(n: int, seed: int = 1) -> list[dict]:
    """TRL stepwise rows from the tiny tasks: each problem's reference chain, every step good, and
    the same chain cut after a step with wrong arithmetic, that step bad."""
    rows = []
    for problem in generate_problems(n, seed=seed):
        steps = [f"### Step {k}. {eq}" for k, eq in enumerate(problem["reference_steps"], 1)]
        rows.append({"prompt": problem["problem"], "completions": steps, "labels": [True] * len(steps)})
        a, op, b, c = parse_equation(problem["reference_steps"][-1])
        wrong = [*steps[:-1], f"### Step {len(steps)}. {a} {op} {b} = {c + 3}"]
        rows.append({"prompt": problem["problem"], "completions": wrong, "labels": [True] * (len(steps) - 1) + [False]})
    return rows


def test_any_sft_config_field_passes_through_and_cord_s_own_are_refused_by_name():
    base = ["model=m", "data=d"]
    cfg = load_train_config(None, [*base, "weight_decay=0.1", "sft.neftune_noise_alpha=5", "optim=adafactor"])
    assert cfg.sft == {"neftune_noise_alpha": 5, "weight_decay": 0.1, "optim": "adafactor"}
    refusals = {
        "weight_decy=0.1": "unknown config key: weight_decy, neither cord train's nor trl.SFTConfig's (did you mean weight_decay?)",
        "epochz=3": "unknown config key: epochz, neither cord train's nor trl.SFTConfig's (did you mean epochs?)",
        "num_train_epochs=3": "num_train_epochs: cord train sets it from epochs",
        "per_device_train_batch_size=2": "per_device_train_batch_size: cord train sets it from per_device_batch_size",
        "sft.learning_rate=1e-4": "sft.learning_rate: cord's own field: set learning_rate (not under sft)",
        "weight_decay=heavy": "weight_decay: expected float (trl.SFTConfig), got 'heavy'",
        "packing=3": "packing: expected bool (trl.SFTConfig), got 3",
        "lora.alpha=8": "lora.alpha: not a field of peft.LoraConfig (did you mean lora_alpha?)",
        "lora.r=big": "lora.r: expected int (peft.LoraConfig), got 'big'",
        "lora.task_type=SEQ_CLS": "lora.task_type: cord train sets it (CAUSAL_LM: cord trains causal LMs)",
        "merge_lora=true": "merge_lora: needs a lora section",
        "task=reward": "task: 'reward' is not one of auto, sft, prm",
    }
    for override, message in refusals.items():
        with pytest.raises(ConfigError) as err:
            load_train_config(None, [*base, override])
        assert str(err.value).startswith(message), (override, str(err.value))
    cfg = load_train_config(None, [*base, "lora={}", "lora.r=4", "lora.lora_dropout=1e-1", "learning_rate=1e-4"])
    assert cfg.lora == {"r": 4, "lora_dropout": 0.1} and cfg.learning_rate == 1e-4  # YAML 1.1 reads 1e-4 as text
    args = trainer_arguments(load_train_config(None, [*base, "weight_decay=0.1", "epochs=2"]), cuda=False)
    assert args.weight_decay == 0.1 and args.num_train_epochs == 2 and args.use_cpu
    with pytest.raises(ConfigError, match=r"^sft \(optim\): trl.SFTConfig refused it: "):  # a value TRL refuses, before any model loads
        trainer_arguments(load_train_config(None, [*base, "optim=no_such_optimizer"]), cuda=False)


def test_a_stepwise_row_carries_loss_on_exactly_its_verdict_tokens_where_the_prm_selection_reads_them():
    tok = AutoTokenizer.from_pretrained(model_path("tiny-reader"))
    v = prm.verdicts(tok, TAG, GOOD, BAD, "tiny:tiny-reader")
    # the tiny byte-level BPE: the tag is its 5 bytes' tokens, each verdict one token after it
    assert tok.convert_ids_to_tokens([*v.tag_ids, v.good_id, v.bad_id]) == ["\u0120", "\u00d0", "\u00ba", "\u00d0", "\u00b8", "+", "-"]
    question, steps, labels = "Ann has 3 apples. She gets 4 more.", ["### Step 1. 3 + 4 = 7", "### Step 2. 7 * 2 = 15"], [True, False]
    trained = prm.example(tok, question, steps, labels, v, "row")
    ids, targets = trained["input_ids"], trained["labels"]
    lossy = [i for i, t in enumerate(targets) if t != prm.IGNORE]
    assert [targets[i] for i in lossy] == [v.good_id, v.bad_id]  # one verdict per step, nothing else
    chat = ChatTokenizer(str(model_path("tiny-reader")))  # how the engines tokenize a ScoreRequest
    for k, position in enumerate(lossy):
        prompt = math_shepherd_text(question, steps[: k + 1], TAG)[: -len(TAG)]
        sent, (scored,) = chat.sequence(ScoreRequest(prompt, lead_in=TAG, target=GOOD if labels[k] else BAD))
        assert position == scored and ids[:position] == sent[:position]  # the same context, the same next token
    assert ids == sent  # the row is the last step's scored sequence, its verdict included
    assert tok.decode(ids) == math_shepherd_text(question, steps, TAG) + BAD
    # an export's Math-Shepherd columns must agree with the tag and verdicts trained
    exported = {"prompt": question, "completions": steps, "labels": labels, "input": math_shepherd_text(question, steps, TAG)}
    exported["label"] = math_shepherd_text(question, steps, TAG, [GOOD, BAD])
    assert prm.examples([exported], tok, v, "steps.jsonl") == [trained]
    with pytest.raises(ConfigError, match=re.escape("steps.jsonl row 0: its `input` column is not tagged with prm_step_tag ' <step>';")):
        prm.examples([exported], tok, prm.verdicts(tok, " <step>", GOOD, BAD, "tiny"), "steps.jsonl")
    with pytest.raises(ConfigError, match=re.escape("row 0: `label` column has other verdicts than prm_good '-' / prm_bad '+'")):
        prm.examples([exported], tok, prm.verdicts(tok, TAG, BAD, GOOD, "tiny"), "steps.jsonl")
    with pytest.raises(ConfigError, match="prm_good: 'good' after prm_step_tag ' ки' must be one token of its own"):
        prm.verdicts(tok, TAG, "good", BAD, "tiny:tiny-reader")
    with pytest.raises(ConfigError, match="prm_bad: '\\+' is the same token as prm_good"):
        prm.verdicts(tok, TAG, GOOD, GOOD, "tiny:tiny-reader")


@pytest.mark.slow
def test_train_a_tiny_prm_then_search_with_it(tmp_path, engine_cache):
    """Stepwise rows -> `cord train` (task detected, with a trl.SFTConfig field) -> a CoRD search
    with selection prm scoring its candidates with the trained PRM."""
    from cord.config import ModelConfig
    from cord.data import load_problems
    from cord.run import generate

    data = tmp_path / "steps.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in stepwise_rows(8)))
    out = tmp_path / "prm"
    args = ("train", "--data", data, "--model", "tiny:tiny-reader", "--out", out, "-c", ROOT / "recipes" / "student" / "tiny-prm.yaml")
    code, shown, err = cord_here(*args, "--dry-run", "weight_decay=0.01")
    assert code == 0 and not out.exists(), err
    assert "task: prm" in shown and "verdicts: 44 (36 good, 8 bad)" in shown and " ки+\n### Step 2." in shown
    assert "verdict positions read as the prm selection scores them: 44 of 44" in shown
    assert "trl.SFTConfig fields beyond cord's: weight_decay=0.01" in shown and "LoRA: none" in shown
    code, _, err = cord_here(*args, "weight_decay=0.01")
    assert code == 0, err
    info = json.loads((out / "cord_train.json").read_text())
    assert info["task"] == "prm" and info["steps"] == 6 and info["config"]["sft"] == {"weight_decay": 0.01}
    assert info["search"] == {"selection": "prm", "prm_step_tag": TAG, "prm_good": GOOD, "prm_bad": BAD}

    config = random_config(str(model_path("tiny-reader")), tmp_path / "run", teachers=2, beam_size=2, selection="prm")
    config.prm = ModelConfig(name="prm", model=str(out))
    (record,) = generate(load_problems(config.data)[:1], config, engine_cache)
    assert record.method == "cord+prm" and record.steps
    assert all(0 < s.score < 1 for s in record.steps)


def test_a_lora_adapter_trains_saves_loads_and_generates_and_merges(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    row = {
        "messages": [
            {"role": "user", "content": "Ann has 3 apples. Then she gets 4 more. How many apples does Ann have now?"},
            {"role": "assistant", "content": "<think>\n### Step 1. 3 + 4 = 7\n</think>\nThe final answer is \\boxed{7}."},
        ]
    }
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    out = tmp_path / "lora"
    args = ("train", "--data", data, "--model", "tiny:tiny-generalist", "max_steps=2", "batch_size=2", "per_device_batch_size=2")
    args += ("max_length=256", "learning_rate=1e-3", "save_strategy=no", "lora.r=4")
    code, shown, err = cord_here(*args, "--out", out, "--dry-run")
    assert code == 0 and "LoRA (peft.LoraConfig): r=4, lora_alpha=32, lora_dropout=0.05, target_modules='all-linear'" in shown, err
    code, _, err = cord_here(*args, "--out", out)
    assert code == 0, err
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists() and json.loads((out / "cord_train.json").read_text())["lora"] == "adapter"
    # as cord's transformers engine loads a folder: transformers finds the adapter and its base
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert model.peft_config["default"].r == 4
    tok = AutoTokenizer.from_pretrained(out)
    prompt = tok.apply_chat_template(row["messages"][:1], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    generated = model.generate(ids, max_new_tokens=6, do_sample=False)[0, ids.shape[1] :]
    assert 0 < len(generated) <= 6

    merged = tmp_path / "merged"
    code, _, err = cord_here(*args, "merge_lora=true", "--out", merged)
    assert code == 0, err
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    assert not hasattr(plain, "peft_config") and plain.config.vocab_size == len(tok)
