"""Where the time goes, for explaining a missed GPU goal: a kernel table plus the bound it implies.

    python benchmarks/gpu/gpu_profile.py serve --out profile-serve.txt   # 64-stream decode step
    python benchmarks/gpu/gpu_profile.py train --out profile-train.txt   # 350m training steps
    python benchmarks/gpu/gpu_profile.py serve --smoke --out x.txt       # CPU wiring check

serve: times the captured decode graph alone (GPU time per step) against ``Engine.step`` (GPU +
host bookkeeping), compares with the HBM floor (weights + KV read once per step), then profiles
the eager decode step (graphs hide their kernels from the profiler). train: times steps after
compile warm-up, then profiles a few; the table shows the matmul vs attention vs fused-kernel
split and the gap between GPU busy time and wall time (host-bound if large).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from runinfo import run_info  # noqa: E402

#: HBM bandwidth used for the decode floor, bytes/s (H100 SXM HBM3 3.35 TB/s; FACTS.md-style datasheet).
HBM_BYTES_S = {"H100": 3.35e12, "H200": 4.8e12}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], n: int, device: torch.device) -> float:
    """Mean seconds per call over ``n`` calls (after the caller's warm-up)."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / n


def kernel_table(fn: Callable[[], object], n: int, device: torch.device, rows: int = 30) -> tuple[str, float]:
    """Profiler table of ``n`` calls, sorted by device time, and device-busy seconds per call."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(n):
            fn()
        _sync(device)
    events = prof.key_averages()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    # On CUDA an operator row's self device time is its kernels' time, which the kernels' own rows
    # list again: sum the kernel rows only, or the busy time reads double.
    cuda = getattr(DeviceType, "CUDA", None)
    rows_summed = [e for e in events if device.type != "cuda" or e.device_type == cuda]
    busy_us = sum(getattr(e, key) for e in rows_summed)
    return events.table(sort_by=key, row_limit=rows), busy_us / 1e6 / n


def profile_serve(a: argparse.Namespace) -> list[str]:
    from workloads.serve.config import EngineConfig
    from workloads.serve.engine import Engine, SamplingParams

    model, device = ("tiny-random", "cpu") if a.smoke else ("gpt2-124m-random", "auto")
    streams, prompt_len = (4, 16) if a.smoke else (a.streams, 128)
    engine = Engine(EngineConfig(model=model, device=device, max_batch=streams, max_model_len=prompt_len + 128))
    dev, runner = engine.device, engine.runner
    for _ in range(streams):
        engine.submit(list(range(1, prompt_len + 1)), SamplingParams(max_tokens=100, ignore_eos=True))
    for _ in range(4):  # admit everything, then a few decode steps
        engine.step()
    batch, ctx = runner.bucket(streams, prompt_len + 8)
    runner.capture_all()
    n = 5 if a.smoke else 200
    graph_s = timed(lambda: runner.decode(batch, ctx), n, dev)
    eager_s = timed(lambda: runner._decode_eager(batch, ctx), max(5, n // 4), dev)
    table, busy_s = kernel_table(lambda: runner._decode_eager(batch, ctx), 5 if a.smoke else 20, dev)
    # Engine.step: decode + sampling-free greedy + host reads + bookkeeping, per step.
    steps = 5 if a.smoke else 60
    step_s = timed(engine.step, steps, dev)
    weights = sum(p.numel() * p.element_size() for p in engine.hf_model.parameters())
    # SDPA reads every key up to the context bucket; the Triton kernel only each row's live keys.
    keys = min(ctx, prompt_len + 8) if runner.triton_attention else ctx
    kv_row = runner.k_cache[:, 0, :, :keys].numel() * runner.k_cache.element_size() * 2
    floor_bytes = weights + batch * kv_row
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    bw = next((v for k, v in HBM_BYTES_S.items() if k in name), None)
    label = "captured graph replay" if runner.use_graphs else "decode (no CUDA graph)"
    lines = [
        f"decode step, batch bucket {batch}, context bucket {ctx}, {streams} streams, dtype {runner.dtype}, "
        f"attention {'triton' if runner.triton_attention else 'sdpa'}",
        f"  {label:<22}: {graph_s * 1e3:8.3f} ms/step  -> {batch / graph_s:10.0f} tok/s",
        f"  eager decode          : {eager_s * 1e3:8.3f} ms/step",
        f"  device busy (eager)   : {busy_s * 1e3:8.3f} ms/step (sum of kernel times)",
        f"  Engine.step (all)     : {step_s * 1e3:8.3f} ms/step  -> {batch / step_s:10.0f} tok/s",
        f"  bytes read per step   : {floor_bytes / 1e6:8.1f} MB "
        f"(weights {weights / 1e6:.1f} + KV {batch * kv_row / 1e6:.1f})",
    ]
    if bw:
        lines.append(f"  HBM floor at {bw / 1e12:.2f} TB/s: {floor_bytes / bw * 1e3:8.3f} ms/step")
    lines.append(f"  host overhead per step (Engine.step - graph): {(step_s - graph_s) * 1e3:.3f} ms")
    return [*lines, "", "eager decode kernels:", table]


def profile_train(a: argparse.Namespace) -> list[str]:
    import train_mfu

    args = train_mfu.parse_args(["--smoke"] if a.smoke else ["--presets", a.preset, *a.train_args])
    device = torch.device("cpu") if a.smoke else torch.device("cuda", 0)
    train_mfu.select_sdpa(args.sdpa)
    s = train_mfu.setup(args.names[0], args, device)
    for _ in range(args.warmup):
        s.step()
    n = 2 if a.smoke else 10
    step_s = timed(s.step, n, device)
    table, busy_s = kernel_table(s.step, 2 if a.smoke else 3, device)
    tokens = s.batch * s.seq_len
    return [
        f"train step, preset {args.names[0]}, batch {s.batch} x {s.seq_len}, compile={args.compile}",
        f"  wall        : {step_s * 1e3:8.2f} ms/step -> {tokens / step_s:10.0f} tok/s",
        f"  device busy : {busy_s * 1e3:8.2f} ms/step "
        f"({100 * busy_s / step_s:.0f}% of wall; the rest is host/launch gaps)",
        "",
        "kernels:",
        table,
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("serve", "train"))
    p.add_argument("--out", type=Path, required=True, help="text report path")
    p.add_argument("--streams", type=int, default=64, help="serve: concurrent streams")
    p.add_argument("--preset", default="350m", help="train: preset")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model: a wiring check")
    a, a.train_args = p.parse_known_args(argv)
    if not a.smoke and not torch.cuda.is_available():
        p.error("no CUDA device: use --smoke for a CPU wiring check")
    lines = (profile_serve if a.what == "serve" else profile_train)(a)
    info = run_info()
    header = f"profile {a.what}: device {info['device']}, commit {info['commit']}, torch {info.get('torch')}"
    text = "\n".join([header, *lines])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
