"""HTTP-level guards: OpenAI-shaped 404/405 bodies, bounded metric labels."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from workloads.serve.protocol import ApiError

#: The ``endpoint`` label of requests that matched no route: one value, so that scanners probing
#: random paths cannot create unbounded Prometheus series.
UNMATCHED = "other"

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


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
