"""OpenAI-compatible HTTP server (FastAPI + uvicorn) in front of the engine.

Backpressure: at most ``queue_size`` requests wait for a KV-cache slot; more get 429 with
``Retry-After``. On SIGTERM the server stops accepting connections, answers 503 to requests on
open connections, lets in-flight requests finish (up to ``drain_timeout_s``) and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from workloads.serve.config import ServerConfig
from workloads.serve.engine import Engine, EngineOverloaded, RequestError
from workloads.serve.guards import UNMATCHED, endpoint_label, install_http_error_handler, read_body, warn_if_exposed
from workloads.serve.metrics import ServeMetrics
from workloads.serve.protocol import ApiError, ChatRequest, CompletionRequest, parse_body
from workloads.serve.sequence import Delta, SamplingParams
from workloads.serve.unsupported import reject_unsupported

log = logging.getLogger("aidc.serve")
#: Status logged for a request whose client went away before the answer (nginx's convention).
CLIENT_CLOSED = 499


class _State:
    def __init__(self, config: ServerConfig, engine: Engine, metrics: ServeMetrics) -> None:
        self.config, self.engine, self.metrics = config, engine, metrics
        self.draining = False


def create_app(config: ServerConfig, engine: Engine | None = None) -> FastAPI:
    """Build the app; the engine (model load + KV cache) is created here unless given."""
    engine = engine or Engine(config.engine, max_waiting=config.queue_size)
    engine.max_waiting = config.queue_size
    metrics = ServeMetrics(lambda: engine.num_waiting, lambda: engine.num_running)
    engine.observer = metrics
    state = _State(config, engine, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.shutdown()

    app = FastAPI(title="aidc serve", lifespan=lifespan)
    app.state.serve = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    install_http_error_handler(app)

    @app.middleware("http")
    async def _count(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        endpoint = endpoint_label(request)  # the route template: bounded label values
        if endpoint.startswith("/v1/") or endpoint == UNMATCHED:
            metrics.requests.labels(endpoint, str(response.status_code)).inc()
        return response

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        # 503 lets the liveness probe restart a pod whose engine cannot serve (e.g. a sticky CUDA error)
        if not engine.alive:
            return JSONResponse({"status": "engine_stopped"}, status_code=503)
        if engine.failed_steps >= config.max_failed_steps:
            return JSONResponse({"status": "engine_failing", "failed_steps": engine.failed_steps}, status_code=503)
        return JSONResponse({"status": "ok", "model": engine.model_name})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        _check(state, request)
        card = {"id": engine.model_name, "object": "model", "created": 0, "owned_by": "aidc"}
        return JSONResponse({"object": "list", "data": [card]})

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        _check(state, request)
        raw = await read_body(request, config.max_request_bytes)  # before any parsing
        body: CompletionRequest = parse_body(raw, CompletionRequest)
        _check_model(engine, body.model)
        reject_unsupported(body)
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            prompt = prompt[0]
        # A raw prompt gets the tokenizer's BOS (Llama's <s>), as tokenizer(prompt) and vLLM give it.
        ids = engine.tokenizer.encode(prompt, add_special_tokens=True) if isinstance(prompt, str) else list(prompt)
        params = _params(engine, body, len(ids), default_max=16)
        return await _generate(state, request, body, ids, params, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        _check(state, request)
        raw = await read_body(request, config.max_request_bytes)
        body: ChatRequest = parse_body(raw, ChatRequest)
        _check_model(engine, body.model)
        reject_unsupported(body)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        ids = engine.tokenizer.chat_ids(messages)
        params = _params(engine, body, len(ids), default_max=None)
        return await _generate(state, request, body, ids, params, chat=True)

    return app


def _check(state: _State, request: Request) -> None:
    """Refuse work while draining; enforce the bearer token when one is configured."""
    if state.draining:
        raise ApiError(503, "server is shutting down", code="draining", headers={"Connection": "close"})
    key = state.config.api_key
    if key is not None:
        got = request.headers.get("authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {key}".encode()):
            raise ApiError(401, "missing or invalid bearer token in the Authorization header", code="invalid_api_key")


def _check_model(engine: Engine, model: str) -> None:
    if model != engine.model_name:
        raise ApiError(
            404,
            f"model '{model}' does not exist: this server serves '{engine.model_name}'",
            param="model",
            code="model_not_found",
        )


def _params(engine: Engine, body: Any, prompt_len: int, default_max: int | None) -> SamplingParams:
    limit, _ = body.output_limit()
    # Without a client limit, the default never exceeds the room the prompt leaves: a 400 about a
    # field the client did not send would be a puzzle. (No room at all is still a 400 on prompt.)
    room = max(1, engine.max_model_len - prompt_len)
    max_tokens = limit or min(default_max or room, room)
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=max(0, body.top_k or 0),
        min_p=body.min_p or 0.0,
        stop=body.stop_strings(),
        stop_token_ids=frozenset(body.stop_token_ids or ()),
        ignore_eos=body.ignore_eos,
    )


async def _generate(
    state: _State, request: Request, body: Any, ids: list[int], params: SamplingParams, *, chat: bool
) -> Response:
    engine, loop, queue = state.engine, asyncio.get_running_loop(), asyncio.Queue[Delta]()

    def sink(delta: Delta) -> None:  # engine thread → event loop
        with contextlib.suppress(RuntimeError):  # loop closed: the client is gone anyway
            loop.call_soon_threadsafe(queue.put_nowait, delta)

    if not ids:
        raise ApiError(400, "prompt is empty: it must hold at least one token", param="prompt", code="invalid_value")
    try:
        seq = engine.submit(ids, params, sink)
    except RequestError as exc:
        raise _request_error(exc, body, len(ids), engine.max_model_len) from None
    except EngineOverloaded:
        retry = str(state.config.retry_after_s)
        raise ApiError(
            429,
            "server is at capacity: too many requests are waiting; retry later",
            code="overloaded",
            headers={"Retry-After": retry},
        ) from None
    rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    deadline = time.monotonic() + state.config.request_timeout_s
    shape = _Shape(rid, engine.model_name, chat, len(ids))
    if body.stream:
        return StreamingResponse(
            _stream(engine, seq, queue, deadline, shape, body.include_usage()),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # proxies must not buffer
        )
    text, reason = [], None
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        while reason is None:
            delta = await _next_or_gone(queue, gone, deadline)
            if delta is None:  # nobody will read the answer: free the slot now, not at max_tokens
                engine.abort(seq)
                return Response(status_code=CLIENT_CLOSED)
            text.append(delta.text)
            reason = delta.finish_reason
    except TimeoutError:
        engine.abort(seq)
        raise ApiError(504, f"request timed out after {state.config.request_timeout_s:g} s", code="timeout") from None
    except asyncio.CancelledError:
        engine.abort(seq)
        raise
    finally:
        gone.cancel()
    if reason == "error":
        raise _engine_error()
    return JSONResponse(shape.full("".join(text), reason, len(seq.out_ids)))


def _request_error(exc: RequestError, body: Any, prompt_len: int, max_model_len: int) -> ApiError:
    """Engine refusal → 400; only a prompt or output that does not fit is a context-length error."""
    param = exc.param
    if param == "max_tokens":
        param = body.output_limit()[1]  # the field the client actually sent
        message = str(exc).replace("max_tokens", param)
        return ApiError(400, message, param=param, code="context_length_exceeded")
    too_long = param == "prompt" and prompt_len >= max_model_len
    return ApiError(400, str(exc), param=param, code="context_length_exceeded" if too_long else "invalid_value")


async def _next(queue: asyncio.Queue[Delta], deadline: float) -> Delta:
    return await asyncio.wait_for(queue.get(), timeout=max(0.0, deadline - time.monotonic()))


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects. uvicorn does not cancel a non-streaming handler whose
    client left, and ``request.is_disconnected()`` never turns true behind the counting middleware
    (a BaseHTTPMiddleware): waiting on ``receive`` is what sees the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass  # the body was read already: nothing but the disconnect is left to arrive


async def _next_or_gone(queue: asyncio.Queue[Delta], gone: asyncio.Future[None], deadline: float) -> Delta | None:
    """The next delta; None once the client has disconnected; TimeoutError at the deadline."""
    get = asyncio.ensure_future(queue.get())
    try:
        timeout = max(0.0, deadline - time.monotonic())
        await asyncio.wait((get, gone), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return get.result()
        if gone.done():
            return None
        raise TimeoutError
    finally:
        get.cancel()  # no-op when done; a cancelled Queue.get leaves its item queued


def _engine_error() -> ApiError:
    return ApiError(500, "the engine failed while generating this request", code="engine_error")


async def _stream(
    engine: Engine, seq: Any, queue: asyncio.Queue[Delta], deadline: float, shape: _Shape, usage: bool
) -> AsyncIterator[str]:
    try:
        if shape.chat:
            yield _sse(shape.chunk({"role": "assistant", "content": ""}, None))
        while True:
            try:
                delta = await _next(queue, deadline)
            except TimeoutError:
                yield _sse(ApiError(504, "request timed out", code="timeout").body())
                break
            if delta.finish_reason == "error":  # not an OpenAI finish_reason: an error event, as OpenAI sends
                yield _sse(_engine_error().body())
                break
            reason = delta.finish_reason if delta.finish_reason != "abort" else "stop"
            if delta.text or reason:
                yield _sse(shape.chunk(delta.text, reason))
            if delta.finish_reason is not None:
                if usage:
                    yield _sse(shape.usage_chunk(len(seq.out_ids)))
                break
        yield "data: [DONE]\n\n"
    finally:  # normal end, timeout or client disconnect: never leave the slot busy
        if not seq.finished:
            engine.abort(seq)


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj)}\n\n"


class _Shape:
    """Builds OpenAI response objects for one request (completion or chat, full or chunk)."""

    def __init__(self, rid: str, model: str, chat: bool, prompt_tokens: int) -> None:
        self.rid, self.model, self.chat, self.prompt_tokens = rid, model, chat, prompt_tokens
        self.created = int(time.time())

    def _head(self, chunk: bool) -> dict[str, Any]:
        kind = ("chat.completion" if self.chat else "text_completion") + (".chunk" if chunk and self.chat else "")
        return {"id": self.rid, "object": kind, "created": self.created, "model": self.model}

    def usage(self, completion_tokens: int) -> dict[str, int]:
        total = self.prompt_tokens + completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": total}

    def full(self, text: str, reason: str, completion_tokens: int) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice.update(text=text, logprobs=None)
        return {**self._head(False), "choices": [choice], "usage": self.usage(completion_tokens)}

    def chunk(self, delta: str | dict[str, str], reason: str | None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason}
        if self.chat:
            choice["delta"] = delta if isinstance(delta, dict) else ({"content": delta} if delta else {})
        else:
            choice.update(text=delta, logprobs=None)
        return {**self._head(True), "choices": [choice]}

    def usage_chunk(self, completion_tokens: int) -> dict[str, Any]:
        return {**self._head(True), "choices": [], "usage": self.usage(completion_tokens)}


class DrainingServer(uvicorn.Server):
    """uvicorn server whose SIGTERM drains and then exits 0 instead of re-raising the signal."""

    def __init__(self, config: uvicorn.Config, state: _State) -> None:
        super().__init__(config)
        self._serve_state = state

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._serve_state.draining = True
        if sig == signal.SIGTERM and not self.should_exit:
            log.info("SIGTERM: draining in-flight requests, refusing new ones")
            self.should_exit = True
            return
        super().handle_exit(sig, frame)


def serve(config: ServerConfig) -> None:
    """Load the model, then serve until SIGTERM/SIGINT (blocking)."""
    warn_if_exposed(config.host, config.api_key, log)
    app = create_app(config)
    uv = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level="info",
        timeout_graceful_shutdown=int(config.drain_timeout_s),
        access_log=False,
    )
    DrainingServer(uv, app.state.serve).run()
