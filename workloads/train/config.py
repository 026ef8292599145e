"""Typed, validated configuration of the trainer: a model config with named presets and a run config.

Every default is stated once, here. A bad value raises :class:`ConfigError` naming the field, the
value and what is allowed, so the CLI can print one line instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Literal

Parallel = Literal["ddp", "fsdp"]
DType = Literal["auto", "bf16", "fp32"]
PARALLEL_CHOICES: tuple[str, ...] = ("ddp", "fsdp")
DTYPE_CHOICES: tuple[str, ...] = ("auto", "bf16", "fp32")
COMPILE_MODES: tuple[str, ...] = ("default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")


class ConfigError(ValueError):
    """A user-facing configuration mistake (one sentence: field, value, what is allowed).

    ``field``/``value``/``allowed`` are kept so a CLI can restate it with its flag: a ``field`` that
    is a flag (``--batch-size``) reads ``--batch-size 0 is invalid: ...``.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        shown = f"{field} {value}" if field.startswith("--") else f"{field}={value!r}"
        super().__init__(f"{shown} is invalid: {allowed}")
        self.field, self.value, self.allowed = field, value, allowed


def env_seconds(name: str, default: float) -> float:
    """A timeout from the environment (``AIDC_*_TIMEOUT_S``); a bad value is a ConfigError naming it."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    _require(math.isfinite(seconds) and seconds > 0, name, raw, "a number of seconds > 0")
    return seconds


def _require(ok: bool, name: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(name, value, allowed)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """A GPT-style decoder (pre-norm, learned positions, GELU MLP, tied LM head).

    ``vocab_size``: token ids are in ``[0, vocab_size)``; 50304 is GPT-2's 50257 padded to a
    multiple of 128 so the LM-head matmul is tensor-core friendly.
    ``n_layer``/``n_head``/``d_model``: depth, attention heads, width (``d_model % n_head == 0``).
    ``max_seq_len``: longest sequence the position table covers.
    ``mlp_ratio``: hidden width of the MLP over ``d_model``.
    """

    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    max_seq_len: int = 1024
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "max_seq_len", "mlp_ratio"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value > 0, name, value, "must be a positive integer")
        _require(self.d_model % self.n_head == 0, "d_model", self.d_model, f"must be divisible by n_head={self.n_head}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


#: Named model sizes. ``tiny`` is for CI (seconds on CPU, vocab fits the byte-level tokenizer).
#: ``124m``/``350m``/``1.3b`` follow GPT-2 small/medium/XL shapes (1.3b: 24 x 2048, 16 heads of 128).
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(vocab_size=256, n_layer=2, n_head=2, d_model=64, max_seq_len=64),
    "124m": ModelConfig(n_layer=12, n_head=12, d_model=768),
    "350m": ModelConfig(n_layer=24, n_head=16, d_model=1024),
    "1.3b": ModelConfig(n_layer=24, n_head=16, d_model=2048),
}


def preset(name: str) -> ModelConfig:
    """The model config of a named preset; unknown names raise :class:`ConfigError`."""
    _require(name in PRESETS, "preset", name, f"choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run.

    ``steps``: optimizer steps in total (a resumed run continues up to this number).
    ``batch_size``: sequences per rank per micro-step; ``grad_accum`` micro-steps per optimizer step.
    ``seq_len``: tokens per sequence (0: the model's ``max_seq_len``).
    ``lr``/``min_lr_ratio``/``warmup``: peak LR, cosine floor as a fraction of it, linear warmup steps
    (``warmup <= steps``). The LR of step k is a function of k and these fields only, so a resume
    with a larger ``steps`` follows the new schedule from its first step.
    ``parallel``: ``ddp`` (replicated) or ``fsdp`` (FSDP2 ``fully_shard`` per block + root).
    ``dtype``: ``auto`` = bf16 autocast on GPU, fp32 on CPU.
    ``compile``/``compile_mode``: wrap the model in ``torch.compile`` with this mode.
    ``loss_chunks``: >1 computes LM head + cross-entropy in that many token chunks, recomputed in
    backward, so the full fp32 logits tensor never exists (a memory and bandwidth lever).
    ``deterministic``: deterministic algorithms + fixed seeds, for bit-reproducible CPU runs.
    ``data``: ``synthetic`` or a token shard path (file or directory of ``*.bin``).
    ``ckpt_dir``: local/FSx directory or ``s3://bucket/prefix`` ("" disables checkpoints);
    ``ckpt_every``: save every K steps (0: never); ``keep_last``: valid checkpoints kept.
    ``kms_key_id``: SSE-KMS key for ``s3://`` checkpoints ("" = bucket default encryption).
    ``metrics``: JSON-lines file written by rank 0 ("" = none); ``log_every``: progress-line period.
    """

    model: ModelConfig = field(default_factory=lambda: PRESETS["tiny"])
    preset_name: str = "tiny"
    steps: int = 100
    batch_size: int = 8
    seq_len: int = 0
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 10
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    seed: int = 1234
    parallel: Parallel = "ddp"
    dtype: DType = "auto"
    compile: bool = False
    compile_mode: str = "default"
    loss_chunks: int = 1
    deterministic: bool = False
    data: str = "synthetic"
    ckpt_dir: str = ""
    ckpt_every: int = 0
    keep_last: int = 3
    kms_key_id: str = ""
    metrics: str = ""
    log_every: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "keep_last", "log_every", "loss_chunks"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value > 0, name, value, "must be a positive integer")
        for name in ("seq_len", "warmup", "ckpt_every", "seed"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 0, name, value, "must be an integer >= 0")
        _require(self.warmup <= self.steps, "warmup", self.warmup, f"must be <= --steps ({self.steps})")
        _require(math.isfinite(self.lr) and self.lr > 0, "lr", self.lr, "must be a finite number > 0")
        _require(
            math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            "weight_decay",
            self.weight_decay,
            "must be a finite number >= 0",
        )
        _require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")
        _require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "betas", (self.beta1, self.beta2), "in [0, 1)")
        _require(self.grad_clip >= 0, "grad_clip", self.grad_clip, "must be >= 0 (0 disables clipping)")
        _require(self.parallel in PARALLEL_CHOICES, "parallel", self.parallel, f"one of {PARALLEL_CHOICES}")
        _require(self.dtype in DTYPE_CHOICES, "dtype", self.dtype, f"one of {DTYPE_CHOICES}")
        _require(self.compile_mode in COMPILE_MODES, "compile_mode", self.compile_mode, f"one of {COMPILE_MODES}")
        _require(
            self.seq_len <= self.model.max_seq_len,
            "seq_len",
            self.seq_len,
            f"must be <= the model's max_seq_len={self.model.max_seq_len}",
        )
        _require(
            self.ckpt_every == 0 or bool(self.ckpt_dir),
            "ckpt_every",
            self.ckpt_every,
            "needs --ckpt-dir (a directory or s3://bucket/prefix)",
        )
        _require(bool(self.data), "data", self.data, "'synthetic' or a path to token shards")

    @property
    def tokens_seq_len(self) -> int:
        """The sequence length actually trained on."""
        return self.seq_len or self.model.max_seq_len

    def replace(self, **changes: object) -> TrainConfig:
        return dataclasses.replace(self, **changes)
