"""Model FLOPs utilisation, with the formula and peaks of /work/shared/FACTS.md (torchtitan's).

MFU = tokens/s x (6·N_non_embedding + 12·L·H·Q·T) / peak, where L layers, H heads, Q head dim,
T sequence length; the peak is dense bf16 tensor-core FLOP/s chosen by the device name.
"""

from __future__ import annotations

from workloads.train.config import ModelConfig

#: Dense bf16 peak FLOP/s by device family (torchtitan ``get_peak_flops``).
PEAK_FLOPS: dict[str, float] = {
    "H100 SXM": 989e12,
    "H100 PCIe": 756e12,
    "H200": 989e12,
}


def flops_per_token(cfg: ModelConfig, non_embedding_params: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matmuls (fwd+bwd) plus attention scores 12·L·H·Q·T."""
    return 6.0 * non_embedding_params + 12.0 * cfg.n_layer * cfg.n_head * cfg.head_dim * seq_len


def peak_flops(device_name: str) -> float | None:
    """Peak bf16 FLOP/s for a device name as ``torch.cuda.get_device_name`` reports it.

    "NVIDIA H100 80GB HBM3" and other SXM names map to H100 SXM; a name with "PCIe" to H100 PCIe;
    "H200" to H200. Unknown devices (CPUs included) give None: MFU is then not reported rather than
    computed against a made-up peak.
    """
    name = device_name.upper()
    if "H200" in name:
        return PEAK_FLOPS["H200"]
    if "H100" in name:
        return PEAK_FLOPS["H100 PCIe"] if "PCIE" in name else PEAK_FLOPS["H100 SXM"]
    return None


def mfu(tokens_per_s: float, flops_token: float, peak: float | None) -> float | None:
    """MFU as a fraction in [0, 1] (None when the device peak is unknown)."""
    if peak is None or peak <= 0:
        return None
    return tokens_per_s * flops_token / peak
