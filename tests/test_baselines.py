"""MCTS, Integration and the selection ablations (search/mcts.py, search/integration.py, score.py)."""

import json

import pytest

from cord.data import Problem, load_problems
from cord.engines.base import Completion
from cord.run import generate
from cord.search.integration import merge_prompt, parse_integration
from helpers import ScriptedEngine, random_config, scripted_strategy


def test_mcts_runs_on_a_real_engine(random_model, tmp_path, engine_cache):
    config = random_config(random_model, tmp_path, teachers=2, method="mcts", beam_size=2)
    records = generate(load_problems(config.data)[:1], config, engine_cache)
    assert len(records) == 1
    for r in records:
        assert r.method == "mcts" and r.reasoning.endswith("</think>") and 0 < r.predictive_perplexity <= 1
        # every step: K = 2 proposals; the rollouts: 2 a step until K x B = 4 are spent
        assert sum(r.budget.steps_proposed.values()) >= 2 * len(r.steps)
        assert sum(r.budget.trajectories.values()) >= min(4, 2 * (len(r.steps) - 1))


@pytest.mark.parametrize("selection", ["random", "max_length", "binary_judgment", "step_judge"])
def test_selection_ablations_still_report_predictive_perplexity(random_model, tmp_path, engine_cache, selection):
    config = random_config(random_model, tmp_path, teachers=2, beam_size=2, selection=selection, judge_rollouts=2)
    records = generate(load_problems(config.data)[:2], config, engine_cache)
    assert len(records) == 2
    for r in records:
        assert r.method == f"cord+{selection}"
        assert 0 < r.predictive_perplexity <= 1
        if selection in ("binary_judgment", "step_judge", "random"):
            assert all(0 <= s.score <= 1 for s in r.steps)


def test_integration_with_a_model_that_cannot_write_json_records_failures(random_model, tmp_path, engine_cache):
    config = random_config(random_model, tmp_path, teachers=2, beam_size=1)
    config.integrator = type(config.meta_prover)(name="mixer", model=random_model, temperature=0.0)
    config.search.method, config.search.answer_budget = "integration", 20
    problems = load_problems(config.data)
    records = generate(problems, config, engine_cache)
    assert len(records) == len(problems)  # never dropped
    for r in records:
        assert r.method == "integration"
        if r.failed:
            assert r.raw_integration is not None and r.correct is False and r.predictive_perplexity is None


def test_merge_prompt_has_the_papers_structure():
    text = merge_prompt("What is 1+1?", ["### Step 1. 1 + 1 = 2\n</think>", "### Step 1. 2\n</think>"])
    assert "<reasoning_step_1>" in text and "</reasoning_step_2>" in text
    assert "Error Correction" in text and '"answer_part"' in text and "integrated_step1" in text


@pytest.mark.parametrize(
    "reply",
    [
        '{"integrated_step1": {"content": "### Step 1. 3 + 4 = 7", "category": "Progressive Reasoning"}, '
        '"integrated_step2": {"content": "### Step 2. check 7", "category": "Verification"}, "answer_part": ["\\\\boxed{7}"]}',
        # code fence, trailing comma, single quotes, missing closing braces: what real models send
        "Here is the merge:\n```json\n{'integrated_step1': {'content': '### Step 1. 3 + 4 = 7', 'category': 'Progressive Reasoning'},"
        " 'integrated_step2': {'content': '### Step 2. check 7', 'category': 'Verification',}, 'answer_part': ['\\\\boxed{7}']\n```",
        '{"integrated_step2": {"content": "### Step 2. check 7"}, "integrated_step1": {"content": "### Step 1. 3 + 4 = 7"}, '
        '"answer_part": ["\\\\boxed{7}"]',
    ],
)
def test_malformed_integration_json_is_repaired(reply):
    steps, answer = parse_integration(reply)
    assert [c for c, _ in steps] == ["### Step 1. 3 + 4 = 7", "### Step 2. check 7"]
    assert "7" in answer


class Merger(ScriptedEngine):
    """An integrator with a context of `context_length` characters (one character is one token)
    whose merge is one short step naming how many traces it read."""

    def __init__(self, context_length: int | None):
        super().__init__()
        self.context_length, self.prompts = context_length, []

    def prompt_tokens(self, prompt: str) -> int:
        return len(prompt)

    def generate(self, requests):
        out = []
        for r in requests:
            self.prompts.append(r.prompt)
            step = {"content": f"### Step 1. merged {r.prompt.count('</reasoning_step_')}", "category": "Progressive Reasoning"}
            text = json.dumps({"integrated_step1": step, "answer_part": ["\\boxed{7}"]})
            out.append(Completion(text, len(text), "eos"))
        return out


