"""Serving throughput: HF generate (dynamic cache; static cache + torch.compile) vs the built-in engine.

One command on an H100 (GPT-2 124M, bf16, random weights, 128-token prompts, 128 new tokens):

    python benchmarks/serve_throughput.py --out serve_throughput-h100.json

measures, in the same process and on the same weights, output tokens/s and p50/p99 TTFT and
TPOT at concurrency 1, 16, 64; then a mixed workload (prompts 16-512, outputs 16-256, Poisson
arrivals) served with continuous vs static batching by the same engine. Prints a table, writes
JSON, and checks the issue's goals on CUDA. ``--smoke`` runs a tiny model on CPU in seconds.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import transformers  # noqa: E402
from runinfo import run_info, write_json  # noqa: E402  (benchmarks/, first on sys.path)
from serve_goals import goals  # noqa: E402

from workloads.serve.config import EngineConfig  # noqa: E402
from workloads.serve.engine import Engine, SamplingParams  # noqa: E402

#: Run order: the engine and the mixed workload first, HF compiled static cache (slowest) last.
SECTIONS = ("engine", "mixed", "hf_dynamic", "hf_static_compile")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary(tokens: int, wall: float, ttft: list[float], tpot: list[float]) -> dict[str, float]:
    return {
        "output_tok_s": tokens / wall,
        "ttft_p50_ms": pct(ttft, 50) * 1e3,
        "ttft_p99_ms": pct(ttft, 99) * 1e3,
        "tpot_p50_ms": pct(tpot, 50) * 1e3,
        "tpot_p99_ms": pct(tpot, 99) * 1e3,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class StepClock(transformers.LogitsProcessor):
    """Timestamps every decoding step of HF generate (after a device sync) for TTFT/TPOT."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times = device, []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        sync(self.device)
        self.times.append(time.perf_counter())
        return scores


def bench_hf(engine: Engine, prompts: list[list[int]], gen: int, static: bool, reps: int) -> dict[str, float]:
    """HF generate on the same weights; with ``static`` the static cache (auto-compiled on CUDA)."""
    model, device = engine.hf_model, engine.device
    x = torch.tensor(prompts, device=device)
    clock = StepClock(device)
    # min_new_tokens: every sequence decodes exactly ``gen`` tokens, like ignore_eos on the engine.
    config = transformers.GenerationConfig(
        do_sample=False,
        max_new_tokens=gen,
        min_new_tokens=gen,
        pad_token_id=0,
        cache_implementation="static" if static else None,
    )
    kwargs: dict[str, Any] = dict(
        attention_mask=torch.ones_like(x),
        generation_config=config,
        logits_processor=transformers.LogitsProcessorList([clock]),
    )
    for _ in range(3 if static else 1):  # warm-up; compiled static-cache generate settles after 2-3 calls
        model.generate(x, **kwargs)
    ttft, tpot, tokens, wall = [], [], 0, 0.0
    for _ in range(reps):
        clock.times.clear()
        sync(device)
        t0 = time.perf_counter()
        out = model.generate(x, **kwargs)
        sync(device)
        wall += time.perf_counter() - t0
        assert out.shape[1] == x.shape[1] + gen, "HF stopped early"
        tokens += len(prompts) * gen
        ttft += [clock.times[0] - t0] * len(prompts)
        tpot += [(clock.times[-1] - clock.times[0]) / max(1, len(clock.times) - 1)] * len(prompts)
    return summary(tokens, wall, ttft, tpot)


def run_until_idle(engine: Engine) -> None:
    while engine.has_work:
        engine.step()


def bench_engine(engine: Engine, prompts: list[list[int]], gen: int, reps: int) -> dict[str, float]:
    params = SamplingParams(max_tokens=gen, ignore_eos=True)
    for p in prompts:  # warm-up wave
        engine.submit(p, params)
    run_until_idle(engine)
    ttft, tpot, tokens, wall = [], [], 0, 0.0
    for _ in range(reps):
        sync(engine.device)
        t0 = time.perf_counter()
        seqs = [engine.submit(p, params) for p in prompts]
        run_until_idle(engine)
        sync(engine.device)
        wall += time.perf_counter() - t0
        assert all(len(s.out_ids) == gen for s in seqs), "engine stopped early"
        tokens += sum(len(s.out_ids) for s in seqs)
        ttft += [s.t_first - s.t_arrival for s in seqs]
        tpot += [s.tpot_s for s in seqs if s.tpot_s is not None]
    return summary(tokens, wall, ttft, tpot)


