"""OpenAI parameters in-process: max_completion_tokens honoured, unsupported ones refused, clean errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from fastapi.testclient import TestClient

from workloads.serve.config import EngineConfig, ServerConfig
from workloads.serve.server import create_app

OK = {"model": "tiny-random", "prompt": "hello", "max_tokens": 4}
CHAT = {"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    engine = EngineConfig(model="tiny-random", max_batch=4, max_model_len=256)
    with TestClient(create_app(ServerConfig(engine=engine, queue_size=8))) as c:
        yield c


def _error(resp, status: int, param: str | None, code: str) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert (err["param"], err["code"]) == (param, code), err
    return err


def test_chat_max_completion_tokens_limits_the_output(client: TestClient) -> None:
    body = {**CHAT, "max_completion_tokens": 3, "ignore_eos": True}
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["usage"]["completion_tokens"] == 3 and out["choices"][0]["finish_reason"] == "length"


def test_chat_max_tokens_and_max_completion_tokens_equal_is_fine(client: TestClient) -> None:
    body = {**CHAT, "max_tokens": 2, "max_completion_tokens": 2, "ignore_eos": True}
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200 and resp.json()["usage"]["completion_tokens"] == 2


def test_chat_max_tokens_and_max_completion_tokens_disagreeing_is_a_400(client: TestClient) -> None:
    body = {**CHAT, "max_tokens": 2, "max_completion_tokens": 5}
    err = _error(client.post("/v1/chat/completions", json=body), 400, "max_completion_tokens", "invalid_value")
    assert "max_tokens" in err["message"] and "max_completion_tokens" in err["message"]


@pytest.mark.parametrize(
    ("value", "code"),
    [(0, "invalid_value"), (-1, "invalid_value"), ("3", "invalid_value"), (10_000, "context_length_exceeded")],
)
def test_chat_max_completion_tokens_is_validated_like_max_tokens(client: TestClient, value, code) -> None:
    err = _error(
        client.post("/v1/chat/completions", json={**CHAT, "max_completion_tokens": value}),
        400,
        "max_completion_tokens",
        code,
    )
    assert "max_completion_tokens" in err["message"] and "max_tokens=" not in err["message"]


@pytest.mark.parametrize(
    ("path", "extra", "param"),
    [
        ("/v1/completions", {"logprobs": 2}, "logprobs"),
        ("/v1/completions", {"echo": True}, "echo"),
        ("/v1/completions", {"best_of": 3}, "best_of"),
        ("/v1/completions", {"suffix": " end"}, "suffix"),
        ("/v1/completions", {"logit_bias": {"50": 10}}, "logit_bias"),
        ("/v1/completions", {"seed": 7}, "seed"),  # default temperature is 1
        ("/v1/completions", {"seed": 7, "temperature": 0.5}, "seed"),
        ("/v1/completions", {"presence_penalty": 0.5}, "presence_penalty"),
        ("/v1/completions", {"max_completion_tokens": 3}, "max_completion_tokens"),
        ("/v1/chat/completions", {"logprobs": True}, "logprobs"),
        ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
        ("/v1/chat/completions", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ("/v1/chat/completions", {"tool_choice": "required"}, "tool_choice"),
        ("/v1/chat/completions", {"functions": [{"name": "f"}]}, "functions"),
        ("/v1/chat/completions", {"function_call": "auto"}, "function_call"),
        ("/v1/chat/completions", {"response_format": {"type": "json_object"}}, "response_format"),
        ("/v1/chat/completions", {"logit_bias": {"50": -100}}, "logit_bias"),
        ("/v1/chat/completions", {"seed": 1, "temperature": 0.8}, "seed"),
        ("/v1/chat/completions", {"frequency_penalty": -1.0}, "frequency_penalty"),
        ("/v1/completions", {"logprobs": 0}, "logprobs"),  # OpenAI: the chosen token's log-probability
        ("/v1/completions", {"repetition_penalty": 1.2}, "repetition_penalty"),
        ("/v1/chat/completions", {"repetition_penalty": 0.8}, "repetition_penalty"),
        ("/v1/completions", {"min_tokens": 2}, "min_tokens"),
        ("/v1/chat/completions", {"min_tokens": 1}, "min_tokens"),
    ],
)
def test_unsupported_parameters_are_refused_by_name(client: TestClient, path, extra, param) -> None:
    base = OK if path == "/v1/completions" else {**CHAT, "max_tokens": 4}
    err = _error(client.post(path, json={**base, **extra}), 400, param, "unsupported_parameter")
    assert param in err["message"]


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/completions", {"logprobs": None, "echo": False, "best_of": 1, "suffix": None, "logit_bias": {}}),
        ("/v1/completions", {"logprobs": None, "seed": 3, "temperature": 0}),
        ("/v1/completions", {"presence_penalty": 0, "frequency_penalty": 0.0, "user": "u1", "x_future": 1}),
        ("/v1/chat/completions", {"logprobs": False, "top_logprobs": None, "tools": [], "tool_choice": None}),
        ("/v1/chat/completions", {"response_format": {"type": "text"}, "logit_bias": None, "seed": None}),
        ("/v1/chat/completions", {"functions": None, "function_call": "none", "seed": 9, "temperature": 0}),
    ],
)
def test_neutral_values_and_unknown_fields_are_accepted(client: TestClient, path, extra) -> None:
    base = OK if path == "/v1/completions" else {**CHAT, "max_tokens": 4}
    resp = client.post(path, json={**base, **extra})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    ("path", "body", "param", "message"),
    [
        ("/v1/completions", {**OK, "max_tokens": -1}, "max_tokens", "max_tokens must be >= 1, got -1"),
        ("/v1/completions", {**OK, "prompt": 5}, "prompt", None),
        ("/v1/completions", {**OK, "prompt": [1, "a"]}, "prompt", None),
        ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": 5}]}, "messages[0].content", None),
        (
            "/v1/chat/completions",
            {**CHAT, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].type",
            None,
        ),
        ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user"}]}, "messages[0].content", None),
    ],
)
def test_validation_errors_name_the_field_cleanly(client: TestClient, path, body, param, message) -> None:
    err = _error(client.post(path, json=body), 400, param, "invalid_value")
    if message is not None:
        assert err["message"] == message
    assert "Value error" not in err["message"] and ".str" not in err["message"]
    assert "list[" not in err["message"] and "function-" not in err["message"]


@pytest.mark.parametrize("prompt", ["", []])
def test_empty_prompt_is_invalid_value_not_context_length(client: TestClient, prompt) -> None:
    _error(client.post("/v1/completions", json={**OK, "prompt": prompt}), 400, "prompt", "invalid_value")


def test_out_of_vocabulary_token_ids_are_invalid_value(client: TestClient) -> None:
    _error(client.post("/v1/completions", json={**OK, "prompt": [1, 99_999]}), 400, "prompt", "invalid_value")


def test_prompt_too_long_is_context_length_exceeded(client: TestClient) -> None:
    _error(client.post("/v1/completions", json={**OK, "prompt": "x" * 300}), 400, "prompt", "context_length_exceeded")


def test_json_that_only_python_accepts_is_a_400_not_a_500(client: TestClient) -> None:
    resp = client.post("/v1/completions", content=b'{"model": "tiny-random", "prompt": "\\ud800"}')
    _error(resp, 400, None, "invalid_json")


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize("field", ["temperature", "top_p", "n", "stream", "ignore_eos"])
def test_null_means_the_default(client: TestClient, path: str, field: str) -> None:
    base = OK if path == "/v1/completions" else {**CHAT, "max_tokens": 4}
    resp = client.post(path, json={**base, field: None})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["finish_reason"] in ("stop", "length")  # not a stream


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/completions", {"top_k": -1, "min_p": 0, "repetition_penalty": 1, "min_tokens": 0, "stop_token_ids": []}),
        ("/v1/completions", {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0, "min_tokens": None}),
        ("/v1/chat/completions", {"top_k": None, "min_p": None, "repetition_penalty": None, "stop_token_ids": None}),
        ("/v1/chat/completions", {"top_k": 40, "min_p": 0.05, "stop_token_ids": [3], "logprobs": None}),
    ],
)
def test_vllm_sampling_extensions_neutral_or_supported_are_accepted(client: TestClient, path, extra) -> None:
    base = OK if path == "/v1/completions" else {**CHAT, "max_tokens": 4}
    assert client.post(path, json={**base, **extra}).status_code == 200


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"top_k": -2}, "top_k"),
        ({"top_k": 1.5}, "top_k"),
        ({"top_k": "3"}, "top_k"),
        ({"min_p": 1.5}, "min_p"),
        ({"min_p": -0.1}, "min_p"),
        ({"stop_token_ids": [-1]}, "stop_token_ids"),
        ({"stop_token_ids": "5"}, "stop_token_ids"),
        ({"stop_token_ids": [True]}, "stop_token_ids[0]"),
        ({"temperature": "hot"}, "temperature"),
    ],
)
def test_bad_sampling_values_name_the_field(client: TestClient, extra, param) -> None:
    _error(client.post("/v1/completions", json={**OK, **extra}), 400, param, "invalid_value")


def _greedy_ids(client: TestClient, prompt: list[int], n: int) -> list[int]:
    hf = client.app.state.serve.engine.hf_model
    x = torch.tensor([prompt])
    out = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False, min_new_tokens=n)
    return out[0, len(prompt) :].tolist()


def test_top_k_and_stop_token_ids_are_honoured(client: TestClient) -> None:
    prompt = [7, 300, 42, 9, 120]
    base = {**OK, "prompt": prompt, "max_tokens": 8, "ignore_eos": True}
    greedy = client.post("/v1/completions", json={**base, "temperature": 0}).json()["choices"][0]["text"]
    hot = client.post("/v1/completions", json={**base, "temperature": 1.5, "top_k": 1}).json()
    assert hot["choices"][0]["text"] == greedy  # top_k=1 leaves the argmax only
    ids = _greedy_ids(client, prompt, 8)
    stop = next(t for i, t in enumerate(ids) if i >= 1 and t not in ids[:i])
    out = client.post("/v1/completions", json={**base, "temperature": 0, "stop_token_ids": [stop]}).json()
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] == ids.index(stop)


def test_default_max_tokens_shrinks_to_the_room_the_prompt_leaves(client: TestClient) -> None:
    body = {"model": "tiny-random", "prompt": "x" * 250, "ignore_eos": True}  # context 256, default 16
    resp = client.post("/v1/completions", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["completion_tokens"] == 6
    assert resp.json()["choices"][0]["finish_reason"] == "length"
    # The client's own value is still checked, and a prompt that leaves no room is still a 400.
    _error(
        client.post("/v1/completions", json={**body, "max_tokens": 16}), 400, "max_tokens", "context_length_exceeded"
    )
    _error(client.post("/v1/completions", json={**body, "prompt": "x" * 256}), 400, "prompt", "context_length_exceeded")
