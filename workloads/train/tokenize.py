"""Tokenize a text file into a token shard: ``python -m workloads.train.tokenize INPUT OUTPUT``.

``--tokenizer byte`` (default) needs nothing: UTF-8 bytes are the tokens (vocab 256, fits the
``tiny`` preset). Any other value is a Hugging Face tokenizer name or local directory loaded with
``transformers.AutoTokenizer`` (e.g. ``gpt2`` from a local cache; the ``124m`` preset's vocab fits it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from workloads.train.data import write_shard

BYTE_VOCAB = 256


def encode(text: str, tokenizer: str) -> tuple[np.ndarray, int]:
    """Token ids and vocabulary size of ``text`` under ``tokenizer``."""
    if tokenizer == "byte":
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64), BYTE_VOCAB
    from transformers import AutoTokenizer  # heavy import only when asked for

    tok = AutoTokenizer.from_pretrained(tokenizer)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return np.asarray(ids, dtype=np.int64), len(tok)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workloads.train.tokenize", description=__doc__.split("\n")[0])
    parser.add_argument("input", type=Path, help="UTF-8 text file")
    parser.add_argument("output", type=Path, help="shard file to write (.bin)")
    parser.add_argument("--tokenizer", default="byte", help="'byte' (default) or a Hugging Face tokenizer name/path")
    args = parser.parse_args(argv)
    if not args.input.is_file():
        parser.error(f"input {str(args.input)!r} is not a readable file")
    text = args.input.read_text(encoding="utf-8")
    try:
        ids, vocab = encode(text, args.tokenizer)
    except (OSError, ValueError) as exc:  # missing/unknown HF tokenizer (no network here)
        print(f"error: tokenizer={args.tokenizer!r} could not be loaded ({exc}); use --tokenizer byte", file=sys.stderr)
        return 2
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)  # like --metrics: data/ need not exist yet
        header = write_shard(args.output, ids, vocab)
    except OSError as exc:
        print(f"error: output {str(args.output)!r} cannot be written ({exc.strerror or exc})", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {header.num_tokens} tokens, vocab {vocab}, {header.token_bytes * 8}-bit ids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
