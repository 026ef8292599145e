"""Atomic, retained, auto-resumed checkpoints with ``torch.distributed.checkpoint`` (DCP).

What is saved: model + optimizer through DCP (sharded, reshardable), and per rank a small
``train_state_rank{R}.pt`` (step, LR scheduler, data position, RNG states).

Atomicity: a checkpoint is valid only when its final name ``step_NNNNNNNN`` exists AND it holds
``COMPLETE.json``, written last, listing every file with its size. Locally (or on FSx) the data is
written into ``step_NNNNNNNN.tmp`` and renamed after the marker is in place; on S3 the marker object
is uploaded after every data object (see :mod:`workloads.train.s3store`). A crash at any point
leaves either the previous valid checkpoint as newest, or a complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from workloads.train import faults

MARKER = "COMPLETE.json"
STEP_DIR = re.compile(r"^step_(\d{8})$")
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint location or file that cannot be used."""


def step_name(step: int) -> str:
    return f"step_{step:08d}"


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def dcp_mode() -> Iterator[bool]:
    """Yields DCP's ``no_dist``; single-process use (1 GPU, unit tests) is intended, so its warning is hidden."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield not _distributed()


def _barrier() -> None:
    if _distributed():
        dist.barrier()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def file_sizes(root: Path) -> dict[str, int]:
    """Relative path -> size of every file under ``root`` except the marker."""
    return {
        str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file() and p.name != MARKER
    }


def marker_payload(step: int, files: dict[str, int], where: str) -> dict[str, Any]:
    """The completion marker; refuses to vouch for a checkpoint some rank's files are missing from.

    Every rank writes its ``train_state_rank{R}.pt`` after its DCP data, so all of them being
    visible to rank 0 means every rank finished. A missing one on a local path means the directory
    is not shared between nodes.
    """
    world = dist.get_world_size() if _distributed() else 1
    missing = [f"train_state_rank{r}.pt" for r in range(world) if f"train_state_rank{r}.pt" not in files]
    if missing or ".metadata" not in files:
        raise CheckpointError(
            f"{where}: files of other ranks are missing ({', '.join(missing) or '.metadata'}); for multi-node jobs "
            "ckpt_dir must be storage every node sees (FSx for Lustre) or s3://"
        )
    return {"format": FORMAT_VERSION, "step": step, "world_size": world, "files": files, "torch": torch.__version__}


def marker_matches(marker: dict[str, Any], actual: dict[str, int]) -> bool:
    """True when every file the marker lists is present with the recorded size."""
    listed = marker.get("files")
    return isinstance(listed, dict) and bool(listed) and all(actual.get(k) == v for k, v in listed.items())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_durably(path: Path, payload: dict[str, Any]) -> None:
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())


def write_local_checkpoint(stage: Path, state: dict[str, Any], train_state: dict[str, Any]) -> None:
    """DCP-save ``state`` and this rank's ``train_state`` into ``stage`` (every rank calls this)."""
    stage.mkdir(parents=True, exist_ok=True)
    with dcp_mode() as no_dist:
        dcp.save(state, storage_writer=dcp.FileSystemWriter(str(stage), sync_files=True), no_dist=no_dist)
    with open(stage / f"train_state_rank{_rank()}.pt", "wb") as fh:
        torch.save(train_state, fh)
        fh.flush()
        os.fsync(fh.fileno())


