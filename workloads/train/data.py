"""Token data: ``.bin`` shards with a small header, a learnable synthetic stream, and a
position-addressed batch loader whose whole state is one integer (saved in checkpoints).

Shard layout (little endian): 32-byte header, then ``num_tokens`` tokens of ``uint16`` or ``uint32``::

    magic  b"AIDCTOK1"  8 bytes
    version            uint32 (1)
    token_bytes        uint32 (2 or 4)
    num_tokens         uint64
    vocab_size         uint32
    reserved           uint32 (0)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MAGIC = b"AIDCTOK1"
VERSION = 1
_HEADER = struct.Struct("<8sIIQII")
HEADER_BYTES = _HEADER.size  # 32
_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


class DataError(ValueError):
    """A shard that cannot be used, named with the reason."""


@dataclass(frozen=True, kw_only=True)
class ShardHeader:
    token_bytes: int
    num_tokens: int
    vocab_size: int


def write_shard(path: str | Path, tokens: np.ndarray, vocab_size: int) -> ShardHeader:
    """Write ``tokens`` as a shard; uint16 when the vocabulary fits, else uint32."""
    token_bytes = 2 if vocab_size <= 2**16 else 4
    arr = np.asarray(tokens)
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= vocab_size):
        raise DataError(f"token ids must be in [0, {vocab_size}); got [{arr.min()}, {arr.max()}]")
    header = ShardHeader(token_bytes=token_bytes, num_tokens=int(arr.size), vocab_size=vocab_size)
    with open(path, "wb") as fh:
        fh.write(_HEADER.pack(MAGIC, VERSION, token_bytes, header.num_tokens, vocab_size, 0))
        fh.write(arr.astype(_DTYPES[token_bytes], copy=False).tobytes())
    return header


def read_header(path: str | Path) -> ShardHeader:
    with open(path, "rb") as fh:
        raw = fh.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        raise DataError(f"{path}: too short for a token shard header ({len(raw)} bytes)")
    magic, version, token_bytes, num_tokens, vocab_size, _ = _HEADER.unpack(raw)
    if magic != MAGIC:
        raise DataError(f"{path}: not a token shard (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION or token_bytes not in _DTYPES:
        raise DataError(f"{path}: unsupported shard version {version} / token_bytes {token_bytes}")
    expected = HEADER_BYTES + num_tokens * token_bytes
    if Path(path).stat().st_size != expected:
        raise DataError(f"{path}: size {Path(path).stat().st_size} != header's {expected} (truncated?)")
    return ShardHeader(token_bytes=token_bytes, num_tokens=num_tokens, vocab_size=vocab_size)


class ShardedTokens:
    """Shards read as one token sequence, in order, without loading them: their memmaps and ends.

    A slice copies only the tokens it covers (from two shards when it spans a boundary), so a rank
    holds one batch in memory, not the data set.
    """

    def __init__(self, shards: Sequence[np.ndarray]) -> None:
        self.shards = tuple(shards)
        self.ends = np.cumsum([len(s) for s in self.shards], dtype=np.int64)
        self.dtype = np.result_type(*self.shards)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("ShardedTokens takes contiguous slices only")
        start, stop, _ = index.indices(len(self))
        parts = []
        for i in range(int(np.searchsorted(self.ends, start, side="right")), len(self.shards)):
            base = int(self.ends[i]) - len(self.shards[i])
            if base >= stop:
                break
            parts.append(self.shards[i][max(start - base, 0) : stop - base])
        return np.concatenate(parts, dtype=self.dtype) if parts else np.empty(0, dtype=self.dtype)


def load_tokens(path: str | Path) -> tuple[np.ndarray | ShardedTokens, int]:
    """The tokens of a shard file or of every ``*.bin`` in a directory (sorted), and the vocab size.

    Memory-mapped, never read whole: a directory gives a :class:`ShardedTokens` over the shards.
    """
    p = Path(path)
    files = sorted(p.glob("*.bin")) if p.is_dir() else [p]
    if not files or not files[0].exists():
        raise DataError(f"data={str(path)!r}: no token shard found (a .bin file or a directory of them)")
    parts, vocab = [], 0
    for f in files:
        h = read_header(f)
        vocab = max(vocab, h.vocab_size)
        parts.append(np.memmap(f, dtype=_DTYPES[h.token_bytes], mode="r", offset=HEADER_BYTES))
    return (parts[0] if len(parts) == 1 else ShardedTokens(parts)), vocab


def synthetic_permutation(seed: int, vocab_size: int) -> np.ndarray:
    """The fixed bigram table of the synthetic stream for ``seed``."""
    return np.random.default_rng([seed, 0]).permutation(vocab_size)


def synthetic_rows(seed: int, indices: np.ndarray, length: int, perm: np.ndarray) -> np.ndarray:
    """Sequences ``indices`` of the synthetic stream: walks through one fixed random permutation.

    ``next = perm[current]`` with a random start per sequence, so a model can cut its loss from
    ln(vocab) towards 0 by learning the bigram table — quick proof that training works. A pure
    function of (seed, index): any position can be regenerated after a restart.
    """
    out = np.empty((len(indices), length), dtype=np.int64)
    out[:, 0] = [int(np.random.default_rng([seed, 1, int(i)]).integers(len(perm))) for i in indices]
    for t in range(1, length):  # vectorised over the batch: one numpy op per position
        out[:, t] = perm[out[:, t - 1]]
    return out


class BatchLoader:
    """Deterministic batches for one rank; ``position`` (batches consumed) is the whole state.

    Global sample ``(position·world + rank)·batch + b`` maps to the synthetic stream or to a
    window of ``seq_len + 1`` tokens of the shards (windows in a seeded per-epoch order).
    """

    def __init__(
        self, *, data: str, batch_size: int, seq_len: int, vocab_size: int, seed: int, rank: int, world_size: int
    ) -> None:
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.rank, self.world_size = rank, world_size
        self.vocab_size = vocab_size
        self.position = 0
        self._tokens: np.ndarray | ShardedTokens | None = None
        self._perm = synthetic_permutation(seed, vocab_size)
        self._order: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))
        if data != "synthetic":
            self._tokens, shard_vocab = load_tokens(data)
            if shard_vocab > vocab_size:
                raise DataError(f"data={data!r}: shard vocab {shard_vocab} exceeds the model's {vocab_size}")
            self._windows = (len(self._tokens) - 1) // seq_len
            if self._windows < 1:
                raise DataError(f"data={data!r}: {len(self._tokens)} tokens < one sequence of {seq_len + 1}")

    def _window(self, index: int) -> np.ndarray:
        epoch, slot = divmod(index, self._windows)
        if self._order[0] != epoch:  # one shuffle per epoch, cached: windows are read in order
            self._order = (epoch, np.random.default_rng([self.seed, 2, epoch]).permutation(self._windows))
        window = int(self._order[1][slot])
        start = window * self.seq_len
        return np.asarray(self._tokens[start : start + self.seq_len + 1], dtype=np.int64)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets, ``(batch, seq_len)`` int64 each; advances ``position``."""
        first = (self.position * self.world_size + self.rank) * self.batch_size
        indices = np.arange(first, first + self.batch_size)
        if self._tokens is None:
            rows = synthetic_rows(self.seed, indices, self.seq_len + 1, self._perm)
        else:
            rows = np.stack([self._window(int(i)) for i in indices])
        self.position += 1
        t = torch.from_numpy(rows)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()

    def _layout(self) -> dict[str, int | str]:
        """What maps ``position`` to samples; a resume under another layout would skip or repeat data.

        The data is named by its token count, not its path: shards copied elsewhere still resume.
        """
        tokens = "synthetic" if self._tokens is None else len(self._tokens)
        return {"world_size": self.world_size, "batch_size": self.batch_size, "seq_len": self.seq_len,
                "seed": self.seed, "data_tokens": tokens}

    def state_dict(self) -> dict[str, int | str]:
        return {"position": self.position, **self._layout()}

    def load_state_dict(self, state: dict[str, int | str]) -> None:
        flags = {"world_size": "the number of ranks", "batch_size": "--batch-size", "seq_len": "--seq-len",
                 "seed": "--seed", "data_tokens": "--data (same shards)"}
        for key, now in self._layout().items():
            saved = state.get(key, now)  # checkpoints from before a key was recorded: not checked
            if saved != now:
                raise DataError(
                    f"checkpoint data position was saved with {key}={saved}, now {now}: resume with the "
                    f"same {flags[key]}, or start a new --ckpt-dir"
                )
        self.position = int(state["position"])
