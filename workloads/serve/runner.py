"""Model runner: a Hugging Face causal LM driven over a preallocated, slot-indexed KV cache.

The runner reuses the model's own modules (norms, projections, MLPs, rotary embedding) and only
replaces attention, so that every sequence can sit at its own position: the cache is one tensor
per layer of shape ``[slots, kv_heads, max_model_len, head_dim]`` and decode row ``i`` is slot
``i``. The scheduler keeps sequences in the lowest free slots, so a decode step over the first
``B`` slots reads plain views of the cache (no gather), and on CUDA each ``(B, ctx)`` bucket is
one captured CUDA graph whose inputs are the persistent ``tokens``/``positions`` buffers.
"""

from __future__ import annotations

import bisect
import contextlib
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from workloads.serve import decode_attention

#: Attention kernels the engine allows on CUDA. cuDNN attention is left out: recent builds prefer
#: it for bf16 on Hopper, and for some mask/stride combinations it raises "No execution plans
#: support the graph" instead of falling back (pytorch#140930); the memory-efficient kernel takes
#: the engine's boolean masks and strided cache views, and math is the fallback (e.g. for GQA).
CUDA_SDPA_BACKENDS = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]


def _buckets(limit: int, start: int) -> list[int]:
    """Powers of two from ``start`` below ``limit``, then ``limit`` itself."""
    out, b = [], start
    while b < limit:
        out.append(b)
        b *= 2
    return out + [limit]


