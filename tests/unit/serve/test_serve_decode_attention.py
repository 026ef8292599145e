"""The Triton decode-attention kernel: compiled on a CUDA machine, else run on CPU by Triton's
interpreter (tests/unit/conftest.py sets TRITON_INTERPRET=1 before Triton is imported).

It must equal an fp64 reference for every row length (1, a split edge, the maximum), GQA, a head
dim that is not a power of two and strided queries, never read keys past a row's length, and the
engine driven by it must reproduce HF greedy decoding token for token.
"""

from __future__ import annotations

import math
import platform
import sys

import pytest
import torch
from test_serve_engine import _hf_greedy, _same_tokens
from torch import nn

from workloads.serve import decode_attention as da
from workloads.serve.config import EngineConfig
from workloads.serve.engine import Engine, SamplingParams
from workloads.serve.runner import _padded_head

#: Where the kernels run: compiled on the GPU when there is one, interpreted on CPU otherwise.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# The dev extra installs Triton on Linux x86-64 (the only platform with wheels), so there a
# missing Triton fails these tests; elsewhere the engine uses SDPA and there is nothing to run.
pytestmark = pytest.mark.skipif(
    da.triton is None and not (sys.platform == "linux" and platform.machine() == "x86_64"),
    reason="Triton publishes no wheel for this platform; the engine uses SDPA here",
)


