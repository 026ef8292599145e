"""The training loop: distributed setup, DDP/FSDP2 wrapping, AdamW + warmup-cosine LR, grad
accumulation, bf16 autocast on GPU, checkpoint/resume, metrics.

Runs under ``torchrun`` (any number of ranks, gloo on CPU, NCCL on GPU) or as a plain single
process. Deterministic mode plus position-addressed data make CPU runs bit-reproducible across
restarts: everything a step depends on is either derived from (seed, step) or restored from the
checkpoint.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from workloads.train import faults
from workloads.train.checkpoint import CheckpointManager, model_identity
from workloads.train.config import TrainConfig, env_seconds
from workloads.train.coordination import forget_groups
from workloads.train.data import BatchLoader
from workloads.train.metrics import MetricsWriter, peak_memory_gib
from workloads.train.mfu import flops_per_token, mfu, peak_flops
from workloads.train.model import GPT, count_parameters


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def setup_distributed() -> Dist:
    """Join the torchrun group (if any) with a short timeout; pick the device and backend.

    The timeout matters on restarts: a new gloo group can fail ``connectFullMesh`` several times
    and, without a timeout, hang for the 30-minute default (FACTS.md "Restarts on one machine").
    Checkpoint waits, which can be far longer, run on a group of their own (:mod:`.coordination`).
    """
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if "RANK" not in os.environ:
        return Dist(0, 1, 0, device)
    timeout = timedelta(seconds=env_seconds("AIDC_DIST_TIMEOUT_S", 60.0))
    if not dist.is_initialized():
        backend = "nccl" if cuda else "gloo"
        store = _attempt_store(timeout)
        if store is None:
            dist.init_process_group(backend=backend, timeout=timeout)
        else:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world, timeout=timeout)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device)


def _attempt_store(timeout: timedelta) -> dist.Store | None:
    """torchrun's shared rendezvous store, with keys private to this restart attempt.

    torchrun (2.11-2.13) keeps one TCPStore for all rounds and hands it to the workers without a
    per-attempt prefix, so restarted gloo workers read the dead workers' addresses left in it and
    fail ``connectFullMesh`` with "Connection refused" (or hang). Every agent restarts its workers
    together, so ``TORCHELASTIC_RESTART_COUNT`` names the attempt on all nodes alike.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "TORCHELASTIC_RESTART_COUNT" not in os.environ:
        return None
    tcp = dist.TCPStore(
        host_name=os.environ["MASTER_ADDR"],
        port=int(os.environ["MASTER_PORT"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        is_master=False,
        timeout=timeout,
    )
    return dist.PrefixStore(f"aidc/attempt_{os.environ['TORCHELASTIC_RESTART_COUNT']}", tcp)


def configure_determinism(cfg: TrainConfig) -> None:
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS determinism
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)  # same seed on every rank: identical initial weights


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.dtype == "bf16" or (cfg.dtype == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def build_model(cfg: TrainConfig, ctx: Dist) -> tuple[nn.Module, nn.Module, GPT]:
    """(module to call, module that owns grad sync, the bare GPT) for the chosen parallelism."""
    torch.manual_seed(cfg.seed)
    gpt = GPT(cfg.model).to(ctx.device)
    wrapped: nn.Module = gpt
    if ctx.world_size > 1 and cfg.parallel == "ddp":
        wrapped = DistributedDataParallel(gpt, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
    elif ctx.world_size > 1 and cfg.parallel == "fsdp":
        for block in gpt.blocks:
            fully_shard(block)
        fully_shard(gpt)
    runnable = (
        torch.compile(wrapped, mode=None if cfg.compile_mode == "default" else cfg.compile_mode)
        if cfg.compile
        else wrapped
    )
    return runnable, wrapped, gpt


def build_optimizer(cfg: TrainConfig, gpt: GPT, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only; fused kernel on GPU."""
    decay = [p for p in gpt.parameters() if p.dim() >= 2]
    no_decay = [p for p in gpt.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to ``min_lr_ratio`` at ``steps``."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    progress = min(1.0, (step - cfg.warmup) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def restore_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR, step: int, cfg: TrainConfig) -> None:
    """Put the LR schedule at ``step`` under the current config, as if it had run from step 0.

    The scheduler state in a checkpoint holds the LR that the *saved* config gave the next step
    (with a smaller ``steps``, the cosine floor), and the optimizer state holds that LR too.
    Recomputing it here makes the LR of a step a function of the step and the current config
    only; the expression is LambdaLR's own (``base_lr * lr_lambda(epoch)``), so an unchanged
    config resumes bit-identically.
    """
    scheduler.last_epoch = step
    lrs = [base_lr * lr_factor(step, cfg) for base_lr in scheduler.base_lrs]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() reports; LambdaLR has no public setter


def _grad_sync(wrapped: nn.Module, sync: bool):
    """Skip the gradient all-reduce on all but the last micro-step of an accumulation."""
    if isinstance(wrapped, DistributedDataParallel):
        return contextlib.nullcontext() if sync else wrapped.no_sync()
    if hasattr(wrapped, "set_requires_gradient_sync"):  # FSDP2 module
        wrapped.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pinned, asynchronous host-to-GPU copy: a pageable copy would make the CPU wait for the GPU
    queue to drain, so the next step's kernels could not be launched while this one runs."""
    if device.type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def train_step(
    cfg: TrainConfig,
    runnable: nn.Module,
    wrapped: nn.Module,
    gpt: GPT,
    optimizer: torch.optim.Optimizer,
    scheduler,
    loader: BatchLoader,
    device: torch.device,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """One optimizer step over ``grad_accum`` micro-batches; returns the mean loss (not synced)."""
    loss_sum = torch.zeros((), device=device)
    for micro in range(cfg.grad_accum):
        x, y = (_to_device(t, device) for t in loader.next_batch())
        with _grad_sync(wrapped, micro == cfg.grad_accum - 1):
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = runnable(x, y, loss_chunks=cfg.loss_chunks)
            (loss / cfg.grad_accum).backward()
        loss_sum += loss.detach()
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(gpt.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / cfg.grad_accum


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])


def _write_pid_file(rank: int) -> None:
    """``AIDC_PID_DIR/rank{R}.pid`` lets an operator or a test ``kill -9`` one chosen worker."""
    pid_dir = os.environ.get("AIDC_PID_DIR")
    if pid_dir:
        os.makedirs(pid_dir, exist_ok=True)
        with open(os.path.join(pid_dir, f"rank{rank}.pid"), "w") as fh:
            fh.write(str(os.getpid()))


def _global_mean(loss: torch.Tensor, world_size: int) -> float:
    if world_size > 1:
        loss = loss.clone()
        dist.all_reduce(loss)  # SUM: gloo has no AVG
        loss /= world_size
    return float(loss.item())


@dataclass
class Run:
    """Everything one training process holds; checkpoints capture all of it that changes."""

    cfg: TrainConfig
    ctx: Dist
    runnable: nn.Module
    wrapped: nn.Module
    gpt: GPT
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loader: BatchLoader
    metrics: MetricsWriter
    manager: CheckpointManager | None

    def train_state(self, step: int) -> dict[str, Any]:
        return {
            "step": step,
            "scheduler": self.scheduler.state_dict(),
            "data": self.loader.state_dict(),
            "rng": rng_state(),
        }

    def resume(self) -> int:
        """Load the newest valid checkpoint, if any; the step it ends (0 for a fresh run)."""
        state = self.manager.load_latest(self.wrapped, self.optimizer) if self.manager else None
        if state is None:
            return 0
        restore_schedule(self.scheduler, int(state["step"]), self.cfg)
        self.loader.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        self.metrics.event("resume", from_step=int(state["step"]), restart=restart)
        return int(state["step"])

    def maybe_save(self, step: int) -> None:
        """Every ``ckpt_every`` steps, and at the last step: a run whose --steps is no multiple of
        --ckpt-every must not lose its final steps (and a rerun must find it complete)."""
        every = self.cfg.ckpt_every
        if self.manager is not None and every and (step % every == 0 or step == self.cfg.steps):
            self.manager.save(step, self.wrapped, self.optimizer, self.train_state(step))


def prepare(cfg: TrainConfig) -> Run:
    configure_determinism(cfg)
    ctx = setup_distributed()
    _write_pid_file(ctx.rank)
    manager = None
    if cfg.ckpt_dir:  # first: a --ckpt-dir that can never hold a checkpoint fails before any work
        manager = CheckpointManager(
            cfg.ckpt_dir,
            keep_last=cfg.keep_last,
            kms_key_id=cfg.kms_key_id,
            model=model_identity(cfg.preset_name, cfg.model),
        )
    metrics = MetricsWriter(cfg.metrics, enabled=ctx.rank == 0)  # an unwritable --metrics fails before any work
    runnable, wrapped, gpt = build_model(cfg, ctx)
    optimizer = build_optimizer(cfg, gpt, ctx.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    loader = BatchLoader(
        data=cfg.data,
        batch_size=cfg.batch_size,
        seq_len=cfg.tokens_seq_len,
        vocab_size=cfg.model.vocab_size,
        seed=cfg.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    return Run(cfg, ctx, runnable, wrapped, gpt, optimizer, scheduler, loader, metrics, manager)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training to ``cfg.steps``; returns a summary of the last step."""
    run = prepare(cfg)
    ctx, seq_len = run.ctx, cfg.tokens_seq_len
    start = run.resume()
    dtype = amp_dtype(cfg, ctx.device)
    ftok = flops_per_token(cfg.model, count_parameters(run.gpt)["non_embedding"], seq_len)
    peak = peak_flops(torch.cuda.get_device_name(ctx.device)) if ctx.device.type == "cuda" else None
    tokens_per_step = cfg.batch_size * seq_len * cfg.grad_accum * ctx.world_size
    summary: dict[str, Any] = {"start_step": start}
    if start >= cfg.steps and ctx.rank == 0:
        done = f"already complete at step {start} (--steps {cfg.steps})"
        if start > cfg.steps:
            done = f"already past --steps {cfg.steps}: the newest checkpoint is at step {start}"
        print(f"{done}; nothing to do", flush=True)
    for step in range(start + 1, cfg.steps + 1):
        faults.maybe_die("AIDC_FAULT_AT_STEP", step, ctx.rank)
        t0 = time.perf_counter()
        lr = run.optimizer.param_groups[0]["lr"]
        loss_t = train_step(
            cfg, run.runnable, run.wrapped, run.gpt, run.optimizer, run.scheduler, run.loader, ctx.device, dtype
        )
        loss = _global_mean(loss_t, ctx.world_size)
        tps = tokens_per_step / (time.perf_counter() - t0)
        run.metrics.step(
            step=step,
            total=cfg.steps,
            loss=loss,
            lr=lr,
            tokens_per_s=tps,
            mfu=mfu(tps / ctx.world_size, ftok, peak),
            mem_gib=peak_memory_gib(ctx.device),
            progress=step % cfg.log_every == 0 or step == cfg.steps,
        )
        run.maybe_save(step)
        summary.update(step=step, loss=loss, tokens_per_s=tps)
    run.metrics.close()
    return summary


def shutdown() -> None:
    """Leave the group cleanly: every rank done, then the groups destroyed while Python is whole.

    Nothing may keep a group alive past this point (see :func:`.coordination.forget_groups`); the
    collection frees groups still referenced from cycles (e.g. a DDP wrapper) now, not at exit.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        forget_groups()
        dist.destroy_process_group()
        gc.collect()