class _GPT2:
    """GPT-2 layout: learned positions, fused qkv (Conv1D), pre-LayerNorm blocks."""

    def __init__(self, hf: Any) -> None:
        cfg = hf.config
        self.tr, self.lm_head = hf.transformer, hf.lm_head
        self.layers = list(self.tr.h)
        self.n_heads = self.n_kv = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.max_positions = cfg.n_positions
        self._tanh_gelu = cfg.activation_function in ("gelu_new", "gelu_pytorch_tanh")

    def embed(self, tokens: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return self.tr.wte(tokens) + self.tr.wpe(pos), None

    def block(self, i: int, h: torch.Tensor, rope: Any, attend: Any) -> torch.Tensor:
        blk = self.layers[i]
        n, t, _ = h.shape
        qkv = blk.attn.c_attn(blk.ln_1(h)).view(n, t, 3, self.n_heads, self.head_dim)
        q, k, v = (x.transpose(1, 2) for x in qkv.unbind(2))
        o = attend(i, q, k, v).transpose(1, 2).reshape(n, t, -1)
        h = h + blk.attn.c_proj(o)
        if not self._tanh_gelu:
            return h + blk.mlp(blk.ln_2(h))
        # GPT-2's "gelu_new" is the tanh approximation: one fused kernel instead of six.
        x = F.gelu(blk.mlp.c_fc(blk.ln_2(h)), approximate="tanh")
        return h + blk.mlp.c_proj(x)

    def norm(self, h: torch.Tensor) -> torch.Tensor:
        return self.tr.ln_f(h)


class _Llama:
    """Llama layout: rotary positions (the model's own rotary module), GQA, RMSNorm, gated MLP."""

    def __init__(self, hf: Any) -> None:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        cfg = hf.config
        self.m, self.lm_head, self._rotate = hf.model, hf.lm_head, apply_rotary_pos_emb
        self.layers = list(self.m.layers)
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.max_positions = cfg.max_position_embeddings
        window = getattr(cfg, "sliding_window", None) if getattr(cfg, "use_sliding_window", True) else None
        self.sliding_window = window

    def embed(self, tokens: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, Any]:
        h = self.m.embed_tokens(tokens)
        return h, self.m.rotary_emb(h, pos)

    def block(self, i: int, h: torch.Tensor, rope: Any, attend: Any) -> torch.Tensor:
        layer, (n, t, _) = self.layers[i], h.shape
        a, x = layer.self_attn, layer.input_layernorm(h)
        q = a.q_proj(x).view(n, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = a.k_proj(x).view(n, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = a.v_proj(x).view(n, t, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = self._rotate(q, k, *rope)
        h = h + a.o_proj(attend(i, q, k, v).transpose(1, 2).reshape(n, t, -1))
        return h + layer.mlp(layer.post_attention_layernorm(h))

    def norm(self, h: torch.Tensor) -> torch.Tensor:
        return self.m.norm(h)


#: model_type -> layout. Qwen2 (qkv bias) and Mistral share the Llama layout; sliding-window
#: attention is not implemented, so such models are limited to contexts inside the window.
ARCHS = {"gpt2": _GPT2, "llama": _Llama, "qwen2": _Llama, "mistral": _Llama}


def _padded_head(lm_head: Any, device: torch.device) -> tuple[torch.Tensor | None, int]:
    """A copy of the LM head's weight with its rows padded to a multiple of 64, on CUDA.

    GPT-2's 50257-token vocabulary makes the logits' row stride odd: cuBLAS then cannot use its
    aligned Hopper kernels and falls back to an sm_75 one, 4-6x slower for the decode batch (seen
    in the H100 profile). Padded rows are zeros and are sliced off the logits.
    """
    rows = lm_head.weight.shape[0]
    if device.type != "cuda" or lm_head.bias is not None or rows % 64 == 0:
        return None, rows
    weight = lm_head.weight.detach()
    return torch.cat([weight, weight.new_zeros(-rows % 64, weight.shape[1])]), rows


class ModelRunner:
    """Prefill and decode over a static KV cache; CUDA-graph decode on CUDA devices."""

    def __init__(
        self,
        hf_model: Any,
        *,
        max_batch: int,
        max_model_len: int,
        cuda_graphs: bool = True,
        batch_buckets: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64),
        attention: str = "auto",
    ) -> None:
        param = next(hf_model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.arch = ARCHS[hf_model.config.model_type](hf_model)
        self.vocab_size = hf_model.config.vocab_size
        window = getattr(self.arch, "sliding_window", None)
        if window and window < max_model_len:
            raise ValueError(
                f"max_model_len={max_model_len} is invalid for this model: its sliding_window={window} is "
                f"not implemented by the built-in engine; allowed max_model_len <= {window} (or use vllm)"
            )
        decode_attention.check_usable(attention, self.device)
        self.max_batch, self.max_len = max_batch, max_model_len
        n_layers = len(self.arch.layers)
        shape = (n_layers, max_batch, self.arch.n_kv, max_model_len, self.arch.head_dim)
        self.k_cache = torch.zeros(shape, device=self.device, dtype=self.dtype)
        self.v_cache = torch.zeros(shape, device=self.device, dtype=self.dtype)
        # Persistent decode inputs: graphs read these exact storages.
        self.tokens = torch.zeros(max_batch, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(max_batch, dtype=torch.long, device=self.device)
        self._rows = torch.arange(max_batch, device=self.device)
        self._key_idx = torch.arange(max_model_len, device=self.device)
        self.batch_buckets = sorted({b for b in batch_buckets if b < max_batch} | {max_batch})
        # Decode attention: the Triton kernel reads each row's own keys only, so one context bucket
        # (the whole cache) serves every length; SDPA reads up to the bucket, so buckets double.
        self.triton_attention = attention == "triton" or (
            attention == "auto" and decode_attention.available(self.device)
        )
        self.ctx_buckets = [max_model_len] if self.triton_attention else _buckets(max_model_len, 128)
        self._head_weight, self._head_rows = _padded_head(self.arch.lm_head, self.device)
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self.use_graphs = cuda_graphs and self.device.type == "cuda"
        on_cuda = self.device.type == "cuda"
        self._attention_kernels = (lambda: sdpa_kernel(CUDA_SDPA_BACKENDS)) if on_cuda else contextlib.nullcontext
        self._pool: Any = None
        # Graphs need fixed shapes; tests turn padding on without graphs to check it on CPU.
        self.pad_buckets = self.use_graphs

    @property
    def kv_cache_bytes(self) -> int:
        return 2 * self.k_cache.numel() * self.k_cache.element_size()

    # ---- prefill -------------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, slots: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Run prompts (right-padded together) into their slots; return last-position logits [N, V]."""
        n, t = len(prompts), max(len(p) for p in prompts)
        # Build on the host, then one transfer each (not one small copy per prompt).
        padded = torch.zeros((n, t), dtype=torch.long)
        for i, p in enumerate(prompts):
            padded[i, : len(p)] = torch.tensor(p, dtype=torch.long)
        tokens = padded.to(self.device, non_blocking=True)
        lens = torch.tensor([len(p) for p in prompts]).to(self.device, non_blocking=True)
        slot_idx = torch.tensor(slots).to(self.device, non_blocking=True)
        pos = self._key_idx[:t].expand(n, t)
        causal = torch.ones((t, t), dtype=torch.bool, device=self.device).tril()
        # Padding keys are masked; padding queries still see key 0, so no row is all -inf.
        mask = (causal[None] & (self._key_idx[:t][None, None] < lens[:, None, None]))[:, None]

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            self.k_cache[i][slot_idx, :, :t] = k
            self.v_cache[i][slot_idx, :, :t] = v
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self._gqa)

        h, rope = self.arch.embed(tokens, pos)
        with self._attention_kernels():
            for i in range(len(self.arch.layers)):
                h = self.arch.block(i, h, rope, attend)
        last = h[torch.arange(n, device=self.device), lens - 1]
        return self._logits(last[:, None])[:, 0].float()

    @property
    def _gqa(self) -> bool:
        return self.arch.n_kv != self.arch.n_heads

    # ---- decode --------------------------------------------------------------------------------
    @torch.inference_mode()  # also when called directly (profiling): no autograd records on the cache
    def _decode_eager(self, batch: int, ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, pos = self.tokens[:batch, None], self.positions[:batch]
        rows = self._rows[:batch]
        if self.triton_attention:
            lengths = pos + 1  # keys each row attends to, this step's included

            def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                kc, vc = self.k_cache[i], self.v_cache[i]
                decode_attention.write_kv(k, v, kc, vc, pos)
                # The whole cache as the bound, not this step's ctx: the kernel reads live keys
                # only, and a fixed bound keeps one compiled variant per batch size (eager too).
                return decode_attention.decode_attention(q, kc, vc, lengths, self.max_len)

        else:
            mask = (self._key_idx[:ctx][None] <= pos[:, None])[:, None, None]

            def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                kc, vc = self.k_cache[i], self.v_cache[i]
                kc[rows, :, pos] = k[:, :, 0]
                vc[rows, :, pos] = v[:, :, 0]
                return F.scaled_dot_product_attention(
                    q, kc[:batch, :, :ctx], vc[:batch, :, :ctx], attn_mask=mask, enable_gqa=self._gqa
                )

        h, rope = self.arch.embed(tokens, pos[:, None])
        with self._attention_kernels():
            for i in range(len(self.arch.layers)):
                h = self.arch.block(i, h, rope, attend)
        logits = self._logits(h)[:, 0].float()
        return logits, logits.argmax(-1)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        h = self.arch.norm(h)
        if self._head_weight is None:
            return self.arch.lm_head(h)
        return F.linear(h, self._head_weight)[..., : self._head_rows]

    def bucket(self, rows_needed: int, ctx_needed: int) -> tuple[int, int]:
        """The (batch, ctx) a step runs with: exact on CPU, the covering graph bucket on CUDA."""
        if not self.pad_buckets:
            return rows_needed, min(self.max_len, math.ceil(ctx_needed / 16) * 16)
        b = self.batch_buckets[bisect.bisect_left(self.batch_buckets, rows_needed)]
        c = self.ctx_buckets[bisect.bisect_left(self.ctx_buckets, ctx_needed)]
        return b, c

    @torch.inference_mode()
    def decode(self, batch: int, ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One decode step for slots ``[0, batch)``: (logits [batch, V] fp32, greedy ids [batch]).

        Reads ``tokens``/``positions`` and writes this step's K/V at ``positions``. The returned
        tensors are graph-owned buffers on CUDA: consume them before the next step.
        """
        if not self.use_graphs:
            return self._decode_eager(batch, ctx)
        graph, logits, ids = self._graphs.get((batch, ctx)) or self._capture(batch, ctx)
        graph.replay()
        return logits, ids

    def advance(self, batch: int, next_ids: torch.Tensor) -> None:
        """Feed a step's tokens back as the next inputs; positions stay inside the cache."""
        self.tokens[:batch] = next_ids
        self.positions[:batch].add_(1).clamp_(max=self.max_len - 1)

    def set_slots(self, slots: list[int], first_ids: torch.Tensor, lens: list[int]) -> None:
        idx = torch.tensor(slots, device=self.device)
        self.tokens[idx] = first_ids
        self.positions[idx] = torch.tensor(lens, device=self.device)

    @torch.inference_mode()
    def _capture(self, batch: int, ctx: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        # Warm up on a side stream (cuBLAS handles, lazy inits) as CUDA graph capture requires.
        # The warm-up writes K/V at the slots' current positions; with a context bucket shorter
        # than a live sequence those values are off, but the next real step rewrites that
        # position before anything reads it, so it is harmless.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._decode_eager(batch, ctx)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()  # graphs never run concurrently: share memory
        with torch.cuda.graph(graph, pool=self._pool):
            logits, ids = self._decode_eager(batch, ctx)
        self._graphs[(batch, ctx)] = (graph, logits, ids)
        return graph, logits, ids

    def capture_all(self) -> int:
        """Capture every (batch, ctx) bucket up front so no request pays for a capture."""
        if not self.use_graphs:
            return 0
        for b in reversed(self.batch_buckets):
            for c in reversed(self.ctx_buckets):
                if (b, c) not in self._graphs:
                    self._capture(b, c)
        torch.cuda.synchronize()
        return len(self._graphs)