QUESTION = "What is 3 + 4?"
REPLY = 400 + 4096  # reasoning_budget + answer_budget: what each merge leaves room for


def trace(name: str) -> str:
    return f"### Step 1. {name * 280}\n</think>"


def prompt_tokens(*traces: str) -> int:
    return len(ScriptedEngine().chat_prompt(merge_prompt(QUESTION, list(traces))))


def integration_over(context_length: int | None) -> tuple[Merger, list]:
    """Integration of 2 teachers x 2 rollouts of ~300-token traces under a given integrator context."""
    teachers = {name: ScriptedEngine({"": trace(name)}) for name in "AB"}
    merger = Merger(context_length)
    strategy = scripted_strategy("integration", teachers, ScriptedEngine(default_score=0.5), merger, beam_size=2, reasoning_budget=400)
    return merger, list(strategy.run([Problem("p1", QUESTION, "7")]))


def test_integration_merges_in_rounds_when_the_traces_do_not_fit_the_integrators_context():
    merger, (record,) = integration_over(None)  # context unknown: one merge of all four
    assert len(merger.prompts) == 1 and record.reasoning.startswith("### Step 1. merged 4") and record.correct
    # room for two traces and the reply, not for three: two merges, then one of those two merges
    merger, (record,) = integration_over(prompt_tokens(trace("A"), trace("B")) + REPLY)
    assert [p.count("</reasoning_step_") for p in merger.prompts] == [2, 2, 2]
    assert merger.prompts[2].count("### Step 1. merged 2") == 2 and record.failed is None and record.correct
    assert record.reasoning.startswith("### Step 1. merged 2") and record.tokens.teachers["integrator:mixer"] == 3 * len(
        record.raw_integration
    )
    # no two traces fit together: the problem fails with the reason, the run goes on
    merger, (record,) = integration_over(prompt_tokens(trace("A"), trace("B")) + REPLY - 1)
    assert merger.prompts == [] and record.failed.startswith("integration: no two traces fit one merge in the integrator's context")


@pytest.mark.parametrize(
    "reply",
    [
        "I cannot merge these.",
        '{"answer_part": ["7"]}',
        '{"integrated_step1": {"content": "x"}}',
        "",
        # nested too deep to repair: json.loads or json_repair's own parser runs out of recursion
        '{"integrated_step1": ' + "[" * 100_000,
        "{'integrated_step1': " + "[" * 5_000,
    ],
)
def test_unusable_integration_replies_are_none(reply):
    assert parse_integration(reply) is None


def test_a_process_reward_model_scores_the_last_step_by_its_verdict_token(random_model, tmp_path, engine_cache):
    """selection=prm: p(+) / (p(+) + p(-)) after the last step tag, exactly as a direct forward pass gives it."""
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cord.config import ModelConfig
    from cord.run import build_strategy
    from cord.scoring.meta_prover import ScoreItem

    config = random_config(random_model, tmp_path, teachers=2, beam_size=2, selection="prm")
    config.prm = ModelConfig(name="prm", model=random_model)
    strategy = build_strategy(config, engine_cache)
    item = ScoreItem("What is 3 + 4?", "7", ("### Step 1. 3 + 4 = 7\n",), "### Step 2. done\n</think>")
    (result,) = strategy.selection.rank([item], [0])
    score = result.score
    text = strategy.selection.text(item)
    assert text == "What is 3 + 4? ### Step 1. 3 + 4 = 7 \u043a\u0438\n### Step 2. done \u043a\u0438"
    tok = AutoTokenizer.from_pretrained(random_model)
    model = AutoModelForCausalLM.from_pretrained(random_model, dtype=torch.float32).eval()

    def p(label: str) -> float:
        head = tok(text[: -len(" \u043a\u0438")], add_special_tokens=False)["input_ids"]
        tail = tok(" \u043a\u0438" + label, add_special_tokens=False, return_offsets_mapping=True)
        ids = head + tail["input_ids"]
        positions = [len(head) + j for j, (a, b) in enumerate(tail["offset_mapping"]) if b > len(" \u043a\u0438") and b > a]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
        return math.exp(sum(logprobs[q - 1, ids[q]].item() for q in positions))

    assert score == pytest.approx(p("+") / (p("+") + p("-")), abs=1e-5)
    records = generate(load_problems(config.data)[:1], config, engine_cache)
    assert records[0].method == "cord+prm" and 0 < records[0].predictive_perplexity <= 1
    assert all(0 <= s.score <= 1 for s in records[0].steps)


def test_prm_selection_needs_a_prm_model(random_model, tmp_path):
    from cord.config import ConfigError
    from cord.run import prepare

    with pytest.raises(ConfigError, match="prm: selection 'prm' needs"):
        prepare(random_config(random_model, tmp_path, selection="prm"))
