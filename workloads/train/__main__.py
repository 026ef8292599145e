"""CLI: ``torchrun --nproc-per-node N -m workloads.train --preset tiny --steps 30 ...``.

Also runs without torchrun as a single process. Bad flags print one ``error:`` line naming the
flag, exit 2. :func:`parse_config` validates an argument list without starting anything (the
launcher checks the arguments it passes through with it).
"""

from __future__ import annotations

import argparse
import sys

from workloads.train.config import COMPILE_MODES, DTYPE_CHOICES, PARALLEL_CHOICES, PRESETS, ConfigError, TrainConfig
from workloads.train.config import preset as get_preset

#: ``--warmup`` when not given: this many steps, or ``--steps`` if that is fewer.
DEFAULT_WARMUP = TrainConfig().warmup
_D = " (default: %(default)s)"


def build_parser(parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    d = TrainConfig()
    p = parser_class(prog="python -m workloads.train", description="Train a GPT-style model.")
    a = p.add_argument
    a("--preset", default="tiny", help=f"model size: {', '.join(PRESETS)}" + _D)
    a("--steps", type=int, default=d.steps, help="optimizer steps in total; a resume continues up to it" + _D)
    a("--batch-size", type=int, default=d.batch_size, help="sequences per rank per micro-step" + _D)
    a("--seq-len", type=int, default=d.seq_len, help="tokens per sequence, 0: the preset's max" + _D)
    a("--grad-accum", type=int, default=d.grad_accum, help="micro-steps per optimizer step" + _D)
    a("--lr", type=float, default=d.lr, help="peak learning rate" + _D)
    a("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="cosine floor as a fraction of --lr" + _D)
    a("--warmup", type=int, help=f"linear warmup steps, <= --steps (default: {DEFAULT_WARMUP}, or --steps if fewer)")
    a("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay (matrices only)" + _D)
    a("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm, 0: off" + _D)
    a("--seed", type=int, default=d.seed, help="seed for weights and data order" + _D)
    a("--parallel", choices=PARALLEL_CHOICES, default=d.parallel, help="ddp or fsdp (FSDP2 fully_shard)" + _D)
    a("--dtype", choices=DTYPE_CHOICES, default=d.dtype, help="auto: bf16 autocast on GPU, fp32 on CPU" + _D)
    a("--compile", action="store_true", help="torch.compile the model")
    a("--compile-mode", choices=COMPILE_MODES, default=d.compile_mode, help="torch.compile mode" + _D)
    a("--loss-chunks", type=int, default=d.loss_chunks, help="chunked LM head + cross-entropy, 1: off" + _D)
    a("--deterministic", action="store_true", help="deterministic algorithms (bit-reproducible on CPU)")
    a("--data", default=d.data, help="'synthetic' or a token shard file/directory" + _D)
    a("--ckpt-dir", default=d.ckpt_dir, help="directory, FSx path or s3://bucket/prefix; '': no checkpoints")
    a("--ckpt-every", type=int, default=d.ckpt_every, help="save every K steps and at the last step, 0: never" + _D)
    a("--keep-last", type=int, default=d.keep_last, help="valid checkpoints to keep" + _D)
    a("--kms-key-id", default=d.kms_key_id, help="SSE-KMS key id/ARN for s3:// checkpoints")
    a("--metrics", default=d.metrics, help="JSON-lines metrics file (rank 0)")
    a("--log-every", type=int, default=d.log_every, help="progress line every N steps" + _D)
    return p


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    """The validated config; a bad value raises :class:`ConfigError` whose message names the flag."""
    fields = {k: v for k, v in vars(ns).items() if k != "preset"}
    if fields["warmup"] is None:
        fields["warmup"] = min(DEFAULT_WARMUP, max(ns.steps, 0))
    try:
        return TrainConfig(model=get_preset(ns.preset), preset_name=ns.preset, **fields)
    except ConfigError as exc:
        if exc.field not in vars(ns):  # a field with no flag of its own (e.g. betas)
            raise
        raise ConfigError("--" + exc.field.replace("_", "-"), exc.value, exc.allowed) from None


class ArgumentsError(ConfigError):
    """What argparse would print before exiting: an unknown flag, a value of the wrong type."""

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, f"{message} (see python -m workloads.train --help)")
        self.field, self.value, self.allowed = "", None, message


class _RaisingParser(argparse.ArgumentParser):
    """Raises instead of printing usage and exiting, so a caller can report the error its own way.

    No ``--help``: printing the trainer's help and exiting is not a validation result.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(add_help=False, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        raise ArgumentsError(message)


def parse_config(argv: list[str]) -> TrainConfig:
    """Parse and validate training arguments without starting anything.

    Raises :class:`ConfigError` with a one-line message for unknown flags, bad types and bad values.
    """
    return config_from_args(build_parser(_RaisingParser).parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(ns)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # torch is imported only after the cheap checks (and never by parse_config's callers).
    from workloads.train.checkpoint import CheckpointError
    from workloads.train.data import DataError
    from workloads.train.trainer import shutdown, train

    try:
        train(cfg)
    except (DataError, CheckpointError, ConfigError) as exc:  # ConfigError: e.g. a --metrics path not writable
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
