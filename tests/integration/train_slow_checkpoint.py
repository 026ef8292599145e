"""``torchrun -m tests.integration.train_slow_checkpoint ARGS``: the trainer, with rank 0's listing of
valid checkpoints stalled for ``AIDC_TEST_STALL_S`` seconds.

Rank 0 lists checkpoints alone while the other ranks wait: before resuming (they wait for its answer)
and when pruning after a save (they wait for it to finish). Stalling the listing stands in for a
multi-GB checkpoint on slow storage, which is what outlasts a short ``AIDC_DIST_TIMEOUT_S``.
"""

from __future__ import annotations

import os
import sys
import time

from workloads.train import checkpoint
from workloads.train.__main__ import main

_valid_steps = checkpoint.LocalStore.valid_steps


def _stalled_valid_steps(self: checkpoint.LocalStore) -> list[int]:
    time.sleep(float(os.environ["AIDC_TEST_STALL_S"]))
    return _valid_steps(self)


if __name__ == "__main__":
    checkpoint.LocalStore.valid_steps = _stalled_valid_steps
    sys.exit(main())
