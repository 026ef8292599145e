"""CLI: ``python -m workloads.serve --model tiny-random|PATH [--host --port --max-batch ...]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from workloads.serve.config import EngineConfig, ServerConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workloads.serve", description=__doc__)
    p.add_argument(
        "--model",
        default="tiny-random",
        help="preset (tiny-random, tiny-random-llama, gpt2-124m-random) or a local Hugging Face model directory",
    )
    p.add_argument("--tokenizer", default=None, help="local tokenizer directory (default: the model's, else bytes)")
    p.add_argument("--served-model-name", default=None, help="model id clients send (default: from --model)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--dtype", default="auto", help="auto|float32|bfloat16|float16")
    p.add_argument("--max-batch", type=int, default=64, help="KV-cache slots = max concurrent sequences")
    p.add_argument("--max-model-len", type=int, default=None, help="prompt + output tokens per sequence")
    p.add_argument("--queue-size", type=int, default=256, help="requests that may wait; beyond: 429")
    p.add_argument("--request-timeout", type=float, default=600.0, help="seconds before a request gets 504")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="seconds SIGTERM waits for in-flight work")
    p.add_argument(
        "--max-request-bytes", type=int, default=1 << 20, help="largest request body; bigger: 413 (default 1 MiB)"
    )
    p.add_argument(
        "--max-failed-steps",
        type=int,
        default=3,
        help="engine steps failing in a row before /health answers 503 (default 3)",
    )
    p.add_argument("--no-cuda-graphs", action="store_true", help="run decode steps eagerly on CUDA")
    p.add_argument(
        "--min-prefill-batch",
        type=int,
        default=None,
        help="under load, admit waiting requests in groups of this many (default max-batch/8)",
    )
    p.add_argument(
        "--decode-attention",
        default="auto",
        help="auto (Triton kernel on CUDA when installed) | sdpa | triton",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for random presets and sampling")
    p.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' (default: $AIDC_SERVE_API_KEY if set)"
    )
    return p


def config_from_args(argv: list[str] | None = None) -> ServerConfig:
    a = build_parser().parse_args(argv)
    engine = EngineConfig(
        model=a.model,
        tokenizer=a.tokenizer,
        served_model_name=a.served_model_name,
        device=a.device,
        dtype=a.dtype,
        max_batch=a.max_batch,
        max_model_len=a.max_model_len,
        cuda_graphs=not a.no_cuda_graphs,
        min_prefill_batch=a.min_prefill_batch,
        decode_attention=a.decode_attention,
        seed=a.seed,
    )
    return ServerConfig(
        host=a.host,
        port=a.port,
        queue_size=a.queue_size,
        request_timeout_s=a.request_timeout,
        drain_timeout_s=a.drain_timeout,
        max_request_bytes=a.max_request_bytes,
        max_failed_steps=a.max_failed_steps,
        api_key=a.api_key or os.environ.get("AIDC_SERVE_API_KEY"),
        engine=engine,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(argv)
        from workloads.serve.server import serve  # torch/transformers import only after args are valid

        serve(config)
    except ValueError as exc:  # user mistakes: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
