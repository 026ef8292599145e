"""Atomic, retained, auto-resumed checkpoints with ``torch.distributed.checkpoint`` (DCP).

What is saved: model + optimizer through DCP (sharded, reshardable), and per rank a small
``train_state_rank{R}.pt`` (step, LR scheduler, data position, RNG states).

Atomicity: a checkpoint is valid only when its final name ``step_NNNNNNNN`` exists AND it holds
``COMPLETE.json``, written last, listing every file with its size. Locally (or on FSx) the data is
written into ``step_NNNNNNNN.tmp`` and renamed after the marker is in place; on S3 the marker object
is uploaded after every data object (see :mod:`workloads.train.s3store`). A crash at any point
leaves either the previous valid checkpoint as newest, or a complete new one.

Every wait of one rank for another goes through :mod:`workloads.train.coordination`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from workloads.train import faults
from workloads.train.config import ModelConfig
from workloads.train.coordination import (  # CheckpointError: re-exported, this module's error
    CheckpointError,
    _distributed,
    _rank,
    coordination_group,
    on_every_rank,
    on_rank0,
)

MARKER = "COMPLETE.json"
STEP_DIR = re.compile(r"^step_(\d{8})$")
FORMAT_VERSION = 1


def step_name(step: int) -> str:
    return f"step_{step:08d}"


@contextlib.contextmanager
def dcp_mode() -> Iterator[bool]:
    """Yields DCP's ``no_dist``; single-process use (1 GPU, unit tests) is intended, so its warning is hidden."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield not _distributed()


def file_sizes(root: Path) -> dict[str, int]:
    """Relative path -> size of every file under ``root`` except the marker."""
    return {
        str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file() and p.name != MARKER
    }


def model_identity(preset: str, model: ModelConfig) -> dict[str, Any]:
    """What a checkpoint records about the model that wrote it: the preset name and every shape field."""
    return {"preset": preset, **dataclasses.asdict(model)}


def model_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str:
    """'' when ``saved`` fits ``current``, else the differing shape fields, e.g. ``d_model 64 -> 768``."""
    diffs = [f"{k} {saved[k]} -> {v}" for k, v in current.items() if k != "preset" and k in saved and saved[k] != v]
    return ", ".join(diffs)


def marker_payload(step: int, files: dict[str, int], where: str, model: dict[str, Any] | None = None) -> dict[str, Any]:
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
    payload = {"format": FORMAT_VERSION, "step": step, "world_size": world, "files": files, "torch": torch.__version__}
    if model is not None:
        payload["model"] = model
    return payload


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
        writer = dcp.FileSystemWriter(str(stage), sync_files=True)
        dcp.save(state, storage_writer=writer, process_group=coordination_group(), no_dist=no_dist)
    with open(stage / f"train_state_rank{_rank()}.pt", "wb") as fh:
        torch.save(train_state, fh)
        fh.flush()
        os.fsync(fh.fileno())