@dataclass
class MixedRequest:
    arrival_s: float
    prompt: list[int]
    max_tokens: int


def mixed_requests(n: int, rate: float, prompt: tuple[int, int], out: tuple[int, int], vocab: int, seed: int):
    rng, t, reqs = random.Random(seed), 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        tokens = [rng.randrange(vocab) for _ in range(rng.randint(*prompt))]
        reqs.append(MixedRequest(t, tokens, rng.randint(*out)))
    return reqs


def run_mixed(engine: Engine, reqs: list[MixedRequest], static: bool) -> dict[str, float]:
    """Replay Poisson arrivals. Static batching admits a new batch only when the last one is done."""
    pending, seqs = collections.deque(reqs), []
    t0 = time.perf_counter()
    while pending or engine.has_work:
        now = time.perf_counter() - t0
        if not static or not engine.has_work:
            while (
                pending and pending[0].arrival_s <= now and (not static or engine.num_waiting < engine.config.max_batch)
            ):
                r = pending.popleft()
                seqs.append((r, engine.submit(r.prompt, SamplingParams(max_tokens=r.max_tokens, ignore_eos=True))))
        if engine.has_work:
            engine.step()
        elif pending:
            time.sleep(max(0.0, min(0.002, pending[0].arrival_s - now)))
    sync(engine.device)
    end = max(s.t_last for _, s in seqs)
    latency = [s.t_last - (t0 + r.arrival_s) for r, s in seqs]
    ttft = [s.t_first - (t0 + r.arrival_s) for r, s in seqs]
    return {
        "output_tok_s": sum(len(s.out_ids) for _, s in seqs) / (end - t0),
        "latency_p50_s": pct(latency, 50),
        "latency_p99_s": pct(latency, 99),
        "ttft_p99_s": pct(ttft, 99),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny model on CPU, small sizes (seconds)")
    p.add_argument("--model", default="gpt2-124m-random", help="engine preset or local model directory")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA) |float32|bfloat16|float16")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--gen-len", type=int, default=128)
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated stream counts")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per point")
    p.add_argument("--mixed-requests", type=int, default=512)
    p.add_argument("--mixed-rate", type=float, default=300.0, help="Poisson arrival rate, requests/s")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"subset of {','.join(SECTIONS)}")
    p.add_argument("--no-cuda-graphs", action="store_true", help="engine decode without CUDA graphs")
    p.add_argument("--out", default=None, help="JSON path (default serve_throughput-<device>.json)")
    a = p.parse_args(argv)
    if a.smoke:
        a.model, a.device, a.prompt_len, a.gen_len, a.concurrency, a.reps = "tiny-random", "cpu", 16, 16, "1,4", 1
        a.mixed_requests, a.mixed_rate = 16, 200.0
    a.concurrency = [int(c) for c in a.concurrency.split(",")]
    a.sections = [s for s in a.sections.split(",") if s]
    unknown = sorted(set(a.sections) - set(SECTIONS))
    if unknown:
        p.error(f"--sections has unknown {unknown}: allowed {','.join(SECTIONS)}")
    return a