def _reference(q: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    batch, heads, _, dim = q.shape
    group = heads // kc.shape[1]
    out = []
    for b in range(batch):
        n = int(lengths[b])
        k = kc[b, :, :n].double().repeat_interleave(group, 0)
        v = vc[b, :, :n].double().repeat_interleave(group, 0)
        scores = q[b].double() @ k.transpose(-1, -2) / math.sqrt(dim)
        out.append(torch.softmax(scores, -1) @ v)
    return torch.stack(out)


@pytest.mark.parametrize(
    ("batch", "heads", "kv_heads", "dim", "max_len", "dtype", "tol"),
    [
        (3, 4, 4, 64, 200, torch.float32, 1e-6),  # several splits per row
        (2, 8, 2, 32, 130, torch.float16, 1e-3),  # GQA, half precision cache
        (5, 2, 1, 48, 70, torch.float32, 1e-6),  # head dim padded to 64 inside the kernel
        (64, 12, 12, 64, 96, torch.float32, 1e-6),  # the 64-stream GPT-2 shape: two splits
    ],
)
def test_kernel_matches_fp64_reference(batch, heads, kv_heads, dim, max_len, dtype, tol) -> None:
    _check_against_reference(batch, heads, kv_heads, dim, max_len, dtype, tol)


def test_one_split_per_row_when_rows_times_heads_fill_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 rows x 4 heads "fill" a GPU of 16 programs: one split of the whole cache per row (the
    # production shape at 256+ streams, kept small so the interpreter runs it in seconds).
    monkeypatch.setattr(da, "TARGET_PROGRAMS", 16)
    assert da.split_size(4, 4, 150) >= 150
    _check_against_reference(4, 4, 2, 32, 150, torch.float32, 1e-6)


def _check_against_reference(batch, heads, kv_heads, dim, max_len, dtype, tol) -> None:
    g = torch.Generator().manual_seed(batch * 1000 + max_len)
    slots = batch + 2  # the cache has more slots than the step's rows
    kc = torch.randn(slots, kv_heads, max_len, dim, generator=g).to(DEVICE, dtype)
    vc = torch.randn(slots, kv_heads, max_len, dim, generator=g).to(DEVICE, dtype)
    # q as the runner passes it: a strided view of the fused qkv projection.
    q = torch.randn(batch, 1, 3, heads, dim, generator=g).to(DEVICE, dtype)[:, :, 0].transpose(1, 2)
    lengths = torch.randint(1, max_len + 1, (batch,), generator=g)
    lengths[0], lengths[-1] = 1, max_len
    if batch > 2:
        lengths[1] = da.BLOCK_N  # a split boundary
    lengths = lengths.to(DEVICE)
    out = da.decode_attention(q, kc, vc, lengths, max_len)
    assert out.shape == (batch, heads, 1, dim) and out.dtype == dtype
    ref = _reference(q.cpu(), kc.cpu(), vc.cpu(), lengths.cpu())
    err = float((out.cpu().double() - ref).norm() / ref.norm())
    assert err < tol, f"relative error {err:.2e}"


def test_keys_past_a_rows_length_are_never_read() -> None:
    """Poison the cache beyond each row's length: the result must not change (nor turn NaN)."""
    g = torch.Generator().manual_seed(3)
    kc, vc = (torch.randn(2, 2, 160, 16, generator=g).to(DEVICE) for _ in range(2))
    q = torch.randn(2, 2, 1, 16, generator=g).to(DEVICE)
    lengths = torch.tensor([5, 130], device=DEVICE)
    clean = da.decode_attention(q, kc, vc, lengths, 160)
    for b, n in enumerate(lengths.tolist()):
        kc[b, :, n:], vc[b, :, n:] = float("nan"), float("inf")
    assert torch.equal(da.decode_attention(q, kc, vc, lengths, 160), clean)


@pytest.mark.parametrize(("kv_heads", "dim"), [(4, 64), (2, 48)])
def test_write_kv_stores_each_rows_token_at_its_position(kv_heads: int, dim: int) -> None:
    g = torch.Generator().manual_seed(kv_heads + dim)
    k_cache, v_cache = (torch.randn(5, kv_heads, 40, dim, generator=g).to(DEVICE) for _ in range(2))
    qkv = torch.randn(3, 1, 3, kv_heads, dim, generator=g).to(DEVICE)  # strided views, as the runner has
    k, v = qkv[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
    positions = torch.tensor([0, 39, 17], device=DEVICE)
    want_k, want_v = k_cache.clone(), v_cache.clone()
    rows = torch.arange(3, device=DEVICE)
    want_k[rows, :, positions], want_v[rows, :, positions] = k[:, :, 0], v[:, :, 0]
    da.write_kv(k, v, k_cache, v_cache, positions)
    assert torch.equal(k_cache, want_k) and torch.equal(v_cache, want_v)


@pytest.mark.parametrize(("batch", "heads", "max_len"), [(1, 12, 2048), (64, 12, 768), (256, 32, 4096), (3, 1, 10)])
def test_split_size_covers_the_cache_in_whole_blocks(batch: int, heads: int, max_len: int) -> None:
    split = da.split_size(batch, heads, max_len)
    splits = math.ceil(max_len / split)
    assert split % da.BLOCK_N == 0 and split * splits >= max_len
    assert split < max_len + da.BLOCK_N  # no split wholly past the cache
    if batch * heads >= da.TARGET_PROGRAMS:
        assert splits == 1  # rows x heads already fill the GPU


@pytest.mark.parametrize("model", ["tiny-random", "tiny-random-llama"])
def test_engine_with_triton_attention_matches_hf_greedy(model: str) -> None:
    """The GPU scheduling path (padded buckets, one-step lag) with the kernel doing decode attention."""
    engine = Engine(EngineConfig(model=model, max_batch=4, max_model_len=160, decode_attention="triton"))
    assert engine.runner.triton_attention
    engine.runner.pad_buckets, engine.lag_steps = True, 1  # what CUDA does; on CPU set by hand
    # Rows from 1 key to well past the first split (64 keys), so splits are merged.
    g = torch.Generator().manual_seed(11)
    prompts = [torch.randint(0, 512, (n,), generator=g).tolist() for n in (1, 9, 70, 100, 30)]
    params = [SamplingParams(max_tokens=n, ignore_eos=True) for n in (5, 16, 1, 12, 16)]
    seqs = [engine.submit(p, sp) for p, sp in zip(prompts, params, strict=True)]
    for _ in range(200):
        if not engine.has_work:
            break
        engine.step()
    assert engine.runner.ctx_buckets == [160]  # one context bucket: the kernel reads live keys only
    assert da.split_size(4, engine.runner.arch.n_heads, 160) == da.BLOCK_N  # rows above span splits
    for prompt, sp, seq in zip(prompts, params, seqs, strict=True):
        assert _same_tokens(seq.out_ids, _hf_greedy(engine, prompt, sp.max_tokens), sp.max_tokens)


def test_padded_lm_head_gives_the_same_logits() -> None:
    """The CUDA-only padding (rows to a multiple of 64) checked here by asking for a CUDA device."""
    head = nn.Linear(16, 50, bias=False)
    weight, rows = _padded_head(head, torch.device("cuda"))
    assert weight.shape == (64, 16) and rows == 50 and not weight[50:].any()
    h = torch.randn(3, 1, 16)
    torch.testing.assert_close(torch.nn.functional.linear(h, weight)[..., :rows], head(h), rtol=1e-6, atol=1e-6)
    assert _padded_head(head, torch.device("cpu"))[0] is None  # CPU: the model's own head
    assert _padded_head(nn.Linear(16, 50), torch.device("cuda"))[0] is None  # a bias: left alone


def test_unknown_attention_backend_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"decode_attention='flash' is invalid: allowed auto\|sdpa\|triton"):
        EngineConfig(decode_attention="flash")
