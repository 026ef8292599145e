"""Per-row token selection on the device: greedy rows take the argmax, others sample with
temperature, top-k, top-p and min-p."""

from __future__ import annotations

import math

import torch

from workloads.serve.sequence import SamplingParams

#: Rows of the per-slot sampling table the engine keeps on the device (one transfer per admission).
TEMPERATURE, TOP_P, TOP_K, MIN_P = range(4)


def table_column(params: SamplingParams) -> list[float]:
    """One request's column of the sampling table, rows in the order above (top_k 0: off)."""
    return [params.temperature, params.top_p, float(params.top_k) if params.top_k > 0 else math.inf, params.min_p]


def sample(
    logits: torch.Tensor, greedy: torch.Tensor, table: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Pick one token per row of ``logits`` [B, V] (fp32); ``table`` [4, B] holds each row's
    temperature, top_p, top_k (>= V: off) and min_p.

    ``greedy`` holds the argmax ids; rows with ``temperature == 0`` keep them. Other rows keep
    the ``top_k`` most likely tokens, then (renormalised, as vLLM and HF do) the smallest set
    whose mass reaches ``top_p``, then the tokens with at least ``min_p`` times the top
    probability, and sample from those. The most likely token is always kept, so ``top_p`` near
    0 or ``min_p`` 1 degenerate to greedy instead of failing.
    """
    temperature, top_p, top_k, min_p = table[TEMPERATURE], table[TOP_P], table[TOP_K], table[MIN_P]
    probs = torch.softmax(logits / temperature.clamp(min=1e-5)[:, None], dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    rank = torch.arange(sorted_p.shape[-1], device=logits.device, dtype=sorted_p.dtype)
    sorted_p = sorted_p.masked_fill(rank[None] >= top_k[:, None], 0.0)
    kept = sorted_p.cumsum(dim=-1)
    mass_before = (kept - sorted_p) / kept[:, -1:]
    sorted_p = sorted_p.masked_fill(mass_before >= top_p[:, None], 0.0)
    sorted_p = sorted_p.masked_fill(sorted_p < min_p[:, None] * sorted_p[:, :1], 0.0)
    choice = torch.multinomial(sorted_p, 1, generator=generator)
    sampled = order.gather(-1, choice)[:, 0]
    return torch.where(temperature > 0, sampled, greedy)
