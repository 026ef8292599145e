"""OpenAI-compatible request bodies and error objects.

Field types are strict (``"max_tokens": "10"`` is a 400, as in OpenAI's API, not silently
coerced); ``null`` means the default, as OpenAI's schema allows; unknown extra fields are
accepted and ignored, so newer clients keep working. ``top_k``, ``min_p`` and
``stop_token_ids`` are vLLM's sampling extensions.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator


class ApiError(Exception):
    """An HTTP error with an OpenAI-style body: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        type_: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}
        self._type = type_

    @property
    def type(self) -> str:
        if self._type is not None:
            return self._type
        return {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
            self.status, "invalid_request_error" if self.status < 500 else "server_error"
        )

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _positive_tokens(name: str, v: int | None) -> int | None:
    if v is not None and v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return v


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    max_tokens: int | None = Field(default=None)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stop: str | list[str] | None = None
    stream_options: dict[str, Any] | None = None
    ignore_eos: bool = False
    top_k: int | None = None  # -1, 0 or null: off
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    stop_token_ids: list[int] | None = None

    @field_validator("temperature", "top_p", "n", "stream", "ignore_eos", mode="before")
    @classmethod
    def _null_is_default(cls, v: Any, info: ValidationInfo) -> Any:
        return cls.model_fields[info.field_name].default if v is None else v

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, v: int | None) -> int | None:
        if v is not None and v < -1:
            raise ValueError(f"top_k must be -1 or 0 (off) or >= 1, got {v}")
        return v

    @field_validator("stop_token_ids")
    @classmethod
    def _stop_ids(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(t < 0 for t in v):
            raise ValueError("stop_token_ids must hold non-negative token ids")
        return v

    @field_validator("max_tokens")
    @classmethod
    def _positive(cls, v: int | None) -> int | None:
        return _positive_tokens("max_tokens", v)

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop must be a non-empty string or a list of at most 4 non-empty strings")
        return v

    def stop_strings(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))

    def output_limit(self) -> tuple[int | None, str]:
        """The requested output-token limit and the field it came from (named in errors)."""
        return self.max_tokens, "max_tokens"


class CompletionRequest(_Request):
    """``POST /v1/completions``: ``prompt`` is a string, a one-string list, or token ids."""

    prompt: str | list[str] | list[int]

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, v: Any) -> Any:
        # One clear message instead of one error per member of the union.
        if isinstance(v, str) or (isinstance(v, list) and len(v) == 1 and isinstance(v[0], str)):
            return v
        if isinstance(v, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in v):
            return v
        if isinstance(v, list) and v and all(isinstance(t, str) for t in v):
            raise ValueError("only one prompt per request is supported (send a string or a one-string list)")
        raise ValueError("prompt must be a string, a list holding one string, or a list of integer token ids")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart]

    @field_validator("content", mode="before")
    @classmethod
    def _content_shape(cls, v: Any) -> Any:
        if not isinstance(v, str | list):
            raise ValueError('content must be a string or a list of {"type": "text", "text": ...} parts')
        return v

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(_Request):
    """``POST /v1/chat/completions``; ``max_completion_tokens`` supersedes ``max_tokens`` (OpenAI)."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None

    @field_validator("max_completion_tokens")
    @classmethod
    def _positive_completion(cls, v: int | None) -> int | None:
        return _positive_tokens("max_completion_tokens", v)

    def output_limit(self) -> tuple[int | None, str]:
        mct, mt = self.max_completion_tokens, self.max_tokens
        if mct is not None and mt is not None and mct != mt:
            raise ApiError(
                400,
                f"max_tokens ({mt}) and max_completion_tokens ({mct}) disagree: send only "
                "max_completion_tokens (max_tokens is its deprecated alias)",
                param="max_completion_tokens",
                code="invalid_value",
            )
        return (mct, "max_completion_tokens") if mct is not None else (mt, "max_tokens")


#: Field names of all request models: any other string in a pydantic error location is an
#: internal union tag (``str``, ``list[int]``) that clients must not see in ``param``.
_FIELDS = frozenset(name for m in (CompletionRequest, ChatRequest, ChatMessage, TextPart) for name in m.model_fields)


def _param(loc: tuple[int | str, ...]) -> str | None:
    """``("messages", 0, "content", "str")`` → ``"messages[0].content"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _FIELDS:
            out += f".{part}" if out else part
    return out or None


def parse_body(raw: bytes, model: type[BaseModel]) -> Any:
    """Parse and validate a JSON body; any problem becomes one 400 naming the field."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        # The deepest error is the union member that matched best (a list of parts, not a string).
        err = max(exc.errors(), key=lambda e: len(e["loc"]))
        field = _param(err["loc"])
        if err["type"] == "value_error":  # our own validators: the message already says it all
            message = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        elif err["type"] == "missing":
            message = f"'{field}' is required"
        elif err["type"] == "json_invalid":  # JSON that Python accepts but strict JSON does not (lone surrogates)
            raise ApiError(400, f"request body is not valid JSON: {err['msg']}", code="invalid_json") from None
        else:
            value = err.get("input")
            shown = "{...}" if isinstance(value, dict) else json.dumps(value, default=str)[:80]
            message = f"invalid value for '{field}': {err['msg']} (got {shown})"
        raise ApiError(400, message, param=field, code="invalid_value") from None