class LocalStore:
    """Checkpoints under a local or shared (FSx for Lustre) directory, visible to every rank."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def valid_steps(self) -> list[int]:
        if not self.root.is_dir():
            return []
        steps = []
        for d in self.root.iterdir():
            m = STEP_DIR.match(d.name)
            if m and self._is_valid(d):
                steps.append(int(m.group(1)))
        return sorted(steps)

    @staticmethod
    def _is_valid(d: Path) -> bool:
        try:
            marker = json.loads((d / MARKER).read_text())
        except (OSError, ValueError):
            return False
        return marker_matches(marker, file_sizes(d))

    def save(self, step: int, state: dict[str, Any], train_state: dict[str, Any]) -> None:
        final, tmp = self.root / step_name(step), self.root / (step_name(step) + ".tmp")
        if _rank() == 0:
            shutil.rmtree(tmp, ignore_errors=True)  # a partial write of an earlier, crashed attempt
            tmp.mkdir(parents=True)
        _barrier()
        write_local_checkpoint(tmp, state, train_state)
        _barrier()
        faults.maybe_die("AIDC_FAULT_IN_SAVE_AT_STEP", step, _rank())
        if _rank() == 0:
            _write_json_durably(tmp / MARKER, marker_payload(step, file_sizes(tmp), str(tmp)))
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)  # atomic on POSIX and on Lustre: readers see all or nothing
            _fsync_dir(self.root)
        _barrier()

    def load(self, step: int, state: dict[str, Any]) -> dict[str, Any]:
        d = self.root / step_name(step)
        with dcp_mode() as no_dist:
            dcp.load(state, storage_reader=dcp.FileSystemReader(str(d)), no_dist=no_dist)
        return load_train_state(d)

    def prune(self, keep_last: int) -> list[int]:
        """Delete valid checkpoints beyond the newest ``keep_last`` and stale partial writes."""
        valid = self.valid_steps()
        doomed = valid[:-keep_last] if keep_last else []
        newest = valid[-1] if valid else -1
        for d in self.root.iterdir() if self.root.is_dir() else []:
            m = re.match(r"^step_(\d{8})(\.tmp)?$", d.name)
            if not m:
                continue
            step = int(m.group(1))
            if step in doomed or (step < newest and step not in valid):
                shutil.rmtree(d, ignore_errors=True)
        return doomed


def load_train_state(d: Path) -> dict[str, Any]:
    path = d / f"train_state_rank{_rank()}.pt"
    if not path.exists():
        raise CheckpointError(f"{d}: no {path.name}; was it saved with a different number of ranks?")
    return torch.load(path, weights_only=True)


def make_store(location: str, *, kms_key_id: str = ""):
    """A store for a local/FSx directory or an ``s3://bucket/prefix`` URL."""
    if location.startswith("s3://"):
        from workloads.train.s3store import S3Store  # boto3 only when asked for

        return S3Store(location, kms_key_id=kms_key_id)
    if "://" in location:
        raise CheckpointError(f"ckpt_dir={location!r}: use a directory path or s3://bucket/prefix")
    return LocalStore(location)


class CheckpointManager:
    """Saves on schedule, keeps the newest ``keep_last``, resumes from the newest valid one."""

    def __init__(self, location: str, *, keep_last: int = 3, kms_key_id: str = "") -> None:
        self.store = make_store(location, kms_key_id=kms_key_id)
        self.keep_last = keep_last

    def save(
        self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_state: dict[str, Any]
    ) -> None:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        self.store.save(step, {"model": model_sd, "optim": optim_sd}, train_state)
        if _rank() == 0:
            self.store.prune(self.keep_last)
        _barrier()

    def newest_step(self) -> int | None:
        """The newest valid step as rank 0 sees it, agreed by all ranks."""
        found = None
        if _rank() == 0:
            valid = self.store.valid_steps()
            found = valid[-1] if valid else None
        if dist.is_available() and dist.is_initialized():
            box = [found]
            dist.broadcast_object_list(box, src=0)
            found = box[0]
        return found

    def load_latest(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Load the newest valid checkpoint into ``model``/``optimizer``; its train state or None."""
        step = self.newest_step()
        if step is None:
            return None
        # get_state_dict initialises empty optimizer state (an lr=0 step) so DCP has targets to fill.
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        train_state = self.store.load(step, state)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        if int(train_state["step"]) != step:
            raise CheckpointError(f"checkpoint {step_name(step)} holds train state of step {train_state['step']}")
        return train_state
