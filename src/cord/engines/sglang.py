"""SGLang engine (experimental: no SGLang server runs on this project's CPU machines, so this path
is untested here). Generation goes through SGLang's OpenAI-compatible `/v1/completions`; scoring
through the native `/generate` with `return_logprob` and `logprob_start_len` at the prefix length,
which keeps SGLang's radix cache for the shared prefix (unlike vLLM V1's prompt log-probs).
"""

from __future__ import annotations

from .base import ScoreRequest, ScoreResult, score_error
from .openai import OpenAIEngine, RequestRefused, ServerError


class SGLangEngine(OpenAIEngine):
    name = "sglang"

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        sequences = [self.chat.sequence(r) for r in requests]
        bodies = [
            {
                "input_ids": ids,
                "return_logprob": True,
                "logprob_start_len": positions[0] - 1,
                "sampling_params": {"max_new_tokens": 1, "temperature": 0.0},
            }
            for ids, positions in sequences
        ]
        replies = self._run("/generate", bodies, refusals=True)
        results = []
        for (ids, positions), reply in zip(sequences, replies):
            if isinstance(reply, RequestRefused):
                results.append(score_error(str(reply)))
                continue
            entries = reply["meta_info"]["input_token_logprobs"]  # [logprob, token_id, text] from logprob_start_len
            base = positions[0] - 1
            try:
                values = [float(entries[p - base][0]) for p in positions]
            except (IndexError, TypeError) as err:
                raise ServerError(f"{self.model}: unexpected /generate logprob layout ({err})") from None
            results.append(ScoreResult(values, len(ids) - base, len(ids)))
        return results
