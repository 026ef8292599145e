"""CUDA path: captured decode graphs and the overlapped host reads give HF's greedy tokens.

Runs only where a CUDA device is visible (the H100 benchmark machine); CI has none.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from workloads.serve.config import EngineConfig
from workloads.serve.engine import Engine, SamplingParams

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has no GPU)"),
]


@pytest.mark.parametrize("model", ["tiny-random", "tiny-random-llama"])
def test_cuda_graph_decode_matches_hf_greedy(model: str) -> None:
    # float32 so that graph and HF agree bit-for-bit on argmax; bf16 parity is not token-exact.
    engine = Engine(EngineConfig(model=model, device="cuda", dtype="float32", max_batch=8, max_model_len=256))
    assert engine.runner.use_graphs and engine.lag_steps == 1
    assert engine.runner.capture_all() == len(engine.runner.batch_buckets) * len(engine.runner.ctx_buckets)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 512, (n,), generator=g).tolist() for n in (1, 5, 17, 33, 64, 100, 7, 12, 50, 3)]
    lengths = [40, 3, 64, 1, 20, 64, 9, 33, 64, 2]
    seqs = [
        engine.submit(p, SamplingParams(max_tokens=n, ignore_eos=True)) for p, n in zip(prompts, lengths, strict=True)
    ]
    while engine.has_work:
        engine.step()
    for p, n, seq in zip(prompts, lengths, seqs, strict=True):
        x = torch.tensor([p], device="cuda")
        cfg = GenerationConfig(do_sample=False, max_new_tokens=n, pad_token_id=0)
        ref = engine.hf_model.generate(x, attention_mask=torch.ones_like(x), generation_config=cfg)[0, len(p) :]
        ref = ref.tolist()
        assert seq.out_ids[: len(ref)] == ref and (len(ref) == n or ref[-1] == 256)


def test_sampling_on_cuda_respects_lengths() -> None:
    engine = Engine(EngineConfig(model="tiny-random", device="cuda", max_batch=4, max_model_len=128))
    params = SamplingParams(max_tokens=30, temperature=0.9, top_p=0.9, ignore_eos=True)
    outs = engine.generate([[1, 2, 3]] * 6, params)
    assert all(len(o) == 30 and all(0 <= t < 512 for t in o) for o in outs)


@pytest.mark.parametrize("model", ["tiny-random", "gpt2-124m-random"])
def test_bf16_captured_decode_matches_eager_decode(model: str) -> None:
    # The benchmark's dtype: the graph must compute what the eager step computes (same kernels,
    # same attention backend choice), within bf16 rounding.
    engine = Engine(EngineConfig(model=model, device="cuda", dtype="bfloat16", max_batch=8, max_model_len=256))
    g = torch.Generator().manual_seed(1)
    for n in (7, 17, 64, 130):
        engine.submit(torch.randint(0, 500, (n,), generator=g).tolist(), SamplingParams(max_tokens=50, ignore_eos=True))
    for _ in range(5):
        engine.step()
    runner = engine.runner
    live = [s for s in engine._slots if s is not None]
    batch, ctx = runner.bucket(max(s.slot for s in live) + 1, max(s.cache_len for s in live) + 1)
    eager = runner._decode_eager(batch, ctx)[0].clone()
    graph = runner.decode(batch, ctx)[0].clone()
    torch.cuda.synchronize()
    assert runner.use_graphs and (batch, ctx) in runner._graphs
    torch.testing.assert_close(graph, eager, rtol=2e-2, atol=2e-2)


def test_captured_path_stops_on_every_eos_id_and_applies_top_k() -> None:
    """Stops are host-side checks on the tokens read back one step late; top_k runs after the graph."""
    engine = Engine(EngineConfig(model="tiny-random", device="cuda", dtype="float32", max_batch=4, max_model_len=128))
    prompt = [7, 300, 42, 9, 120]
    free = engine.generate([prompt], SamplingParams(max_tokens=16, ignore_eos=True))[0]
    stop = next(t for i, t in enumerate(free) if i >= 1 and t not in free[:i])
    engine.eos_token_ids = frozenset({256, stop})
    outs = engine.generate([prompt] * 3, SamplingParams(max_tokens=16))
    assert outs == [free[: free.index(stop)]] * 3
    hot = SamplingParams(max_tokens=16, temperature=1.5, top_k=1, ignore_eos=True)
    assert engine.generate([prompt] * 3, hot) == [free] * 3
