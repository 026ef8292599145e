"""Checkpoint coordination between 2 gloo ranks (spawned processes, no torchrun): a failure on one
rank reaches the others, and a --ckpt-dir that not every rank sees is refused at start.

One pair of processes runs every case in turn (each case ends with the ranks in step again), and
each test checks one case's outcome.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist

from workloads.train.checkpoint import CheckpointError, CheckpointManager
from workloads.train.local import free_port

#: The default group's timeout here: a rank left waiting for a failed one would give up after this
#: with a gloo error, not the failed rank's message.
DIST_TIMEOUT_S = 15


def _outcome(work, *args) -> tuple[str, object]:
    try:
        return "ok", work(*args)
    except Exception as exc:
        return type(exc).__name__, str(exc)


def _rank_main(rank: int, port: int, cases: list[tuple[str, object, tuple]], results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=DIST_TIMEOUT_S))
    try:
        for name, case, args in cases:
            results.put((name, rank, _outcome(case, rank, *args)))
    finally:
        dist.destroy_process_group()


def run_two_ranks(cases: list[tuple[str, object, tuple]]) -> dict[str, dict[int, tuple[str, object]]]:
    """case name -> rank -> ("ok", what ``case(rank, *args)`` returned) or (exception type, message)."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, port, cases, results)) for r in range(2)]
    for p in procs:
        p.start()
    got: dict[str, dict[int, tuple[str, object]]] = {name: {} for name, _, _ in cases}
    try:
        for _ in range(2 * len(cases)):
            name, rank, outcome = results.get(timeout=len(cases) * DIST_TIMEOUT_S + 45)
            got[name][rank] = outcome
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return got


def newest_with_rank0_listing_failing(rank: int, ckpt: str) -> int | None:
    manager = CheckpointManager(ckpt)
    if rank == 0:

        def broken() -> list[int]:
            raise CheckpointError(f"--ckpt-dir {ckpt}: listing checkpoints failed: AccessDenied")

        manager.store.valid_steps = broken
    return manager.newest_step()


def manager_files(rank: int, ckpt_dirs: list[Path]) -> list[str]:
    """Make the manager of ``ckpt_dirs[rank]``; what that directory holds afterwards."""
    CheckpointManager(str(ckpt_dirs[rank]))
    return sorted(p.name for p in ckpt_dirs[rank].iterdir()) if ckpt_dirs[rank].exists() else []


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("coordination")
    (root / "afile").write_text("not a directory")
    return {name: root / name for name in ("listing", "afile", "ckpt", "node0", "node1", "shared")}


@pytest.fixture(scope="module")
def outcomes(dirs):
    return run_two_ranks(
        [
            ("rank0 fails", newest_with_rank0_listing_failing, (str(dirs["listing"]),)),
            ("rank1 bad dir", manager_files, ([dirs["ckpt"], dirs["afile"]],)),
            # What a local path looks like on two nodes: each rank sees a directory of its own.
            ("not shared", manager_files, ([dirs["node0"], dirs["node1"]],)),
            ("shared", manager_files, ([dirs["shared"], dirs["shared"]],)),
        ]
    )


def test_a_failure_of_rank0_alone_reaches_every_rank(outcomes, dirs):
    error = ("CheckpointError", f"--ckpt-dir {dirs['listing']}: listing checkpoints failed: AccessDenied")
    assert outcomes["rank0 fails"] == {0: error, 1: error}


def test_a_ckpt_dir_that_one_rank_cannot_use_fails_on_every_rank(outcomes, dirs):
    error = ("CheckpointError", f"--ckpt-dir {dirs['afile']}: is a file, not a directory")
    assert outcomes["rank1 bad dir"] == {0: error, 1: error}


def test_a_ckpt_dir_not_shared_by_all_ranks_is_refused_at_start(outcomes, dirs):
    error = (
        "CheckpointError",
        f"--ckpt-dir {dirs['node0']} is not shared by all ranks: rank 0 does not see the files of rank(s) 1; "
        "multi-node jobs need storage every node sees (FSx for Lustre) or s3://",
    )
    assert outcomes["not shared"] == {0: error, 1: error}
    assert list(dirs["node0"].iterdir()) == list(dirs["node1"].iterdir()) == [], "probe files are removed"


def test_a_shared_ckpt_dir_passes_and_keeps_no_probe_files(outcomes):
    assert outcomes["shared"] == {0: ("ok", []), 1: ("ok", [])}
