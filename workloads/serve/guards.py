"""HTTP-level guards: request size cap, OpenAI-shaped 404/405 bodies, bounded metric labels."""

from __future__ import annotations

import ipaddress
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from workloads.serve.protocol import ApiError

#: The ``endpoint`` label of requests that matched no route: one value, so that scanners probing
#: random paths cannot create unbounded Prometheus series.
UNMATCHED = "other"

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def _too_large(limit: int, got: str) -> ApiError:
    return ApiError(
        413,
        f"request body is {got}: the limit is {limit} bytes (server setting max_request_bytes)",
        code="request_too_large",
        type_="invalid_request_error",
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes.

    ``Content-Length`` is checked before anything is read; a chunked body (no length) is
    counted while it streams in, so at most ``limit`` + one chunk is ever held in memory.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, f"{int(declared)} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit, f"more than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # nobody will read the answer; no traceback either
        raise ApiError(400, "client disconnected while sending the body", code="client_disconnected") from None
    return b"".join(chunks)


def endpoint_label(request: Request) -> str:
    """The matched route's path template (``/v1/completions``), else :data:`UNMATCHED`."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def install_http_error_handler(app: FastAPI) -> None:
    """Unknown paths (404) and wrong methods (405) answer OpenAI-style bodies, not ``{"detail"}``."""

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Invalid URL ({request.method} {request.url.path}): no such endpoint"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        err = ApiError(
            exc.status_code,
            message,
            code=_HTTP_CODES.get(exc.status_code, "http_error"),
            headers=dict(exc.headers or {}),
            type_="invalid_request_error",
        )
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; hostnames and wildcards count as exposed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host: str, api_key: str | None, log: logging.Logger) -> bool:
    """Log a warning when the server listens beyond loopback without a key; True if it did."""
    if api_key is not None or is_loopback(host):
        return False
    log.warning(
        "listening on %s without an API key: anyone who can reach this address can use the model; "
        "set --api-key (or $AIDC_SERVE_API_KEY), or bind 127.0.0.1 behind an authenticating proxy",
        host,
    )
    return True
