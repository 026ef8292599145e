"""Typed settings of the inference engine and the HTTP server (pure Python, no torch import).

Every default is stated once, here; a bad value raises ``ValueError`` naming the field, the value
and what is allowed, so that the CLI can print one line instead of a traceback.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

#: Decode batch sizes for which a CUDA graph is captured; a step runs the smallest bucket that fits.
DEFAULT_BATCH_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
ATTENTION: tuple[str, ...] = ("auto", "sdpa", "triton")


def _require(ok: bool, name: str, value: object, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: allowed {allowed}")


@dataclass(kw_only=True)
class EngineConfig:
    """Settings of :class:`workloads.serve.engine.Engine`.

    Attributes:
        model: a preset name (``tiny-random``, ``tiny-random-llama``, ``gpt2-124m-random``) or a
            local directory holding a Hugging Face causal LM (``config.json`` + weights).
        tokenizer: local tokenizer directory; default: ``model`` if it holds one, else the
            built-in byte-level tokenizer (nothing is downloaded).
        served_model_name: the id clients send as ``model``; default: the preset name or the
            directory's base name.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        dtype: ``auto`` (bfloat16 on CUDA, float32 on CPU) or an explicit torch dtype name.
        max_batch: number of KV-cache slots = most sequences decoded together (default 64).
        max_model_len: prompt + generated tokens per sequence; default: the model's context
            length capped at 2048. Sets the KV-cache size: ``max_batch * max_model_len`` tokens.
        max_prefill_tokens: padded prompt tokens one prefill forward may hold (default 8192).
        min_prefill_batch: while sequences are decoding and at least this many requests wait,
            admit them only once this many slots are free, so one prefill takes a group instead
            of one prompt per step (a prefill costs about the same for 1 prompt as for 8; one per
            step stalls every decode step). Fewer waiting requests, or an idle engine, are
            admitted at once, and a group held back for 32 steps (engine.ADMIT_WAIT_STEPS)
            takes the free slots there are. Default: ``max_batch // 8`` (at least 1).
        cuda_graphs: capture decode steps as CUDA graphs (only on CUDA; default True).
        batch_buckets: decode batch sizes that get a graph; capped at ``max_batch``.
        seed: seed of random initialisation (presets) and of sampling (default 0).
        decode_attention: ``auto`` (the Triton split-K kernel on CUDA when Triton is installed,
            else SDPA), ``sdpa``, or ``triton`` (needs Triton; on CPU only under its interpreter,
            ``TRITON_INTERPRET=1``, which the tests use).
    """

    model: str = "tiny-random"
    tokenizer: str | None = None
    served_model_name: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_batch: int = 64
    max_model_len: int | None = None
    max_prefill_tokens: int = 8192
    min_prefill_batch: int | None = None
    cuda_graphs: bool = True
    batch_buckets: tuple[int, ...] = DEFAULT_BATCH_BUCKETS
    seed: int = 0
    decode_attention: str = "auto"

    def __post_init__(self) -> None:
        _require(bool(self.model), "model", self.model, "a preset name or a local model directory")
        _require(self.device in DEVICES, "device", self.device, "|".join(DEVICES))
        _require(self.dtype in DTYPES, "dtype", self.dtype, "|".join(DTYPES))
        _require(1 <= self.max_batch <= 4096, "max_batch", self.max_batch, "1..4096")
        if self.max_model_len is not None:
            _require(16 <= self.max_model_len <= 1 << 20, "max_model_len", self.max_model_len, "16..1048576")
        _require(self.decode_attention in ATTENTION, "decode_attention", self.decode_attention, "|".join(ATTENTION))
        if self.decode_attention == "triton":
            _require(
                importlib.util.find_spec("triton") is not None,
                "decode_attention",
                "triton",
                "auto|sdpa (the triton package is not installed)",
            )
        if self.min_prefill_batch is not None:
            _require(
                1 <= self.min_prefill_batch <= self.max_batch,
                "min_prefill_batch",
                self.min_prefill_batch,
                f"1..max_batch ({self.max_batch})",
            )
        _require(self.max_prefill_tokens >= 16, "max_prefill_tokens", self.max_prefill_tokens, ">= 16")
        _require(
            len(self.batch_buckets) > 0 and all(b >= 1 for b in self.batch_buckets),
            "batch_buckets",
            self.batch_buckets,
            "a non-empty list of positive integers",
        )


@dataclass(kw_only=True)
class ServerConfig:
    """Settings of the HTTP front end (:mod:`workloads.serve.server`).

    Attributes:
        host: bind address; loopback unless told otherwise (default ``127.0.0.1``).
        port: TCP port (default 8000).
        queue_size: requests that may wait for a KV-cache slot; beyond that the server answers
            429 with ``Retry-After`` instead of queueing without bound (default 256).
        request_timeout_s: a request still unfinished after this many seconds is aborted and
            answered 504 (default 600).
        retry_after_s: value of the ``Retry-After`` header on 429 (default 1).
        api_key: when set, every ``/v1/*`` request needs ``Authorization: Bearer <api_key>``.
        drain_timeout_s: on SIGTERM, how long in-flight requests may take before exit (default 60).
        max_request_bytes: largest accepted request body; bigger ones get 413 before they are
            parsed or tokenized (default 1 MiB, room for a 2048-token prompt many times over).
        max_failed_steps: ``/health`` answers 503 once this many engine steps in a row have
            failed (each fails its requests with 500), so that the liveness probe restarts a pod
            whose GPU is stuck; the next successful step makes it healthy again (default 3).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    queue_size: int = 256
    request_timeout_s: float = 600.0
    retry_after_s: int = 1
    api_key: str | None = None
    drain_timeout_s: float = 60.0
    max_request_bytes: int = 1 << 20
    max_failed_steps: int = 3
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "port", self.port, "0..65535")
        _require(self.queue_size >= 0, "queue_size", self.queue_size, ">= 0")
        _require(self.request_timeout_s > 0, "request_timeout_s", self.request_timeout_s, "> 0")
        _require(self.retry_after_s >= 1, "retry_after_s", self.retry_after_s, ">= 1")
        _require(self.drain_timeout_s > 0, "drain_timeout_s", self.drain_timeout_s, "> 0")
        _require(self.max_request_bytes >= 1024, "max_request_bytes", self.max_request_bytes, ">= 1024")
        _require(self.max_failed_steps >= 1, "max_failed_steps", self.max_failed_steps, ">= 1")
        if self.api_key is not None:
            _require(len(self.api_key) >= 8, "api_key", "<hidden>", "at least 8 characters")
