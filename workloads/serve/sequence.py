"""Per-request state: sampling parameters, generated ids and incremental text with stop strings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """How one request decodes. ``temperature == 0`` is greedy; otherwise tokens are sampled
    from the ``top_k`` most likely (0: all), then the nucleus of mass ``top_p``, then those with
    at least ``min_p`` times the top probability (vLLM's and HF's order). ``stop`` strings end
    the text before the first occurrence (the stop string itself is not returned, as in OpenAI's
    API). ``stop_token_ids`` end it like an end-of-sequence token, also under ``ignore_eos``
    (vLLM); neither is returned or counted as output."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    stop: tuple[str, ...] = ()
    stop_token_ids: frozenset[int] = frozenset()
    ignore_eos: bool = False


class Delta(NamedTuple):
    """A piece of output text; ``finish_reason`` is set on the last one (stop|length|abort|error)."""

    text: str
    finish_reason: str | None


class Sequence:
    """One request inside the engine. Hashable by identity (used in sets of aborts)."""

    def __init__(
        self,
        rid: int,
        prompt_ids: list[int],
        params: SamplingParams,
        sink: Callable[[Delta], None] | None,
        *,
        wants_text: bool,
    ) -> None:
        self.rid, self.prompt_ids, self.params, self.sink = rid, prompt_ids, params, sink
        self.wants_text = wants_text
        self.out_ids: list[int] = []
        self.slot: int | None = None
        self.cache_len = 0  # tokens whose K/V are in the cache (as launched, not yet read back)
        self.launched = 0  # tokens scheduled on the device, including unread ones
        self.finished = False
        self.finish_reason: str | None = None
        self.t_arrival = time.perf_counter()
        self.t_first: float | None = None
        self.t_last: float | None = None
        self._text = ""  # decoded text of out_ids[:_read]
        self._sent = 0  # characters of _text already handed to the sink
        self._prefix = 0  # decode window start (token index): context for the next piece
        self._read = 0
        self._stopped = False
        self._hold = max((len(s) for s in params.stop), default=1) - 1

    @property
    def text(self) -> str:
        return self._text

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first."""
        if self.t_first is None or self.t_last is None or len(self.out_ids) < 2:
            return None
        return (self.t_last - self.t_first) / (len(self.out_ids) - 1)

    def update_text(self, tokenizer: Any) -> tuple[str, bool]:
        """Take in the newest token; return (new text safe to send, whether a stop string matched).

        Text that could still become a stop string, or an incomplete UTF-8 character, is held
        back until later tokens decide it. Decoding works on a window of the last few tokens
        (as vLLM does), so each token costs O(1), not a re-decode of the whole output.
        """
        self._detokenize(tokenizer, final=False)
        stopped = self._cut_at_stop()
        end = len(self._text) if stopped else len(self._text) - self._hold
        return self._take(end), stopped

    def flush_text(self, tokenizer: Any) -> str:
        """All remaining text (at the end of the sequence nothing is held back)."""
        if not self.wants_text:
            return ""
        self._detokenize(tokenizer, final=True)
        self._cut_at_stop()
        return self._take(len(self._text))

    def _detokenize(self, tokenizer: Any, final: bool) -> None:
        if self._stopped or self._read == len(self.out_ids):
            return
        before = tokenizer.decode(self.out_ids[self._prefix : self._read])
        window = tokenizer.decode(self.out_ids[self._prefix :])
        # A trailing U+FFFD may be a character whose remaining bytes come with the next tokens
        # (at most 4 bytes per UTF-8 character); past that it is real garbage and is sent.
        if window.endswith("\ufffd") and not final and len(self.out_ids) - self._read < 4:
            return
        self._text += window[len(before) :]
        self._prefix, self._read = self._read, len(self.out_ids)

    def _cut_at_stop(self) -> bool:
        if self._stopped:
            return True
        if not self.params.stop:
            return False
        start = max(0, self._sent - self._hold)
        hits = [i for i in (self._text.find(s, start) for s in self.params.stop) if i >= 0]
        if hits:
            self._text, self._stopped = self._text[: min(hits)], True
        return self._stopped

    def _take(self, end: int) -> str:
        if end <= self._sent:
            return ""
        piece, self._sent = self._text[self._sent : end], end
        return piece
