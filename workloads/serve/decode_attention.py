"""Decode attention (one query token per sequence) over the slot-indexed KV cache, in Triton.

Why not SDPA: at decode time each row attends to its own number of keys. SDPA needs one key
length for the whole batch plus a mask, so every step reads the cache up to the longest row (the
graph's context bucket) and its memory-efficient kernel tiles 64 query rows for a single query.
This kernel is split-K "flash decoding": program ``(b, h, s)`` reads only the keys of split ``s``
that row ``b`` really has (``lengths[b]``), keeps an online softmax in fp32, and a second kernel
merges the splits. The bytes read are the live K/V only, so a step's cost follows the sequences'
real lengths, not the bucket, and one CUDA graph per batch size covers every context length.

Tests run the same kernels on CPU with ``TRITON_INTERPRET=1`` against SDPA.
"""

from __future__ import annotations

import math

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the runner uses SDPA instead
    triton = None

#: Keys one loop iteration of a program reads.
BLOCK_N = 64
#: Programs to aim for in one launch: an H100 has 132 SMs; each program's key loop is a chain of
#: dependent loads, so many short programs hide memory latency better than few long ones.
TARGET_PROGRAMS = 4096
_LOG2E = 1.4426950408889634


def available(device: torch.device) -> bool:
    """Whether the Triton kernels can run for tensors on ``device``."""
    return triton is not None and device.type == "cuda"


def interpreted() -> bool:
    """Whether Triton runs kernels in its interpreter (``TRITON_INTERPRET=1``): on CPU tensors too."""
    return triton is not None and bool(triton.knobs.runtime.interpret)


def check_usable(attention: str, device: torch.device) -> None:
    """Refuse ``attention="triton"`` where the kernels cannot run, at start rather than at the
    first request (the server would start, answer /health, and fail every request)."""
    if attention == "triton" and not (available(device) or interpreted()):
        raise ValueError(
            f"decode_attention='triton' is invalid on device {device.type!r}: the Triton kernels need CUDA "
            "(or TRITON_INTERPRET=1, the tests' interpreter); allowed auto|sdpa"
        )


def split_size(batch: int, heads: int, max_len: int) -> int:
    """Keys per split: few splits when batch x heads already fills the GPU, more for small batches."""
    splits = max(1, min(math.ceil(TARGET_PROGRAMS / (batch * heads)), math.ceil(max_len / BLOCK_N)))
    return math.ceil(math.ceil(max_len / splits) / BLOCK_N) * BLOCK_N


