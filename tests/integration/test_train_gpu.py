"""The trainer on a real GPU: bf16 autocast, fused AdamW, torch.compile, chunked loss, NCCL (1 rank)."""

from __future__ import annotations

import pytest
import torch

from workloads.train.local import run_local
from workloads.train.metrics import read_metrics
from workloads.train.mfu import peak_flops

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA not available here)"),
]


def test_compiled_bf16_training_learns_and_reports_mfu(tmp_path):
    metrics = tmp_path / "m.jsonl"
    args = [
        "--preset",
        "tiny",
        "--steps",
        "40",
        "--lr",
        "3e-3",
        "--warmup",
        "5",
        "--compile",
        "--loss-chunks",
        "2",
        "--metrics",
        str(metrics),
        "--ckpt-dir",
        str(tmp_path / "ckpt"),
        "--ckpt-every",
        "20",
    ]
    proc = run_local(1, args, timeout=540)
    assert proc.returncode == 0, proc.stdout[-4000:]
    steps, _ = read_metrics(metrics)
    assert steps[40]["loss"] < steps[1]["loss"] - 1.5
    assert steps[40]["mem_gib"] > 0
    if peak_flops(torch.cuda.get_device_name(0)) is not None:
        assert steps[40]["mfu"] is not None and 0 < steps[40]["mfu"] < 1