def print_table(results: dict[str, Any], checks: list[tuple[str, bool]]) -> None:
    cols = ("output_tok_s", "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms")
    print(f"\n{'system':<20}{'streams':>8}" + "".join(f"{c:>14}" for c in cols))
    for name in ("hf_dynamic", "hf_static_compile", "engine"):
        for c, row in results.get(name, {}).items():
            print(f"{name:<20}{c:>8}" + "".join(f"{row[k]:>14.1f}" for k in cols))
    mcols = ("output_tok_s", "latency_p50_s", "latency_p99_s", "ttft_p99_s")
    if results.get("mixed"):
        print(f"\n{'mixed workload':<20}" + "".join(f"{c:>16}" for c in mcols))
        for name, row in results["mixed"].items():
            print(f"{name:<20}" + "".join(f"{row[k]:>16.3f}" for k in mcols))
    for text, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {text}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    a = parse_args(argv)
    mixed_prompt, mixed_out = ((8, 64), (4, 32)) if a.smoke else ((16, 512), (16, 256))
    max_len = max(a.prompt_len + a.gen_len, mixed_prompt[1] + mixed_out[1])
    slots = max([*a.concurrency, 4 if a.smoke else 64])  # the mixed workload runs 64 slots on GPU
    cfg = EngineConfig(
        model=a.model,
        device=a.device,
        dtype=a.dtype,
        max_batch=slots,
        max_model_len=max_len,
        cuda_graphs=not a.no_cuda_graphs,
    )
    t0 = time.perf_counter()
    engine = Engine(cfg)
    engine.runner.capture_all()
    setup_s = time.perf_counter() - t0
    vocab, rng = engine.runner.vocab_size, random.Random(0)
    prompts = {c: [[rng.randrange(vocab) for _ in range(a.prompt_len)] for _ in range(c)] for c in a.concurrency}
    out = Path(a.out or f"serve_throughput-{engine.device.type}.json")
    results: dict[str, Any] = {"meta": meta(engine, a, setup_s)}
    # Cheapest and most telling first (HF's compiled static cache is the slowest to set up); the
    # JSON is rewritten after every point, and a failing section is recorded, not fatal.
    for section in SECTIONS:
        if section not in a.sections:
            continue
        try:
            if section == "mixed":
                reqs = mixed_requests(a.mixed_requests, a.mixed_rate, mixed_prompt, mixed_out, vocab, seed=1)
                # Warm-up over the whole workload: every prefill shape has run once before either
                # mode is timed, so neither pays first-use costs the other does not.
                run_mixed(engine, reqs, static=False)
                results["mixed"] = {"continuous": run_mixed(engine, reqs, False)}
                results["mixed"]["static"] = run_mixed(engine, reqs, True)
            for c in [] if section == "mixed" else a.concurrency:
                if section == "engine":
                    row = bench_engine(engine, prompts[c], a.gen_len, a.reps)
                else:
                    row = bench_hf(engine, prompts[c], a.gen_len, section == "hf_static_compile", a.reps)
                results.setdefault(section, {})[str(c)] = row
                print(f"done: {section} at {c} streams: {row['output_tok_s']:.0f} tok/s", flush=True)
        except Exception as exc:  # noqa: BLE001 (recorded in the JSON and printed; the run goes on)
            traceback.print_exc()
            results.setdefault("errors", {})[section] = f"{type(exc).__name__}: {exc}"[:2000]
        # HF compiles the static-cache forward only on accelerators; record whether it did.
        results["meta"]["hf_static_compiled"] = hasattr(engine.hf_model, "_compiled_call")
        write_json(out, results)
    checks = goals(results, a.concurrency)
    results["goals"] = {text: ok for text, ok in checks}
    print_table(results, checks if engine.device.type == "cuda" else [])
    for section, error in results.get("errors", {}).items():
        print(f"FAILED {section}: {error}")
    write_json(out, results)
    print(f"\nwrote {out}")
    return results


def meta(engine: Engine, a: argparse.Namespace, setup_s: float) -> dict[str, Any]:
    return run_info(
        transformers=transformers.__version__,
        model=a.model,
        dtype=str(engine.runner.dtype),
        prompt_len=a.prompt_len,
        gen_len=a.gen_len,
        reps=a.reps,
        cuda_graphs=engine.runner.use_graphs,
        graphs_captured=len(engine.runner._graphs),
        engine_setup_s=round(setup_s, 2),
        mixed_requests=a.mixed_requests,
        mixed_rate_rps=a.mixed_rate,
    )


if __name__ == "__main__":
    sys.exit(1 if main().get("errors") else 0)
