"""`cord train` on conversations: a student fine-tuned on the assistant turns of a `cord export`.

Every row becomes a plain-text prompt / completion pair: the prompt is the student's own chat
template around the user turn (generation prompt included), the completion is the assistant turn
as exported (`<think>` reasoning `</think>` answer) and the end-of-turn token; loss is on the
completion only. Rendering the prompt ourselves, instead of handing TRL the conversation, keeps
the reasoning: some chat templates (R1-Distill's, QwQ's) drop `<think>...</think>` from the
assistant turns they render, so a conversational dataset would train those students on the final
answers alone; training says when the student's does. A template whose generation prompt already
opens `<think>` gets the completion without its own `<think>` line. TRL tokenizes the text with
the tokenizer's special tokens, so a prompt whose template writes BOS loses that BOS text when the
tokenizer adds one itself (R1-Distill-Qwen's does): every row starts with exactly one BOS, as in
evaluation.
"""

from __future__ import annotations

from ..engines.chat import adds_bos
from ..errors import ConfigError
from ..prompts import THINK_OPEN, opens_think


def conversation(row: dict, where: str) -> tuple[list[dict], str]:
    """(prompt messages, assistant text) of a `messages` or `prompt-completion` row."""
    if "messages" in row:
        messages = row["messages"]
        prompt, last = messages[:-1], messages[-1] if messages else {}
    elif "prompt" in row and "completion" in row and isinstance(row["prompt"], list):
        prompt, last = row["prompt"], (row["completion"] or [{}])[-1]
    else:
        raise ConfigError(
            f"{where}: expected a `messages` or `prompt-completion` row (cord export --format messages), or, for task prm, a stepwise one"
        )
    if last.get("role") != "assistant" or not prompt:
        raise ConfigError(f"{where}: the last message must be the assistant's, after at least one prompt message")
    return prompt, last["content"]


def text_pairs(rows: list[dict], tokenizer, data: str) -> list[dict]:
    """Plain-text prompt / completion pairs in the student's chat template (see the module doc)."""
    if tokenizer.chat_template is None:
        raise ConfigError("model: its tokenizer has no chat template")
    strip_bos = tokenizer.bos_token if adds_bos(tokenizer) else None
    pairs = []
    for i, row in enumerate(rows):
        prompt_messages, answer = conversation(row, f"{data} row {i}")
        prompt = tokenizer.apply_chat_template(prompt_messages, tokenize=False, add_generation_prompt=True)
        if opens_think(prompt) and answer.startswith(THINK_OPEN):
            answer = answer[len(THINK_OPEN) :]
        if strip_bos and prompt.startswith(strip_bos):
            prompt = prompt[len(strip_bos) :]
        pairs.append({"prompt": prompt, "completion": answer + tokenizer.eos_token})
    return pairs


def loss_mask(tokenizer, pair: dict) -> tuple[list[int], int]:
    """(token ids, where the loss starts) of one row, as TRL masks a prompt-completion row: the
    completion starts where the tokenized prompt and prompt + completion part."""
    prompt = tokenizer(pair["prompt"]).input_ids
    ids = tokenizer(pair["prompt"] + pair["completion"]).input_ids
    start = next((i for i, (a, b) in enumerate(zip(prompt, ids)) if a != b), min(len(prompt), len(ids)))
    return ids, start


def dry_run_lines(pairs: list[dict], tokenizer) -> list[str]:
    """The SFT part of `cord train --dry-run`: the first row as trained, the part with the loss marked."""
    ids, start = loss_mask(tokenizer, pairs[0])
    decode = lambda part: tokenizer.decode(part, skip_special_tokens=False)
    return [
        "task: sft (the student learns the assistant turns)",
        f"the first row as trained ({len(ids)} tokens):",
        f"--- no loss: the prompt ({start} tokens) ---",
        decode(ids[:start]),
        f"--- loss: the completion ({len(ids) - start} tokens) ---",
        decode(ids[start:]),
        "---",
    ]
