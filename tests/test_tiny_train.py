import json
import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from cord import tiny  # noqa: E402
from cord.tiny import train  # noqa: E402
from cord.tiny.tasks import generate_problems, reasoning_text  # noqa: E402
from cord.tiny.tokenizer import SPECIAL_TOKENS, render_chat, render_prompt  # noqa: E402

MB = 1024 * 1024


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    assert train.main(["--only", "tiny-mul", "--seconds", "3", "--out", str(out), "--seed", "1"]) == 0
    return out / "tiny-mul"


def test_smoke_training_folder_loads(smoke_dir):
    for f in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "training_info.json",
    ):
        assert (smoke_dir / f).is_file(), f
    model = AutoModelForCausalLM.from_pretrained(smoke_dir)
    tok = AutoTokenizer.from_pretrained(smoke_dir)
    assert model.config.model_type == "llama"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert model.config.eos_token_id == tok.eos_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id
    info = json.loads((smoke_dir / "training_info.json").read_text())
    assert info["steps"] >= 1 and info["name"] == "tiny-mul"
    ids = tok("<|im_start|>user\nTom has 3 coins.<|im_end|>\n", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 3 or tok.eos_token_id in out[0].tolist()


def test_chat_template_render(smoke_dir):
    tok = AutoTokenizer.from_pretrained(smoke_dir)
    q = "Tom has 7 coins. How many coins does Tom have now?"
    r = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
    assert r == f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
    assert r == render_chat(q)
    r2 = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
    )
    assert r2 == f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
    assert r2 == render_chat(q, system="Be brief.")


def test_digits_and_specials_tokenize(smoke_dir):
    tok = AutoTokenizer.from_pretrained(smoke_dir)
    for s in ("12345", " 907", "### Step 2. 12 * 3 = 36", "The final answer is \\boxed{408}."):
        for t in tok.convert_ids_to_tokens(tok.encode(s, add_special_tokens=False)):
            digits = sum(ch.isdigit() for ch in t)
            assert digits <= 1, (s, t)
            if digits:
                assert t.lstrip("Ġ").isdigit()
    for sp in SPECIAL_TOKENS:
        ids = tok.encode(sp, add_special_tokens=False)
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids)[0] == sp
    text = "<think>\n### Step 1. 7 + 5 = 12\n</think>"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_model_path_errors():
    with pytest.raises(KeyError) as e:
        tiny.model_path("no-such-model")
    for name in tiny.MODEL_NAMES:
        assert name in str(e.value)


def test_shipped_models_exist_and_fit():
    total = 0
    tok_json = None
    for name in tiny.MODEL_NAMES:
        d = tiny.model_path(name)
        st = d / "model.safetensors"
        assert st.is_file()
        size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
        assert size <= 5 * MB, (name, size)
        total += size
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["model_type"] in ("llama", "qwen2")
        assert (d / "chat_template.jinja").is_file()
        tj = (d / "tokenizer.json").read_text()
        assert tok_json is None or tj == tok_json, "all tiny models share one tokenizer"
        tok_json = tj
    assert total <= 20 * MB
    assert tiny.META_PROVER in tiny.MODEL_NAMES
    assert set(tiny.HETEROGENEOUS_TEACHERS) <= set(tiny.MODEL_NAMES)


@torch.no_grad()
def _score(model, tok, q, prefix, answer, end="."):
    ctx = render_prompt(q) + prefix + " The final answer is "
    c = tok.encode(ctx, add_special_tokens=False)
    a = tok.encode(answer + end, add_special_tokens=False)
    lp = torch.log_softmax(model(torch.tensor([c + a])).logits[0].float(), -1)
    return math.exp(sum(lp[len(c) - 1 + i, t].item() for i, t in enumerate(a)) / len(a))


def test_shipped_meta_prover_prefers_correct_traces():
    d = tiny.model_path(tiny.META_PROVER)
    model = AutoModelForCausalLM.from_pretrained(d).eval()
    tok = AutoTokenizer.from_pretrained(d)
    wins = 0
    rows = generate_problems(10, seed=7)
    for r in rows:
        good = reasoning_text(r["reference_steps"])
        steps = list(r["reference_steps"])
        a, op, b, _ = steps[-1].split(" ")[:4]
        steps[-1] = f"{a} {op} {b} = {int(r['answer']) + 1}"
        bad = reasoning_text(steps)
        wins += _score(model, tok, r["problem"], good, r["answer"]) > _score(model, tok, r["problem"], bad, r["answer"])
    assert wins >= 8


def test_shipped_meta_prover_scores_the_whole_answer():
    """With the closing "." scored, answer 2 gets little credit after reasoning that concluded 22
    (without it, the first digit alone is scored and the two look alike)."""
    d = tiny.model_path(tiny.META_PROVER)
    model = AutoModelForCausalLM.from_pretrained(d).eval()
    tok = AutoTokenizer.from_pretrained(d)
    q = "Tom has 4 coins. Then he finds 7 more. Then he doubles his coins. How many coins does Tom have now?"
    right = reasoning_text(["4 + 7 = 11", "11 * 2 = 22"])
    assert _score(model, tok, q, right, "22") > 5 * _score(model, tok, q, right, "2")
    # measured: S(22.) 0.73, S(2.) 0.12; S(2) 0.68 with the end left out
    assert _score(model, tok, q, right, "2") < 0.25 * _score(model, tok, q, right, "2", end="")
    assert _score(model, tok, q, right, "2", end="") > 0.5


