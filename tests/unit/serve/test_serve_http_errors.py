"""HTTP contract in-process (FastAPI TestClient): OpenAI-style 4xx bodies, auth, drain, SSE shape."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from workloads.serve.config import EngineConfig, ServerConfig
from workloads.serve.guards import warn_if_exposed
from workloads.serve.server import create_app

KEY = "test-key-123456"
OK = {"model": "tiny-random", "prompt": "hello", "max_tokens": 4}
CHAT = {"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    engine = EngineConfig(model="tiny-random", max_batch=4, max_model_len=64)
    app = create_app(ServerConfig(engine=engine, api_key=KEY, queue_size=8))
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


def _error(resp, status: int, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param
    return err


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/completions", b"{not json", 400, None),
        ("/v1/completions", b"[1, 2]", 400, None),
        ("/v1/completions", {**OK, "model": "gpt-9"}, 404, "model"),
        ("/v1/completions", {**OK, "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/completions", {**OK, "max_tokens": -3}, 400, "max_tokens"),
        ("/v1/completions", {**OK, "max_tokens": 10_000}, 400, "max_tokens"),
        ("/v1/completions", {**OK, "max_tokens": "4"}, 400, "max_tokens"),
        ("/v1/completions", {**OK, "prompt": "x" * 200}, 400, "prompt"),
        ("/v1/completions", {**OK, "prompt": 5}, 400, None),
        ("/v1/completions", {**OK, "prompt": ""}, 400, "prompt"),
        ("/v1/completions", {**OK, "temperature": "hot"}, 400, "temperature"),
        ("/v1/completions", {**OK, "temperature": 3.0}, 400, "temperature"),
        ("/v1/completions", {**OK, "top_p": 0}, 400, "top_p"),
        ("/v1/completions", {**OK, "stream": "yes"}, 400, "stream"),
        ("/v1/completions", {**OK, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
        ("/v1/completions", {**OK, "n": 2}, 400, "n"),
        ("/v1/completions", {"prompt": "hi"}, 400, "model"),
        ("/v1/chat/completions", {**CHAT, "messages": []}, 400, "messages"),
        ("/v1/chat/completions", {**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, 400, None),
        ("/v1/chat/completions", {**CHAT, "messages": "hi"}, 400, "messages"),
    ],
)
def test_malformed_requests_get_4xx_with_openai_error_body(client: TestClient, path, body, status, param) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    err = _error(client.post(path, content=data), status, param)
    assert err["type"] in ("invalid_request_error", "not_found_error")


def test_server_still_serves_after_bad_input(client: TestClient) -> None:
    resp = client.post("/v1/completions", json=OK)
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "text_completion" and body["usage"]["completion_tokens"] >= 1
    assert body["usage"]["prompt_tokens"] == len(b"hello")


def test_bearer_token_is_required_when_configured(client: TestClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-key-000"}):
        _error(client.post("/v1/completions", json=OK, headers=headers), 401)
    assert client.get("/v1/models", headers={"Authorization": ""}).status_code == 401
    assert client.get("/health", headers={"Authorization": ""}).status_code == 200


def test_chat_stream_is_sse_with_done_and_usage(client: TestClient) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: ") :] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] in ("length", "stop")
    assert chunks[-1]["usage"]["completion_tokens"] >= 1


def test_draining_refuses_new_work_and_fails_health(client: TestClient) -> None:
    state = client.app.state.serve
    state.draining = True
    try:
        _error(client.post("/v1/completions", json=OK), 503)
        assert client.get("/health").status_code == 503
    finally:
        state.draining = False
    assert client.get("/health").status_code == 200


def test_request_timeout_answers_504_and_frees_the_slot() -> None:
    engine = EngineConfig(model="tiny-random", max_batch=2, max_model_len=512)
    app = create_app(ServerConfig(engine=engine, request_timeout_s=0.05))
    with TestClient(app) as c:
        resp = c.post("/v1/completions", json={**OK, "max_tokens": 500, "ignore_eos": True})
        err = _error(resp, 504)
        assert err["code"] == "timeout"
        serve = app.state.serve
        for _ in range(100):  # the abort is applied by the engine thread at its next step
            if serve.engine.num_running == 0:
                break
            time.sleep(0.02)
        assert serve.engine.num_running == 0


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nope", 404, "not_found"),
        ("POST", "/nope", 404, "not_found"),
        ("GET", "/v1/completions", 405, "method_not_allowed"),
        ("DELETE", "/v1/models", 405, "method_not_allowed"),
    ],
)
def test_unknown_paths_and_methods_get_openai_error_bodies(client: TestClient, method, path, status, code) -> None:
    resp = client.request(method, path)
    err = _error(resp, status)
    assert "detail" not in resp.json()
    assert (err["type"], err["code"]) == ("invalid_request_error", code)
    assert path in err["message"]
    if status == 405:
        assert resp.headers["allow"]


def test_metrics_label_by_route_template_not_raw_path(client: TestClient) -> None:
    for path in ("/v1/nope", "/v1/nope2", "/v1/completions/x/y"):
        assert client.get(path).status_code == 404
    assert client.get("/v1/completions").status_code == 405
    text = client.get("/metrics").text
    assert 'endpoint="/v1/nope"' not in text and 'endpoint="/v1/completions/x/y"' not in text
    counts = re.findall(r'^aidc_serve_requests_total\{endpoint="([^"]*)",status="(\d+)"\} (\S+)$', text, re.M)
    by_label = {(e, s): float(v) for e, s, v in counts}
    assert by_label[("other", "404")] >= 3
    assert by_label[("/v1/completions", "405")] >= 1
    assert {e for e, _ in by_label} <= {"other", "/v1/completions", "/v1/chat/completions", "/v1/models"}


def _limited_client(limit: int) -> TestClient:
    engine = EngineConfig(model="tiny-random", max_batch=2, max_model_len=64)
    return TestClient(create_app(ServerConfig(engine=engine, max_request_bytes=limit)))


def test_oversized_body_is_refused_with_413_before_parsing() -> None:
    with _limited_client(4096) as c:
        big = json.dumps({**OK, "prompt": "x" * 10_000}).encode()
        for path in ("/v1/completions", "/v1/chat/completions"):
            err = _error(c.post(path, content=big), 413)
            assert err["code"] == "request_too_large" and "4096" in err["message"]
        # not JSON at all: still 413 (the size is checked before the body is parsed)
        err = _error(c.post("/v1/completions", content=b"{" * 5000), 413)
        assert str(5000) in err["message"]
        assert c.post("/v1/completions", json=OK).status_code == 200  # under the limit: served


def test_chunked_body_without_content_length_is_capped_while_reading() -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "tiny-random", "prompt": "'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"}'

    with _limited_client(4096) as c:
        resp = c.post("/v1/completions", content=chunks())
        assert "content-length" not in {k.lower() for k in resp.request.headers}
        err = _error(resp, 413)
        assert err["code"] == "request_too_large"


def test_max_request_bytes_is_validated_and_on_the_cli() -> None:
    from workloads.serve.__main__ import config_from_args

    assert ServerConfig().max_request_bytes == 1 << 20
    assert config_from_args(["--max-request-bytes", "2048"]).max_request_bytes == 2048
    with pytest.raises(ValueError, match="max_request_bytes=10 is invalid"):
        ServerConfig(max_request_bytes=10)


@pytest.mark.parametrize(
    ("host", "key", "warned"),
    [
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("10.1.2.3", None, True),
        ("myhost.internal", None, True),
        ("0.0.0.0", "k" * 12, False),
        ("127.0.0.1", None, False),
        ("::1", None, False),
        ("localhost", None, False),
    ],
)
def test_exposed_bind_without_api_key_logs_a_warning(host, key, warned, caplog) -> None:
    log = logging.getLogger("aidc.serve.test")
    with caplog.at_level(logging.WARNING, logger=log.name):
        assert warn_if_exposed(host, key, log) is warned
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == int(warned)
    if warned:
        assert host in warnings[0].getMessage() and "--api-key" in warnings[0].getMessage()


def test_serve_warns_at_startup_when_exposed_without_key(monkeypatch, caplog) -> None:
    from workloads.serve import server

    started, app = [], FastAPI()
    app.state.serve = None  # no model is loaded: only the startup path up to run() is exercised
    monkeypatch.setattr(server, "create_app", lambda config: app)
    monkeypatch.setattr(server.DrainingServer, "__init__", lambda self, uv, state: None)
    monkeypatch.setattr(server.DrainingServer, "run", lambda self: started.append(True))
    with caplog.at_level(logging.WARNING, logger="aidc.serve"):
        server.serve(ServerConfig(host="0.0.0.0"))
    assert started == [True]
    assert any("0.0.0.0" in r.getMessage() and "API key" in r.getMessage() for r in caplog.records)