if triton is not None:

    @triton.jit
    def _split_kernel(
        q, k, v, lengths, o_part, m_part, l_part,
        stride_qb, stride_qh,
        stride_kb, stride_kh, stride_kl,
        stride_vb, stride_vh, stride_vl,
        n_splits, scale_log2,
        SPLIT: tl.constexpr, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
        BLOCK: tl.constexpr,
    ):  # fmt: skip
        b, h, s = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)
        n_heads = tl.num_programs(1)  # int64 row offsets below: a layer's cache may pass 2**31
        kvh = h // GROUP
        length = tl.load(lengths + b)
        start = s * SPLIT
        end = tl.minimum(start + SPLIT, length)
        offs_d = tl.arange(0, BLOCK_D)
        mask_d = offs_d < HEAD_DIM
        qv = tl.load(q + b * stride_qb + h * stride_qh + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        qv = qv * scale_log2  # scores in log2 units: exp2 below
        m_i = tl.max(tl.full([BLOCK], float("-inf"), tl.float32), 0)
        l_i = tl.sum(tl.zeros([BLOCK], tl.float32), 0)
        acc = tl.zeros([BLOCK_D], tl.float32)
        k_row = k + b * stride_kb + kvh * stride_kh
        v_row = v + b * stride_vb + kvh * stride_vh
        # Static trip count (the split size is a compile-time constant) and one branch that skips
        # splits wholly past the row's length: those programs read nothing.
        if start < length:
            for i in range(0, SPLIT // BLOCK):
                offs_n = start + i * BLOCK + tl.arange(0, BLOCK)
                mask_n = offs_n < end
                tile = mask_n[:, None] & mask_d[None, :]
                kt = tl.load(k_row + offs_n[:, None] * stride_kl + offs_d[None, :], mask=tile, other=0.0)
                scores = tl.where(mask_n, tl.sum(kt.to(tl.float32) * qv[None, :], 1), float("-inf"))
                m_new = tl.maximum(m_i, tl.max(scores, 0))
                alpha = tl.exp2(m_i - m_new)
                p = tl.exp2(scores - m_new)
                vt = tl.load(v_row + offs_n[:, None] * stride_vl + offs_d[None, :], mask=tile, other=0.0)
                acc = acc * alpha + tl.sum(p[:, None] * vt.to(tl.float32), 0)
                l_i = l_i * alpha + tl.sum(p, 0)
                m_i = m_new
        row = (b * n_heads + h) * n_splits + s
        tl.store(o_part + row * BLOCK_D + offs_d, acc)
        tl.store(m_part + row, m_i)
        tl.store(l_part + row, l_i)

    @triton.jit
    def _combine_kernel(
        o_part, m_part, l_part, lengths, out,
        stride_ob, stride_oh,
        n_splits,
        SPLIT: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr,
    ):  # fmt: skip
        b, h = tl.program_id(0).to(tl.int64), tl.program_id(1)
        n_heads = tl.num_programs(1)
        # Splits that hold at least one key of row b (a length is never above the launch bound,
        # but a stale row must not read its neighbour's partials either way).
        used = tl.minimum(tl.cdiv(tl.load(lengths + b), SPLIT), n_splits)
        offs_s = tl.arange(0, BLOCK_S)
        mask_s = offs_s < used
        rows = (b * n_heads + h) * n_splits + offs_s
        m = tl.load(m_part + rows, mask=mask_s, other=float("-inf"))
        l_s = tl.load(l_part + rows, mask=mask_s, other=0.0)
        m_max = tl.max(m, 0)
        w = tl.where(mask_s, tl.exp2(m - m_max), 0.0)
        offs_d = tl.arange(0, BLOCK_D)
        o = tl.load(o_part + rows[:, None] * BLOCK_D + offs_d[None, :], mask=mask_s[:, None], other=0.0)
        res = tl.sum(o * w[:, None], 0) / tl.sum(l_s * w, 0)
        tl.store(out + b * stride_ob + h * stride_oh + offs_d, res.to(out.dtype.element_ty), mask=offs_d < HEAD_DIM)


if triton is not None:

    @triton.jit
    def _kv_write_kernel(
        k, v, k_cache, v_cache, positions,
        stride_kb, stride_kh, stride_vb, stride_vh,
        stride_cb, stride_ch, stride_cl,
        HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        b, h = tl.program_id(0).to(tl.int64), tl.program_id(1)
        offs = tl.arange(0, BLOCK_D)
        mask = offs < HEAD_DIM
        dst = b * stride_cb + h * stride_ch + tl.load(positions + b) * stride_cl + offs
        tl.store(k_cache + dst, tl.load(k + b * stride_kb + h * stride_kh + offs, mask=mask), mask=mask)
        tl.store(v_cache + dst, tl.load(v + b * stride_vb + h * stride_vh + offs, mask=mask), mask=mask)


def write_kv(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, positions: torch.Tensor
) -> None:
    """``cache[b, :, positions[b]] = new[b, :, 0]`` for K and V in one launch (two index_put otherwise).

    ``k``/``v``: ``[B, KVH, 1, D]`` (any strides, unit stride in D); caches as for
    :func:`decode_attention`, with the same shape and strides.
    """
    batch, kv_heads, _, head_dim = k.shape
    if k_cache.stride() != v_cache.stride() or k.stride(-1) != 1 or v.stride(-1) != 1 or k_cache.stride(-1) != 1:
        raise ValueError("write_kv: K and V caches must share strides and the head dim be contiguous")
    _kv_write_kernel[(batch, kv_heads)](
        k, v, k_cache, v_cache, positions,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        HEAD_DIM=head_dim, BLOCK_D=triton.next_power_of_2(head_dim),
    )  # fmt: skip


def decode_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, lengths: torch.Tensor, max_len: int
) -> torch.Tensor:
    """Attention of one query per row over that row's first ``lengths[b]`` cached keys.

    ``q``: ``[B, H, 1, D]`` (any strides, unit stride in D); ``k_cache``/``v_cache``: one layer's
    cache ``[slots >= B, KVH, L, D]`` with ``H % KVH == 0`` (GQA); ``lengths``: ``[B]`` integers in
    ``1..max_len``; ``max_len`` bounds every length (it sizes the launch, so it must be fixed for
    a captured graph). Returns ``[B, H, 1, D]`` in ``q``'s dtype, causal by construction.
    """
    batch, heads, _, head_dim = q.shape
    kv_heads = k_cache.shape[1]
    if heads % kv_heads or q.stride(-1) != 1 or k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError("decode_attention: H must be a multiple of KVH and the head dim contiguous")
    split = split_size(batch, heads, max_len)
    n_splits = math.ceil(max_len / split)
    block_d = triton.next_power_of_2(head_dim)
    o_part = torch.empty((batch, heads, n_splits, block_d), device=q.device, dtype=torch.float32)
    m_part = torch.empty((batch, heads, n_splits), device=q.device, dtype=torch.float32)
    l_part = torch.empty_like(m_part)
    out = torch.empty((batch, heads, head_dim), device=q.device, dtype=q.dtype)
    _split_kernel[(batch, heads, n_splits)](
        q, k_cache, v_cache, lengths, o_part, m_part, l_part,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        n_splits, _LOG2E / math.sqrt(head_dim),
        SPLIT=split, GROUP=heads // kv_heads, HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK=BLOCK_N,
    )  # fmt: skip
    _combine_kernel[(batch, heads)](
        o_part, m_part, l_part, lengths, out,
        out.stride(0), out.stride(1),
        n_splits,
        SPLIT=split, HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_S=triton.next_power_of_2(n_splits),
    )  # fmt: skip
    return out[:, :, None, :]
