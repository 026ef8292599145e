"""Tiny random decoder checkpoints saved to a directory, for tests that load a model by path."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers


def save_tiny_decoder(path: Path, config_name: str = "LlamaConfig", **extra) -> None:
    """A 2-layer, 64-wide GQA model of ``transformers.<config_name>`` (vocab 512, BOS/EOS 256), seeded."""
    config = getattr(transformers, config_name)(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
        max_position_embeddings=256,
        bos_token_id=256,
        eos_token_id=256,
        **extra,
    )
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(path)
