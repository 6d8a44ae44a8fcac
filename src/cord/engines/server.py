"""What the server engines (openai, openai-chat, sglang) share about reaching a server: its URL as
users write it, the check at the start that it answers, what a generation request carries, and
how long a busy server asks to be left alone."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from .base import GenerateRequest

MAX_RETRY_AFTER = 300.0  # seconds: a longer Retry-After is capped


def server_roots(base_url: str | list[str] | None) -> list[str]:
    """Each server's root from `base_url` (one URL or several) as written: `http://host:8000`,
    `http://host:8000/`, `http://host:8000/v1` and `http://host:8000/v1/` (the OpenAI SDK's,
    distilabel's and curator's convention) are one server. Every path (`/v1/completions`, SGLang's
    `/generate`) is added to a root."""
    urls = [base_url] if isinstance(base_url, str) else base_url or []
    return [url.strip().rstrip("/").removesuffix("/v1") for url in urls]


def api_key_from(env: str | None, where: str = "") -> str | None:
    """The API key in environment variable `env` (None: no key); a variable that is not set is an
    error naming the field (`where`.api_key_env)."""
    if not env:
        return None
    key = os.environ.get(env)
    if not key:
        raise ConfigError(f"{where + '.' if where else ''}api_key_env: environment variable {env} is not set")
    return key


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def served_models(roots: list[str], api_key: str | None, timeout: float, where: str) -> list[dict]:
    """The model cards every server lists at GET /v1/models. A server that does not answer, or
    answers with an error (a 404: nothing OpenAI-compatible at that URL), is one line naming the
    field (`where`.base_url) and the URL, before anything is written, not a run of failed problems."""
    import httpx

    cards: list[dict] = []
    for root in roots:
        url = f"{root}/v1/models"
        try:
            response = httpx.get(url, headers=auth_headers(api_key), timeout=min(30.0, timeout))
        except httpx.HTTPError as err:
            reason = str(err).splitlines()[0] if str(err) else ""  # one line, whatever httpx says
            raise ConfigError(f"{where}.base_url: {root} does not answer ({type(err).__name__}: {reason})") from None
        if response.status_code != 200:
            hint = "is the key in api_key_env the server's?" if response.status_code in (401, 403) else "is it the server's URL?"
            raise ConfigError(f"{where}.base_url: {root} answers HTTP {response.status_code} to GET {url}: {hint}")
        try:
            listed = response.json().get("data") or []
        except (ValueError, AttributeError):
            listed = []
        cards += [card for card in listed if isinstance(card, dict)]
    return cards


def generation_fields(r: GenerateRequest) -> dict[str, Any]:
    """What a generation request's JSON carries besides the model and the prompt: the token cap,
    sampling, stop strings and seed. The caller merges `r.extra_body` last, over everything."""
    body: dict[str, Any] = {"max_tokens": r.max_tokens, "temperature": r.temperature, "top_p": r.top_p}
    body.update(r.sampling_set())  # vLLM and SGLang take top_k, min_p, repetition_penalty as extra fields
    if r.stop:
        body["stop"] = list(r.stop)
    if r.seed is not None:
        body["seed"] = r.seed
    return body


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        pass
    import datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds()))
