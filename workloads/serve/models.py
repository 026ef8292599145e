"""Model and tokenizer loading: presets with random weights, or local Hugging Face directories.

Nothing is ever downloaded: presets are built from a config with a fixed seed, directories are
read with ``local_files_only=True``. Without a tokenizer directory the byte-level tokenizer below
is used (ids 0..255 are bytes, 256 is end-of-text), so any model with vocab >= 257 can serve text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

BYTE_EOS = 256
PRESETS: tuple[str, ...] = ("tiny-random", "tiny-random-llama", "gpt2-124m-random")
SUPPORTED_MODEL_TYPES: tuple[str, ...] = ("gpt2", "llama", "mistral", "qwen2")


class ByteTokenizer:
    """UTF-8 bytes as tokens: a tokenizer that needs no files and round-trips any text."""

    eos_token_id = BYTE_EOS

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode("utf-8"))  # no BOS: the byte vocabulary has none

    def decode(self, ids: list[int]) -> str:
        # Ids above 255 are special tokens (or unused vocab of a random model): they carry no text.
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return self.encode(_plain_chat_prompt(messages))


class HFTokenizer:
    """A local Hugging Face tokenizer behind the same three methods (encode, decode, chat_ids)."""

    def __init__(self, path: str) -> None:
        from transformers import AutoTokenizer

        self._tok = _load("tokenizer", path, lambda: AutoTokenizer.from_pretrained(path, local_files_only=True))
        self.eos_token_id = self._tok.eos_token_id

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``. Raw completion prompts need ``add_special_tokens=True`` (Llama's
        ``<s>``, as ``tokenizer(prompt)`` and vLLM do); chat-template text already holds them."""
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        if getattr(self._tok, "chat_template", None):  # the template writes BOS itself
            return self.encode(self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return self.encode(_plain_chat_prompt(messages), add_special_tokens=True)


def _plain_chat_prompt(messages: list[dict[str, str]]) -> str:
    """Fallback chat format for models without a template (random presets, base models)."""
    turns = [f"<|{m['role']}|>\n{m['content']}\n" for m in messages]
    return "".join(turns) + "<|assistant|>\n"


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel in eval mode on the target device/dtype
    tokenizer: ByteTokenizer | HFTokenizer
    name: str
    #: Every end-of-sequence id: the tokenizer's, the config's and generation_config.json's
    #: (Llama 3 ends turns with <|eot_id|> and text with <|end_of_text|>).
    eos_token_ids: frozenset[int]


def preset_config(name: str) -> Any:
    """The transformers config of a preset; GPT-2 124M matches the issue's benchmark model."""
    from transformers import GPT2Config, LlamaConfig

    special = {"bos_token_id": BYTE_EOS, "eos_token_id": BYTE_EOS}
    if name == "tiny-random":
        return GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=512, n_positions=512, **special)
    if name == "tiny-random-llama":
        return LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=512,
            max_position_embeddings=512,
            **special,
        )
    if name == "gpt2-124m-random":
        return GPT2Config(**special)  # 12 layers, 768 wide, vocab 50257, 1024 positions
    raise ValueError(f"model={name!r} is not a preset: allowed {', '.join(PRESETS)} or a local directory")


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' is invalid here: no CUDA device is visible; allowed auto|cpu")
    return torch.device(device)


def load_model(
    model: str,
    *,
    tokenizer: str | None,
    served_name: str | None,
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
) -> LoadedModel:
    """Build a preset with seeded random weights or read a local directory; never downloads."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if tokenizer is not None and not os.path.isdir(tokenizer):
        raise ValueError(f"tokenizer={tokenizer!r} is invalid: not an existing local directory (nothing is downloaded)")
    if model in PRESETS:
        config = preset_config(model)
        torch.manual_seed(seed)
        hf = AutoModelForCausalLM.from_config(config)
        default_name = model
    elif os.path.isdir(model):
        config = _load("model", model, lambda: AutoConfig.from_pretrained(model, local_files_only=True))
        _check_supported(config.model_type, model)  # before reading gigabytes of weights
        hf = _load("model", model, lambda: AutoModelForCausalLM.from_pretrained(model, local_files_only=True))
        default_name = os.path.basename(os.path.normpath(model))
    else:
        raise ValueError(f"model={model!r} is neither a preset ({', '.join(PRESETS)}) nor an existing local directory")
    _check_supported(config.model_type, model)
    hf = hf.to(device=device, dtype=dtype).eval()
    tok_dir = tokenizer or (model if _has_tokenizer(model) else None)
    tok: ByteTokenizer | HFTokenizer = HFTokenizer(tok_dir) if tok_dir else ByteTokenizer()
    if isinstance(tok, ByteTokenizer) and config.vocab_size <= BYTE_EOS:
        raise ValueError(f"vocab_size={config.vocab_size} is too small for the byte tokenizer: need >= 257")
    eos = end_of_sequence_ids(tok.eos_token_id, config, model if model not in PRESETS else None)
    return LoadedModel(model=hf, tokenizer=tok, name=served_name or default_name, eos_token_ids=eos)


def end_of_sequence_ids(tokenizer_eos: int | None, config: Any, model_dir: str | None) -> frozenset[int]:
    """The union of the tokenizer's EOS id, ``config.eos_token_id`` and, when ``model_dir`` holds
    one, ``generation_config.json``'s ``eos_token_id`` (each an int or a list), as HF generate stops."""
    ids = _as_ids(tokenizer_eos) | _as_ids(getattr(config, "eos_token_id", None))
    if model_dir is not None and os.path.isfile(os.path.join(model_dir, "generation_config.json")):
        from transformers import GenerationConfig

        gen = _load("model", model_dir, lambda: GenerationConfig.from_pretrained(model_dir, local_files_only=True))
        ids |= _as_ids(gen.eos_token_id)
    return frozenset(ids)


def _as_ids(value: int | list[int] | None) -> set[int]:
    if value is None:
        return set()
    return {int(value)} if isinstance(value, int) else {int(v) for v in value}


def _load(option: str, path: str, load: Any) -> Any:
    """Run a transformers loader; its errors (missing files, bad JSON) become one line naming the option."""
    try:
        return load()
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        raise ValueError(f"{option}={path!r} could not be loaded: {reason}") from None


def _check_supported(model_type: str, model: str) -> None:
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"model type {model_type!r} of {model!r} is not supported by the built-in engine: "
            f"allowed {', '.join(SUPPORTED_MODEL_TYPES)} (use serve_engine=vllm for others)"
        )


def _has_tokenizer(path: str) -> bool:
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, n)) for n in names)
