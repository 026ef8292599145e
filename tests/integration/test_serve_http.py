"""The real server process on loopback: official openai client, batching, overload, SIGTERM drain.

Each server is ``python -m workloads.serve`` in a subprocess on a free loopback port, stopped in
fixture teardown (SIGTERM, then SIGKILL if it hangs) whatever the test outcome.
"""

from __future__ import annotations

import concurrent.futures as cf
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny-random"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(*args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    port = _free_port()
    cmd = [sys.executable, "-m", "workloads.serve", "--model", MODEL, "--port", str(port), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"server exited early:\n{proc.stdout.read()}"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("server did not become healthy within 90 s")
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        proc.stdout.close()


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server("--max-batch", "8", "--api-key", "sk-test-12345678") as (url, _):
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="sk-test-12345678", max_retries=0, timeout=30)


def test_openai_client_lists_the_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_openai_client_completion(client: openai.OpenAI) -> None:
    out = client.completions.create(model=MODEL, prompt="The cluster", max_tokens=12, temperature=0)
    assert out.object == "text_completion" and out.choices[0].finish_reason in ("length", "stop")
    assert out.usage.prompt_tokens == len(b"The cluster") and 1 <= out.usage.completion_tokens <= 12
    again = client.completions.create(model=MODEL, prompt="The cluster", max_tokens=12, temperature=0)
    assert again.choices[0].text == out.choices[0].text  # greedy is deterministic


def test_openai_client_chat_and_streaming_agree(client: openai.OpenAI) -> None:
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    full = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=16, temperature=0)
    assert full.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=16, temperature=0, stream=True)
    pieces, reasons = [], []
    for chunk in stream:
        pieces.append(chunk.choices[0].delta.content or "")
        reasons.append(chunk.choices[0].finish_reason)
    assert "".join(pieces) == full.choices[0].message.content
    assert reasons[-1] == full.choices[0].finish_reason


def test_openai_client_streaming_completion(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model=MODEL, prompt="abc", max_tokens=20, temperature=0.7, stream=True, extra_body={"ignore_eos": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "length" and len(chunks) >= 2


def test_wrong_key_is_an_openai_authentication_error(server: str) -> None:
    bad = openai.OpenAI(base_url=f"{server}/v1", api_key="sk-wrong-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.completions.create(model=MODEL, prompt="x", max_tokens=2)


def test_concurrent_requests_are_batched(client: openai.OpenAI, server: str) -> None:
    def one(i: int) -> int:
        out = client.completions.create(
            model=MODEL, prompt=f"request {i}", max_tokens=64, extra_body={"ignore_eos": True}
        )
        return out.usage.completion_tokens

    with cf.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(8))) == [64] * 8
    assert _metric(server, "aidc_serve_peak_batch_size") >= 2
    assert _metric(server, "aidc_serve_ttft_seconds_count") >= 8


def test_overload_answers_only_200_or_429_and_admitted_requests_complete() -> None:
    body = {"model": MODEL, "prompt": "load", "max_tokens": 48, "ignore_eos": True}
    with running_server("--max-batch", "2", "--queue-size", "2") as (url, proc):
        rss_before = _rss_mib(proc.pid)
        with httpx.Client(timeout=60) as http, cf.ThreadPoolExecutor(16) as pool:
            # 16 at once against 2 slots + 2 queue places: 4x overload.
            resps = list(pool.map(lambda _: http.post(f"{url}/v1/completions", json=body), range(16)))
        codes = sorted(r.status_code for r in resps)
        assert set(codes) == {200, 429}, codes
        for r in resps:
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["type"] == "rate_limit_error"
            else:
                assert r.json()["usage"]["completion_tokens"] == 48
        assert proc.poll() is None and httpx.get(f"{url}/health").status_code == 200
        assert _rss_mib(proc.pid) - rss_before < 150, "memory grew under overload"
        assert _metric(url, "aidc_serve_queue_depth") == 0 and _metric(url, "aidc_serve_running_sequences") == 0


def test_sigterm_drains_in_flight_requests_then_exits_zero() -> None:
    body = {"model": MODEL, "prompt": "drain", "max_tokens": 400, "ignore_eos": True}
    with running_server("--max-batch", "4") as (url, proc):
        with httpx.Client(timeout=60) as http, cf.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(http.post, f"{url}/v1/completions", json=body) for _ in range(3)]
            deadline = time.monotonic() + 30
            while (running := _metric(url, "aidc_serve_running_sequences")) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert running == 3, "the three requests never ran together"
            proc.send_signal(signal.SIGTERM)  # 400 tokens each: ~2 s of decoding still ahead
            sent = time.monotonic()
            time.sleep(0.3)
            with pytest.raises(httpx.TransportError):  # the listening socket is closed
                httpx.post(f"{url}/v1/completions", json=body, timeout=5)
            resps = [f.result() for f in futures]
            finished = time.monotonic()
        assert [r.status_code for r in resps] == [200] * 3
        assert all(r.json()["usage"]["completion_tokens"] == 400 for r in resps)
        assert finished - sent > 0.3
        assert proc.wait(timeout=30) == 0


def test_openai_client_chat_honours_max_completion_tokens(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        max_completion_tokens=3,
        extra_body={"ignore_eos": True},
    )
    assert out.usage.completion_tokens == 3 and out.choices[0].finish_reason == "length"


def test_openai_client_gets_unsupported_parameter_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL, prompt="x", max_tokens=2, logprobs=2)
    assert caught.value.body["param"] == "logprobs" and caught.value.body["code"] == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"}
        )
    assert caught.value.body["param"] == "response_format"


def test_large_bodies_get_413_by_length_and_while_streaming(server: str) -> None:
    headers = {"Authorization": "Bearer sk-test-12345678"}
    big = b'{"model": "tiny-random", "prompt": "' + b"x" * (5 << 20) + b'"}'

    def chunked():
        for i in range(0, len(big), 64 << 10):
            yield big[i : i + (64 << 10)]

    with httpx.Client(timeout=30, headers=headers) as http:
        for content in (big, chunked()):
            resp = http.post(f"{server}/v1/completions", content=content)
            assert resp.status_code == 413, resp.text
            err = resp.json()["error"]
            assert err["code"] == "request_too_large" and str(1 << 20) in err["message"]
        assert http.post(f"{server}/v1/completions", json={"model": MODEL, "prompt": "a", "max_tokens": 1}).is_success


def test_unknown_path_is_openai_shaped_and_not_a_metric_label(server: str) -> None:
    resp = httpx.get(f"{server}/v1/nope", timeout=5)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found" and resp.json()["error"]["type"] == "invalid_request_error"
    text = httpx.get(f"{server}/metrics", timeout=5).text
    assert 'endpoint="/v1/nope"' not in text
    assert re.search(r'^aidc_serve_requests_total\{endpoint="other",status="404"\} [1-9]', text, re.M)
