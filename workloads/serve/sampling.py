"""Per-row token selection on the device: greedy rows take the argmax, others temperature + top-p."""

from __future__ import annotations

import torch


def sample(
    logits: torch.Tensor,
    greedy: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Pick one token per row of ``logits`` [B, V] (fp32).

    ``greedy`` holds the argmax ids; rows with ``temperature == 0`` keep them. Other rows sample
    from the smallest set of tokens whose probability mass reaches ``top_p`` (the most likely
    token is always kept, so ``top_p`` near 0 degenerates to greedy instead of failing).
    """
    temp = temperature.clamp(min=1e-5)[:, None]
    probs = torch.softmax(logits / temp, dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_p.cumsum(dim=-1) - sorted_p
    sorted_p = sorted_p.masked_fill(mass_before >= top_p[:, None], 0.0)
    choice = torch.multinomial(sorted_p, 1, generator=generator)
    sampled = order.gather(-1, choice)[:, 0]
    return torch.where(temperature > 0, sampled, greedy)