def check_local_dir(root: Path) -> None:
    """Refuse, before any training step, a directory that could never hold a checkpoint.

    Otherwise the first save, minutes or hours in, fails with a NotADirectoryError traceback.
    """
    probe = root
    while not probe.exists() and probe != probe.parent:  # the nearest part of the path that exists
        probe = probe.parent
    if not probe.is_dir():
        where = "" if probe == root else f" {probe}"
        raise CheckpointError(f"--ckpt-dir {root}:{where} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CheckpointError(f"--ckpt-dir {root}: {probe} is not writable")


def check_shared_dir(root: Path) -> None:
    """Refuse, before any training step, a directory that not every rank sees (call on every rank).

    Every rank writes a probe file into it, and rank 0 looks for all of them: a local path on a
    multi-node job would otherwise fail only at the first save, when rank 0 misses other nodes' files.
    """
    token = on_rank0(lambda: uuid.uuid4().hex[:12])
    world = dist.get_world_size() if _distributed() else 1
    probes = [root / f".probe-{token}-rank{r}" for r in range(world)]

    def write_probe() -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            probes[_rank()].touch()
        except OSError as exc:
            raise CheckpointError(f"--ckpt-dir {root}: rank {_rank()} cannot write there ({exc})") from None

    def all_visible() -> None:
        missing = [str(r) for r, p in enumerate(probes) if not p.exists()]
        if missing:
            raise CheckpointError(
                f"--ckpt-dir {root} is not shared by all ranks: rank 0 does not see the files of rank(s) "
                f"{', '.join(missing)}; multi-node jobs need storage every node sees (FSx for Lustre) or s3://"
            )

    try:
        on_every_rank(write_probe)
        on_rank0(all_visible)
    finally:
        on_every_rank(lambda: probes[_rank()].unlink(missing_ok=True))


class LocalStore:
    """Checkpoints under a local or shared (FSx for Lustre) directory, visible to every rank."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        check_local_dir(self.root)

    def describe(self, step: int) -> str:
        return str(self.root / step_name(step))

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

    def marker(self, step: int) -> dict[str, Any]:
        return json.loads((self.root / step_name(step) / MARKER).read_text())

    def save(
        self, step: int, state: dict[str, Any], train_state: dict[str, Any], model: dict[str, Any] | None = None
    ) -> None:
        final, tmp = self.root / step_name(step), self.root / (step_name(step) + ".tmp")

        def fresh_tmp() -> None:
            shutil.rmtree(tmp, ignore_errors=True)  # a partial write of an earlier, crashed attempt
            tmp.mkdir(parents=True)

        def publish() -> None:
            _write_json_durably(tmp / MARKER, marker_payload(step, file_sizes(tmp), str(tmp), model))
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)  # atomic on POSIX and on Lustre: readers see all or nothing
            _fsync_dir(self.root)

        on_rank0(fresh_tmp)
        on_every_rank(lambda: write_local_checkpoint(tmp, state, train_state))
        faults.maybe_die("AIDC_FAULT_IN_SAVE_AT_STEP", step, _rank())
        on_rank0(publish)  # the others wait until it is published

    def load(self, step: int, state: dict[str, Any]) -> dict[str, Any]:
        d = self.root / step_name(step)
        load_local_checkpoint(d, state)
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


def load_local_checkpoint(d: Path, state: dict[str, Any]) -> None:
    """DCP-load ``state`` in place from directory ``d`` (every rank calls this)."""
    with dcp_mode() as no_dist:
        reader = dcp.FileSystemReader(str(d))
        dcp.load(state, storage_reader=reader, process_group=coordination_group(), no_dist=no_dist)


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
        raise CheckpointError(f"--ckpt-dir {location}: use a directory path or s3://bucket/prefix")
    return LocalStore(location)


def _root_cause(exc: BaseException) -> str:
    """One line for a DCP failure: the first rank's own exception, not DCP's multi-rank traceback."""
    if isinstance(exc, CheckpointException) and exc.failures:
        exc = next(iter(exc.failures.values()))[0]
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class CheckpointManager:
    """Saves on schedule, keeps the newest ``keep_last``, resumes from the newest valid one.

    ``model``: :func:`model_identity` of this run; it is written into every marker, and a
    checkpoint whose marker records another model shape is refused before anything is loaded.
    """

    def __init__(
        self, location: str, *, keep_last: int = 3, kms_key_id: str = "", model: dict[str, Any] | None = None
    ) -> None:
        coordination_group()  # collective: here, where every rank passes at the same point
        self.store = on_every_rank(lambda: make_store(location, kms_key_id=kms_key_id))
        if isinstance(self.store, LocalStore) and _distributed():
            check_shared_dir(self.store.root)
        self.keep_last = keep_last
        self.model = model

    def save(
        self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_state: dict[str, Any]
    ) -> None:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        self.store.save(step, {"model": model_sd, "optim": optim_sd}, train_state, self.model)
        on_rank0(lambda: self.store.prune(self.keep_last))

    def _newest(self) -> tuple[int | None, dict[str, Any] | None]:
        """(newest valid step, the model its marker records) as rank 0 sees them, agreed by all ranks."""

        def newest() -> tuple[int | None, dict[str, Any] | None]:
            valid = self.store.valid_steps()
            return (valid[-1], self.store.marker(valid[-1]).get("model")) if valid else (None, None)

        return on_rank0(newest)

    def newest_step(self) -> int | None:
        """The newest valid step as rank 0 sees it, agreed by all ranks."""
        return self._newest()[0]

    def _check_model(self, step: int, saved: dict[str, Any] | None) -> None:
        if self.model is None or saved is None:  # checkpoints of older versions record no model
            return
        diff = model_mismatch(saved, self.model)
        if diff:
            raise CheckpointError(
                f"checkpoint {self.store.describe(step)} was saved by another model (--preset {saved.get('preset')}; "
                f"this run: --preset {self.model.get('preset')}; {diff}): resume with the same --preset, "
                "or start in a new --ckpt-dir"
            )

    def load_latest(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Load the newest valid checkpoint into ``model``/``optimizer``; its train state or None."""
        step, saved_model = self._newest()
        if step is None:
            return None
        self._check_model(step, saved_model)
        # get_state_dict initialises empty optimizer state (an lr=0 step) so DCP has targets to fill.
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        try:
            train_state = self.store.load(step, state)
        except (ValueError, CheckpointException) as exc:  # shapes that differ, in a marker without a model
            raise CheckpointError(
                f"checkpoint {self.store.describe(step)} does not fit this model ({_root_cause(exc)}); "
                "resume with the --preset it was saved with, or start in a new --ckpt-dir"
            ) from None
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        if int(train_state["step"]) != step:
            raise CheckpointError(f"checkpoint {step_name(step)} holds train state of step {train_state['step']}")
        return train_state