def test_shipped_meta_prover_reads_one_operation_ahead():
    """A prefix one operation short of the end: the reader carries its last result through the
    problem's last operation, so the right prefix mostly beats one whose last step used another
    skill's operator."""
    d = tiny.model_path(tiny.META_PROVER)
    model = AutoModelForCausalLM.from_pretrained(d).eval()
    tok = AutoTokenizer.from_pretrained(d)
    wins = total = 0
    for r in generate_problems(60, seed=8):
        steps = r["reference_steps"][:-1]
        a, op, b, _, c = steps[-1].split(" ")
        wrong_op = "+" if op != "+" else "*"
        wrong = f"{a} {wrong_op} {b} = {int(a) + int(b) if wrong_op == '+' else int(a) * int(b)}"
        if wrong.split()[-1] == c:
            continue
        prefix = "<think>\n" + "".join(f"### Step {k}. {s}\n" for k, s in enumerate(steps, start=1))
        bad = prefix.rsplit("### Step", 1)[0] + f"### Step {len(steps)}. {wrong}\n"
        total += 1
        right_score = _score(model, tok, r["problem"], prefix + "</think>", r["answer"])
        wins += right_score > _score(model, tok, r["problem"], bad + "</think>", r["answer"])
    assert wins >= 0.7 * total  # measured: 41 of 58 (a 1,000-step reader: 32)


@torch.no_grad()
def test_shipped_specialist_writes_the_format():
    d = tiny.model_path("tiny-mul")
    model = AutoModelForCausalLM.from_pretrained(d).eval()
    tok = AutoTokenizer.from_pretrained(d)
    r = generate_problems(1, seed=2, mix="mul")[0]
    ids = tok(render_prompt(r["problem"]) + "<think>\n", return_tensors="pt", add_special_tokens=False).input_ids
    out = model.generate(ids, max_new_tokens=80, do_sample=False, pad_token_id=tok.pad_token_id)
    text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=False)
    assert text.startswith("### Step 1.")
    assert "</think>" in text and "The final answer is \\boxed{" in text


@pytest.mark.parametrize("recipe", ["tiny-hetero.yaml", "tiny-homo.yaml"])
def test_the_tiny_recipes_send_the_layout_the_models_were_trained_on(recipe):
    """Teachers and meta-prover get the question with the default step instruction, as in training."""
    from pathlib import Path

    from cord.config import load_config
    from cord.engines import resolve_model
    from cord.engines.chat import ChatTokenizer
    from cord.prompts import THINK_OPEN, teacher_prompt, user_turn

    config = load_config(Path(__file__).resolve().parents[1] / "recipes" / recipe)
    question = generate_problems(1, seed=3)[0]["problem"]
    for model in [*config.teachers, config.meta_prover]:
        chat = ChatTokenizer(resolve_model(model.model)).chat_prompt(
            user_turn(question, config.step_instruction_for(model)), model.system_prompt
        )
        assert teacher_prompt(chat, "") == render_prompt(question) + THINK_OPEN, model.name


def test_a_free_layout_example_answers_the_plain_instruction_and_a_specialist_learns_only_its_own_operations():
    import random

    from cord.prompts import REASONING_INSTRUCTION, STEP_INSTRUCTION

    rng = random.Random(0)
    for _ in range(40):
        row = train.make_problem(rng, "mixed")
        segs = train.teacher_example(row, {"mul"}, "free", rng)
        if len(set(row["reference_steps"])) < len(row["reference_steps"]):
            continue  # the same operation twice (9 / 3 = 3, 3 * 3 = 9, 9 / 3 = 3): which is which is not in the text
        prompt = segs[0][0]
        assert REASONING_INSTRUCTION in prompt and STEP_INSTRUCTION not in prompt
        text = "".join(t for t, _ in segs)
        assert "###" not in text
        seen = set()
        for text, loss in segs[2:]:
            equation = text.removesuffix(".")
            if equation in row["reference_steps"]:
                first = equation not in seen
                seen.add(equation)
                mine = row["skills"][row["reference_steps"].index(equation)] == "mul"
                assert loss == (mine or not first), text  # restating another skill's operation is copying
    steps = train.teacher_example(row, {"mul"})
    assert STEP_INSTRUCTION in steps[0][0] and "### Step 1." in "".join(t for t, _ in steps)


def test_fine_tuning_on_both_layouts_starts_from_the_given_weights(tmp_path, smoke_dir, capsys):
    init = smoke_dir.parent
    out = tmp_path / "two"
    assert train.main(["--only", "tiny-mul", "--init", str(init), "--layouts", "steps", "free", "--steps", "2", "--out", str(out)]) == 0
    info = json.loads((out / "tiny-mul" / "training_info.json").read_text())
    assert info["layouts"] == ["steps", "free"] and info["init"] == str(init / "tiny-mul") and info["steps"] == 2
    assert (out / "tiny-mul" / "tokenizer.json").read_text() == (init / "tiny-mul" / "tokenizer.json").read_text()
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--only", "tiny-div", "--init", str(init), "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2 and "--init: no model folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
