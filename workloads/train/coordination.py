"""How ranks wait for each other in checkpoint work, and learn of each other's failures.

In a checkpoint one rank often works alone while the others wait: rank 0 writes the marker, prunes
and lists checkpoints; local rank 0 downloads one from S3. With a multi-GB checkpoint that outlasts
the short timeout of the default group (``AIDC_DIST_TIMEOUT_S``, short for restarts: see
:func:`workloads.train.trainer.setup_distributed`), so these waits run on a gloo group of their own
with ``AIDC_CKPT_TIMEOUT_S`` (default 1800 s). And a rank that fails tells the others, so every rank
exits with its message instead of waiting for it until that timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import torch.distributed as dist

from workloads.train.config import env_seconds

#: Seconds a rank waits for the others in checkpoint work (save, resume, prune).
CKPT_TIMEOUT_ENV = "AIDC_CKPT_TIMEOUT_S"
DEFAULT_CKPT_TIMEOUT_S = 1800.0
T = TypeVar("T")


class CheckpointError(RuntimeError):
    """A checkpoint location or file that cannot be used."""


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


_coordination: tuple[dist.ProcessGroup, dist.ProcessGroup] | None = None  # (default group, its gloo twin)


def coordination_group() -> dist.ProcessGroup | None:
    """The gloo group checkpoint waits run on (None without torch.distributed).

    Made on first use; ``new_group`` is collective, so that use must come at the same point on every
    rank: :class:`workloads.train.checkpoint.CheckpointManager` makes it in its constructor.
    """
    global _coordination
    if not _distributed():
        return None
    world = dist.group.WORLD
    if _coordination is None or _coordination[0] is not world:
        seconds = env_seconds(CKPT_TIMEOUT_ENV, DEFAULT_CKPT_TIMEOUT_S)
        _coordination = (world, dist.new_group(backend="gloo", timeout=timedelta(seconds=seconds)))
    return _coordination[1]


def forget_groups() -> None:
    """Drop this module's references to the process groups (call before destroying them).

    Held here, the groups would outlive ``destroy_process_group`` and be destructed during
    interpreter finalization, when gloo's C++ teardown can no longer take the GIL and aborts the
    process ("terminate called without an active exception") after a run that otherwise succeeded.
    """
    global _coordination
    _coordination = None


def _failure(exc: Exception) -> str:
    """What the other ranks report: a CheckpointError's own words, else the rank and the exception."""
    return str(exc) if isinstance(exc, CheckpointError) else f"rank {_rank()}: {type(exc).__name__}: {exc}"


def on_rank0(work: Callable[[], T]) -> T:
    """``work()`` on rank 0 alone; every rank returns its result, or raises if it failed.

    Rank 0 re-raises its own exception; the others raise a CheckpointError with its message.
    """
    result, failure, own = None, None, None
    if _rank() == 0:
        try:
            result = work()
        except Exception as exc:
            own, failure = exc, _failure(exc)
    if _distributed():
        box = [(result, failure)]
        dist.broadcast_object_list(box, src=0, group=coordination_group())
        result, failure = box[0]
    if own is not None:
        raise own
    if failure is not None:
        raise CheckpointError(failure)
    return result  # type: ignore[return-value]


def on_every_rank(work: Callable[[], T]) -> T:
    """``work()`` on every rank, then wait for all (a barrier); if any failed, every rank raises.

    A failing rank re-raises its own exception; the others raise a CheckpointError with the message of
    the lowest failing rank.
    """
    result, failure, own = None, None, None
    try:
        result = work()
    except Exception as exc:
        own, failure = exc, _failure(exc)
    if _distributed():
        failures: list[str | None] = [None] * dist.get_world_size()
        dist.all_gather_object(failures, failure, group=coordination_group())
        failure = next((f for f in failures if f is not None), None)
    if own is not None:
        raise own
    if failure is not None:
        raise CheckpointError(failure)
    return result  # type: ignore[return-value]
