"""Failure paths of the server: unscraped metrics, clients that disconnect, an engine that fails."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from workloads.serve.config import EngineConfig, ServerConfig
from workloads.serve.metrics import ServeMetrics
from workloads.serve.server import create_app

OK = {"model": "tiny-random", "prompt": "hello", "max_tokens": 4, "ignore_eos": True}
CHAT = {"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def test_tokens_per_second_window_stays_bounded_without_scrapes() -> None:
    now = [0.0]
    metrics = ServeMetrics(lambda: 0, lambda: 0, window_s=10.0, clock=lambda: now[0])
    step = 1 / 128  # exact in binary: the window holds exactly 10 * 128 + 1 steps
    for _ in range(50_000):
        now[0] += step
        metrics.on_step(4, 2)
    assert len(metrics._recent) == 1281  # not 50_000: nothing scraped /metrics meanwhile
    assert metrics.registry.get_sample_value("aidc_serve_tokens_per_second") == 1281 * 2 / 10
    now[0] += 5.0  # half the window later only the newest half of the steps counts
    assert metrics.registry.get_sample_value("aidc_serve_tokens_per_second") == 641 * 2 / 10


@contextmanager
def _uvicorn(app: FastAPI) -> Iterator[str]:
    """A real uvicorn server on a free loopback port in a thread (real sockets, real disconnects)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_non_streaming_client_disconnect_frees_the_slot() -> None:
    app = create_app(ServerConfig(engine=EngineConfig(model="tiny-random", max_batch=1, max_model_len=512)))
    runner = app.state.serve.engine.runner
    decode = runner.decode

    def slow_decode(*args, **kwargs):  # 400 tokens take ~8 s: far longer than the check below allows
        time.sleep(0.02)
        return decode(*args, **kwargs)

    runner.decode = slow_decode
    body = json.dumps({**OK, "max_tokens": 400}).encode()
    head = (
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with _uvicorn(app) as url:
        sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        sock.sendall(head.encode() + body)
        deadline = time.monotonic() + 10
        while _metric(url, "aidc_serve_running_sequences") < 1:
            assert time.monotonic() < deadline, "the request never got a slot"
            time.sleep(0.05)
        sock.close()
        closed = time.monotonic()
        while _metric(url, "aidc_serve_running_sequences") > 0:
            assert time.monotonic() - closed < 2.0, "the slot stayed busy after the client left"
            time.sleep(0.05)
        status = 'aidc_serve_requests_total{endpoint="/v1/completions",status="499"}'
        assert _metric(url, status) == 1
        assert httpx.post(f"{url}/v1/completions", json=OK, timeout=30).status_code == 200  # the slot serves again


@pytest.fixture
def failing() -> Iterator[TestClient]:
    engine = EngineConfig(model="tiny-random", max_batch=2, max_model_len=64)
    with TestClient(create_app(ServerConfig(engine=engine, max_failed_steps=3))) as client:
        yield client


def _sticky_cuda_error(*args, **kwargs):
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_engine_failure_is_an_error_event_and_turns_health_503_until_a_step_succeeds(failing, monkeypatch) -> None:
    runner = failing.app.state.serve.engine.runner
    monkeypatch.setattr(runner, "prefill", _sticky_cuda_error)
    monkeypatch.setattr(runner, "decode", _sticky_cuda_error)

    with failing.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.status_code == 200
        events = [line[len("data: ") :] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    *chunks, error = [json.loads(e) for e in events[:-1]]
    assert error["error"]["type"] == "server_error" and error["error"]["code"] == "engine_error"
    assert error["error"]["message"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)  # "error" is no OpenAI finish_reason

    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=failing, max_retries=0)
    with pytest.raises(openai.APIError, match="engine failed"):  # the official client raises, not returns
        list(sdk.completions.create(model="tiny-random", prompt="hello", max_tokens=4, stream=True))
    assert failing.get("/health").status_code == 200  # two failed steps: below max_failed_steps

    resp = failing.post("/v1/completions", json=OK)
    assert resp.status_code == 500 and resp.json()["error"]["type"] == "server_error"
    health = failing.get("/health")
    assert health.status_code == 503 and health.json() == {"status": "engine_failing", "failed_steps": 3}

    monkeypatch.undo()  # the fault clears: the next successful step makes the server healthy again
    assert failing.post("/v1/completions", json=OK).status_code == 200
    assert failing.get("/health").status_code == 200


def test_health_is_503_when_the_engine_loop_is_not_running(failing) -> None:
    engine = failing.app.state.serve.engine
    assert failing.get("/health").status_code == 200
    engine.shutdown()  # what a loop thread that died looks like to the server
    try:
        health = failing.get("/health")
        assert health.status_code == 503 and health.json() == {"status": "engine_stopped"}
    finally:
        engine.start()
    assert failing.get("/health").status_code == 200


def test_max_failed_steps_is_validated_and_on_the_cli() -> None:
    from workloads.serve.__main__ import config_from_args

    assert ServerConfig().max_failed_steps == 3
    assert config_from_args(["--max-failed-steps", "5"]).max_failed_steps == 5
    with pytest.raises(ValueError, match="max_failed_steps=0 is invalid"):
        ServerConfig(max_failed_steps=0)
