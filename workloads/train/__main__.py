"""CLI: ``torchrun --nproc-per-node N -m workloads.train --preset tiny --steps 30 ...``.

Also runs without torchrun as a single process. Bad flags print one ``error:`` line, exit 2.
"""

from __future__ import annotations

import argparse
import sys

from workloads.train.checkpoint import CheckpointError
from workloads.train.config import COMPILE_MODES, DTYPE_CHOICES, PARALLEL_CHOICES, PRESETS, ConfigError, TrainConfig
from workloads.train.config import preset as get_preset
from workloads.train.data import DataError


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m workloads.train", description="Train a GPT-style model.")
    a = p.add_argument
    a("--preset", default="tiny", help=f"model size: {', '.join(PRESETS)} (default tiny)")
    a("--steps", type=int, default=d.steps, help="optimizer steps in total (default %(default)s)")
    a("--batch-size", type=int, default=d.batch_size, help="sequences per rank per micro-step")
    a("--seq-len", type=int, default=d.seq_len, help="tokens per sequence (0: the preset's max)")
    a("--grad-accum", type=int, default=d.grad_accum, help="micro-steps per optimizer step")
    a("--lr", type=float, default=d.lr, help="peak learning rate")
    a("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="cosine floor as a fraction of --lr")
    a("--warmup", type=int, default=d.warmup, help="linear warmup steps")
    a("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay (matrices only)")
    a("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0: off)")
    a("--seed", type=int, default=d.seed, help="seed for weights and data order")
    a("--parallel", choices=PARALLEL_CHOICES, default=d.parallel, help="ddp or fsdp (FSDP2 fully_shard)")
    a("--dtype", choices=DTYPE_CHOICES, default=d.dtype, help="auto: bf16 autocast on GPU, fp32 on CPU")
    a("--compile", action="store_true", help="torch.compile the model")
    a("--compile-mode", choices=COMPILE_MODES, default=d.compile_mode, help="torch.compile mode")
    a("--loss-chunks", type=int, default=d.loss_chunks, help="chunked LM head + cross-entropy (1: off)")
    a("--deterministic", action="store_true", help="deterministic algorithms (bit-reproducible on CPU)")
    a("--data", default=d.data, help="'synthetic' or a token shard file/directory")
    a("--ckpt-dir", default=d.ckpt_dir, help="directory, FSx path or s3://bucket/prefix ('' = none)")
    a("--ckpt-every", type=int, default=d.ckpt_every, help="save every K steps (0: never)")
    a("--keep-last", type=int, default=d.keep_last, help="valid checkpoints to keep")
    a("--kms-key-id", default=d.kms_key_id, help="SSE-KMS key id/ARN for s3:// checkpoints")
    a("--metrics", default=d.metrics, help="JSON-lines metrics file (rank 0)")
    a("--log-every", type=int, default=d.log_every, help="progress line every N steps")
    return p


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    fields = {k: v for k, v in vars(ns).items() if k != "preset"}
    return TrainConfig(model=get_preset(ns.preset), preset_name=ns.preset, **fields)


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(ns)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from workloads.train.trainer import shutdown, train  # torch import after the cheap checks

    try:
        train(cfg)
    except (DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
