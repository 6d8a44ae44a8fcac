"""`cord generate --dry-run`: what each model will be sent, from the tokenizers alone.

Before GPU hours are spent, a user checks the rendered prompts: each teacher's chat template with
its system prompt, whether the template opens <think> itself, the step opening, sampling and stop
strings; and the meta-prover's scoring text with the answer tokens it scores.
"""

from __future__ import annotations

from .config import Config, ModelConfig
from .data import Problem
from .engines import resolve_model
from .engines.base import sampling
from .engines.chat import ChatTokenizer
from .prompts import ANSWER_PREFILL, opens_think, teacher_prompt, user_turn
from .registry import ENGINES, STRATEGIES
from .scoring.meta_prover import meta_prover_request

RULE = "-" * 78


def _tokenizer(cfg: ModelConfig, cache: dict[tuple, ChatTokenizer]) -> ChatTokenizer:
    key = (resolve_model(cfg.tokenizer), None) if cfg.tokenizer else (resolve_model(cfg.model), cfg.gguf_file)
    if key not in cache:
        cache[key] = ChatTokenizer(*key)
    return cache[key]


def _specials(tok: ChatTokenizer, prompt: str) -> str:
    """The model's special tokens and the prompt's first token, as the model reads it."""
    first = tok.tokenizer.convert_ids_to_tokens(tok.ids(prompt)[:1])
    return f"special tokens: {tok.special_tokens()}; the prompt's first token is {first[0] if first else None!r}"


def teacher_line(teacher: ModelConfig) -> str:
    """A teacher, its engine and the sampling its requests carry: temperature, top_p and every other setting it sets."""
    settings = ", ".join(f"{key} {value}" for key, value in sampling(teacher).items() if value is not None)
    return f"teacher {teacher.name}: {teacher.model} ({teacher.engine}), {settings}, max_step_tokens {teacher.max_step_tokens}"


def placement(cfg: ModelConfig) -> str:
    """Where a model runs, as its engine will place it."""
    return ENGINES.load(cfg.engine).where(cfg)


def _served_teacher(config: Config, teacher: ModelConfig, problem: Problem) -> list[str]:
    """A teacher whose server renders the prompt with its own chat template: the messages it gets."""
    method = STRATEGIES.load(config.search.method)
    turn = user_turn(problem.question, method.teacher_instruction(config, teacher))
    return [
        RULE,
        teacher_line(teacher),
        f"the server's chat template renders the prompt; stops {method.teacher_stops(config)}",
        placement(teacher),
        RULE,
        *([f"system: {teacher.system_prompt}"] if teacher.system_prompt else []),
        f"user: {turn}",
        f"assistant (continued by the server): {teacher_prompt('', '', method.teacher_opening(config))}",
    ]


def preview(config: Config, problem: Problem) -> str:
    """The text a user reads before a run: every teacher's first request and one scored text."""
    cache: dict[tuple, ChatTokenizer] = {}
    method = STRATEGIES.load(config.search.method)  # what its teachers are asked (Curation: in their own style by default)
    out = [f"dry run: problem {problem.id!r}, method {config.search.method}, B = {config.search.beam_size}, K = {len(config.teachers)}"]
    for teacher in config.teachers:
        if not ENGINES.load(teacher.engine).local_tokenizer:
            out += _served_teacher(config, teacher, problem)
            continue
        tok = _tokenizer(teacher, cache)
        chat = tok.chat_prompt(user_turn(problem.question, method.teacher_instruction(config, teacher)), teacher.system_prompt)
        prompt = teacher_prompt(chat, "", method.teacher_opening(config))
        out += [
            RULE,
            teacher_line(teacher),
            f"system prompt: {'from the recipe' if teacher.system_prompt else 'left to the chat template'}; "
            f"<think> opened by {'the chat template' if opens_think(chat) else 'cord'}; "
            f"stops {method.teacher_stops(config)}; {len(tok.ids(prompt))} prompt tokens",
            _specials(tok, prompt),
            placement(teacher),
            RULE,
            prompt,
        ]
    mp = config.meta_prover
    tok = _tokenizer(mp, cache)
    search = config.search
    step = (lambda k: f"{search.step_marker} {k}. ...\n") if search.segmentation == "prompt" else (lambda k: "...\n")
    chat = tok.chat_prompt(user_turn(problem.question, method.meta_prover_instruction(config)), mp.system_prompt)
    request = meta_prover_request(chat, (step(1),), step(2), problem.answer, search.answer_lead, search.answer_end)
    ids, positions = tok.sequence(request)
    answer_tokens = tok.tokenizer.convert_ids_to_tokens([ids[p] for p in positions])
    out += [
        RULE,
        f"meta-prover {mp.name}: {mp.model} ({mp.engine}); scores the answer's {len(positions)} token(s) {answer_tokens} "
        f"after prompt + steps + candidate (here two placeholder steps)",
        _specials(tok, request.context),
        placement(mp),
        RULE,
        request.context + request.target,
        RULE,
        f"final answers: the teacher of the last step writes after </think>; one with nothing to grade (with math "
        f"grading: no boxed answer) is continued with {ANSWER_PREFILL!r} written for the teacher",
    ]
    return "\n".join(out)
