"""A GPT-style decoder: pre-norm blocks, SDPA causal attention, GELU MLP, tied LM head.

Plain PyTorch so that ``torch.compile``, DDP and FSDP2 (``fully_shard`` per block) all apply.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from workloads.train.config import ModelConfig


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        # (B, T, C) -> (B, H, T, D): the layout SDPA's flash/cuDNN kernels expect.
        q, k, v = (y.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for y in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.d_model
        self.fc = nn.Linear(cfg.d_model, hidden, bias=False)
        self.proj = nn.Linear(hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def _chunk_loss(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of one token chunk; logits are upcast to fp32 for a stable softmax."""
    logits = F.linear(h, weight).float()
    return F.cross_entropy(logits, targets, reduction="sum")


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.max_seq_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, 0.02), residual projections scaled by 1/sqrt(2·n_layer)."""
        resid_std = 0.02 / math.sqrt(2 * self.cfg.n_layer)
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue  # LayerNorm weights/biases keep their defaults (1, 0)
            std = resid_std if name.endswith("proj.weight") else 0.02
            nn.init.normal_(p, mean=0.0, std=std)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, loss_chunks: int = 1):
        """Logits when ``targets`` is None, else the mean next-token cross-entropy.

        With ``loss_chunks > 1`` the tied LM head and the loss run per token chunk under activation
        checkpointing: the (tokens x vocab) fp32 logits never exist at once, which saves several GiB
        at 124m/350m scale and the memory traffic that goes with them.
        """
        h = self.hidden(idx)
        if targets is None:
            return F.linear(h, self.wte.weight)
        h = h.reshape(-1, h.shape[-1])
        flat = targets.reshape(-1)
        if loss_chunks <= 1:
            return _chunk_loss(h, self.wte.weight, flat) / flat.numel()
        total = h.new_zeros((), dtype=torch.float32)
        for hc, tc in zip(h.chunk(loss_chunks), flat.chunk(loss_chunks), strict=True):
            total = total + checkpoint(_chunk_loss, hc, self.wte.weight, tc, use_reentrant=False)
        return total / flat.numel()


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Total parameters and the non-embedding count used by the MFU formula.

    The lookup tables (token and position embeddings) do no matmul work, so they are excluded; the
    tied LM head does a full (d_model x vocab) matmul per token, so its weight is counted back in —
    the same accounting as torchtitan, whose untied output layer counts as non-embedding.
    """
    assert isinstance(model, GPT)
    total = sum(p.numel() for p in model.parameters())
    lookup = model.wte.weight.numel() + model.wpe.weight.numel()
    return {"total": total, "non_embedding": total - lookup + model.wte.weight.numel()}
