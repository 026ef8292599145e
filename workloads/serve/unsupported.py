"""OpenAI request parameters this server cannot honour: refused with a 400, never ignored.

A client that asks for log-probabilities, tools or a JSON schema and silently gets plain text
would misbehave downstream, so each such parameter is refused with ``code:
"unsupported_parameter"`` naming it. Neutral values (``null``, ``false``, ``0``, ``[]``, ``{}``,
``{"type": "text"}``, ``best_of: 1``, ``repetition_penalty: 1``) are accepted because SDKs send
them by default; ``logprobs: 0`` on completions is not neutral (OpenAI returns the chosen token's
log-probability). vLLM's sampling extensions are either implemented (``top_k``, ``min_p``,
``stop_token_ids``, see protocol.py) or listed here. Fields not listed here and not known to
OpenAI are still accepted and ignored (forward compatibility).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from workloads.serve.protocol import ApiError, ChatRequest, CompletionRequest


def _falsy(v: Any) -> bool:
    """``null``, ``false``, ``0``, ``""``, ``[]``, ``{}``: the SDK default of most parameters."""
    return not v


def _null(v: Any) -> bool:
    return v is None


def _null_or_false(v: Any) -> bool:
    return v is None or v is False


def _null_or_zero(v: Any) -> bool:
    return v is None or (v == 0 and not isinstance(v, bool))


def _choice_none(v: Any) -> bool:
    return v is None or v == "none"


def _text_format(v: Any) -> bool:
    return v is None or v == {"type": "text"}


def _one(v: Any) -> bool:
    return v is None or (v == 1 and not isinstance(v, bool))


_NO_LOGPROBS = "log-probabilities are not computed by this server"

#: parameter → (is the value neutral?, why it cannot be honoured). Shared by both endpoints.
_COMMON: dict[str, tuple[Callable[[Any], bool], str]] = {
    "top_logprobs": (_falsy, _NO_LOGPROBS),
    "logit_bias": (_falsy, "logit_bias is not implemented by the sampler"),
    "presence_penalty": (_null_or_zero, "presence_penalty is not implemented by the sampler"),
    "frequency_penalty": (_null_or_zero, "frequency_penalty is not implemented by the sampler"),
    "repetition_penalty": (_one, "repetition_penalty is not implemented by the sampler"),
    "min_tokens": (
        _null_or_zero,
        "min_tokens is not implemented by the sampler (it needs end-of-sequence logits masked)",
    ),
}
_COMPLETION_ONLY: dict[str, tuple[Callable[[Any], bool], str]] = {
    "logprobs": (_null, f"{_NO_LOGPROBS} (logprobs: 0 asks for the chosen token's)"),
    "echo": (_falsy, "echo (returning the prompt with the completion) is not supported"),
    "best_of": (_one, "best_of > 1 is not supported: one candidate is generated per request"),
    "suffix": (_falsy, "suffix (insertion) is not supported"),
    "max_completion_tokens": (
        _null,
        "max_completion_tokens is a chat-completions parameter: use max_tokens on /v1/completions",
    ),
}
_CHAT_ONLY: dict[str, tuple[Callable[[Any], bool], str]] = {
    "logprobs": (_null_or_false, _NO_LOGPROBS),
    "tools": (_falsy, "tool calling is not supported"),
    "tool_choice": (_choice_none, "tool calling is not supported"),
    "functions": (_falsy, "function calling is not supported"),
    "function_call": (_choice_none, "function calling is not supported"),
    "response_format": (_text_format, 'only response_format {"type": "text"} is supported'),
}


def reject_unsupported(body: CompletionRequest | ChatRequest) -> None:
    """Raise a 400 ``unsupported_parameter`` for the first parameter this server cannot honour."""
    chat = isinstance(body, ChatRequest)
    table = {**_COMMON, **(_CHAT_ONLY if chat else _COMPLETION_ONLY)}
    extra = body.model_extra or {}
    for name, (neutral, why) in table.items():
        if name in extra and not neutral(extra[name]):
            _refuse(name, f"{name}={_shown(extra[name])} is not supported: {why}")
    seed = extra.get("seed")
    if seed is not None and body.temperature > 0:
        _refuse(
            "seed",
            f"seed={_shown(seed)} cannot be honoured with temperature={body.temperature:g}: all requests share "
            "one sampling generator; drop seed, or use temperature 0 (greedy, deterministic)",
        )


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse(param: str, message: str) -> None:
    raise ApiError(400, message, param=param, code="unsupported_parameter")
