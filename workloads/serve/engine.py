"""Continuous-batching inference engine: iteration-level scheduling over a static KV cache.

Each step admits waiting requests into free cache slots (one batched prefill), then runs one
decode step for every running sequence; sequences join and leave between steps. On CUDA the
host reads a step's tokens while the next step already runs (one sync per step, overlapped), so
Python bookkeeping hides behind GPU work. The engine runs in one background thread; ``submit``
and ``abort`` are thread-safe and results go to a per-request ``sink`` callback.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from workloads.serve import decode_attention
from workloads.serve.config import EngineConfig
from workloads.serve.models import load_model, resolve_device, resolve_dtype
from workloads.serve.runner import ModelRunner
from workloads.serve.sampling import sample, table_column
from workloads.serve.sequence import Delta, SamplingParams, Sequence

log = logging.getLogger("aidc.serve")
__all__ = ["Delta", "Engine", "EngineOverloaded", "RequestError", "SamplingParams", "Sequence"]


#: Steps a waiting group may be held back for lack of free slots (see ``min_prefill_batch``)
#: before the free slots are filled anyway: about 30 ms of decoding on a GPU.
ADMIT_WAIT_STEPS = 32


class RequestError(ValueError):
    """A request the engine cannot serve; ``param`` names the offending field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class EngineOverloaded(RuntimeError):
    """The admission queue is full: the caller should answer 429 and retry later."""


class Observer(Protocol):
    def on_step(self, batch: int, tokens: int) -> None: ...
    def on_first_token(self, ttft_s: float) -> None: ...
    def on_finish(self, seq: Sequence) -> None: ...


@dataclass
class _Inflight:
    rows: list[Sequence | None]
    host: torch.Tensor
    event: Any = None
    tokens: int = field(default=0)


class Engine:
    """Owns the model, the KV cache and the scheduling loop."""

    def __init__(self, config: EngineConfig, *, max_waiting: int = 1 << 30, observer: Observer | None = None):
        self.config = config
        device = resolve_device(config.device)
        decode_attention.check_usable(config.decode_attention, device)  # before loading weights
        loaded = load_model(
            config.model,
            tokenizer=config.tokenizer,
            served_name=config.served_model_name,
            device=device,
            dtype=resolve_dtype(config.dtype, device),
            seed=config.seed,
        )
        self.hf_model, self.tokenizer, self.model_name = loaded.model, loaded.tokenizer, loaded.name
        self.eos_token_ids = loaded.eos_token_ids
        arch_limit = getattr(loaded.model.config, "n_positions", None) or loaded.model.config.max_position_embeddings
        self.max_model_len = min(config.max_model_len or min(arch_limit, 2048), arch_limit)
        self.runner = ModelRunner(
            loaded.model,
            max_batch=config.max_batch,
            max_model_len=self.max_model_len,
            cuda_graphs=config.cuda_graphs,
            batch_buckets=config.batch_buckets,
            attention=config.decode_attention,
        )
        self.device, self.max_waiting, self.observer = device, max_waiting, observer
        self.min_prefill_batch = config.min_prefill_batch or max(1, config.max_batch // 8)
        self._deferred_steps = 0
        self._gen = torch.Generator(device=device).manual_seed(config.seed)
        # Per-slot temperature, top_p, top_k, min_p (see sample()): one transfer per admission.
        # Neutral values in slots never used: padded rows of a bucket must not break sampling.
        neutral = torch.tensor(table_column(SamplingParams(max_tokens=1)), device=device)
        self._sampling = neutral[:, None].repeat(1, config.max_batch)
        self._slots: list[Sequence | None] = [None] * config.max_batch
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._aborts: set[Sequence] = set()
        self._inflight: collections.deque[_Inflight] = collections.deque()
        self._cond = threading.Condition()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stop = False
        on_cuda = device.type == "cuda"
        self._host_bufs = [torch.zeros(config.max_batch, dtype=torch.long, pin_memory=on_cuda) for _ in range(2)]
        # Steps whose results may stay unread while the next one runs: on CUDA the host reads
        # step t while step t+1 computes. (Tests set it on CPU to check the bookkeeping.)
        self.lag_steps = 1 if on_cuda else 0
        self._steps = 0
        #: Steps in a row that raised; 0 after any step that succeeds (the server's health reads it).
        self.failed_steps = 0

    # ---- requests (any thread) -----------------------------------------------------------------
    def validate(self, prompt_ids: list[int], params: SamplingParams) -> None:
        """Raise :class:`RequestError` for requests that cannot fit the model or the cache."""
        if not prompt_ids:
            raise RequestError("prompt", "prompt is empty: it must hold at least one token")
        vocab = self.runner.vocab_size
        if any(not 0 <= t < vocab for t in prompt_ids):
            raise RequestError("prompt", f"prompt token ids must lie in 0..{vocab - 1}")
        room = self.max_model_len - len(prompt_ids)
        if room < 1:
            raise RequestError(
                "prompt",
                f"prompt is {len(prompt_ids)} tokens: this model's context is {self.max_model_len} tokens "
                "and at least one must be left for the completion",
            )
        if params.max_tokens > room:
            raise RequestError(
                "max_tokens",
                f"max_tokens={params.max_tokens} is too large: prompt ({len(prompt_ids)} tokens) + max_tokens "
                f"must be <= {self.max_model_len}, so max_tokens <= {room}",
            )

    def submit(
        self, prompt_ids: list[int], params: SamplingParams, sink: Callable[[Delta], None] | None = None
    ) -> Sequence:
        self.validate(prompt_ids, params)
        seq = Sequence(next(self._ids), list(prompt_ids), params, sink, wants_text=sink is not None)
        with self._cond:
            # Requests that free slots will take at the next step do not count as queued.
            free = self.config.max_batch - self.num_running
            if len(self._waiting) >= self.max_waiting + max(0, free):
                raise EngineOverloaded(f"{len(self._waiting)} requests already wait for a slot")
            self._waiting.append(seq)
            self._cond.notify()
        return seq

    def abort(self, seq: Sequence) -> None:
        with self._cond:
            self._aborts.add(seq)
            self._cond.notify()

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return sum(s is not None for s in self._slots)

    @property
    def alive(self) -> bool:
        """Whether the background loop runs: False before ``start``, after ``shutdown``, or if it died."""
        return self._thread is not None and self._thread.is_alive()

    # ---- background loop -----------------------------------------------------------------------
    def start(self) -> None:
        self.runner.capture_all()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="aidc-serve-engine", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self.has_work:
                    self._cond.wait(timeout=0.5)
                if self._stop:
                    return
            try:
                self.step()
            except Exception:  # a failed step must not take the server down: fail its requests
                self.failed_steps += 1
                log.exception("engine step failed (%d in a row); failing the running requests", self.failed_steps)
                self._fail_all()
            else:
                self.failed_steps = 0

    @property
    def has_work(self) -> bool:
        """Whether anything waits, runs, or has unread results (False: the engine is idle)."""
        return bool(self._waiting or self._aborts or self._inflight or self.num_running)

    # ---- one iteration -------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> None:
        """Apply aborts, admit + prefill new requests, run one decode step, emit results."""
        self._apply_aborts()
        self._admit()
        self._decode()

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[int]]:
        """Offline batch generation in the caller's thread (the background loop must not run)."""
        seqs = [self.submit(p, params) for p in prompts]
        for _ in range(len(prompts) * (params.max_tokens + 2) + 2):
            if all(s.finished for s in seqs):
                break
            self.step()
        return [s.out_ids for s in seqs]

    def _apply_aborts(self) -> None:
        with self._cond:
            aborts, self._aborts = self._aborts, set()
            for seq in aborts:
                if seq in self._waiting:
                    self._waiting.remove(seq)
        for seq in aborts:
            if not seq.finished:
                self._finish(seq, "abort", "")

    def _admit(self) -> None:
        free = [i for i, s in enumerate(self._slots) if s is None]
        batch: list[Sequence] = []
        if not free:
            return  # nothing could join: not a step the waiting group was held back
        with self._cond:
            if not self._waiting:
                self._deferred_steps = 0
                return
            # A group never larger than one prefill can take (max_prefill_tokens), else slots idle.
            fits = max(1, self.config.max_prefill_tokens // len(self._waiting[0].prompt_ids))
            group = min(self.min_prefill_batch, len(self._waiting), fits)
            busy = len(free) < len(self._slots)
            if busy and len(free) < group:
                # Decoding goes on; the group is admitted once enough slots free up, or after
                # ADMIT_WAIT_STEPS steps if long sequences hold the other slots.
                if self._deferred_steps < ADMIT_WAIT_STEPS:
                    self._deferred_steps += 1
                    return
            self._deferred_steps = 0
            while self._waiting and len(batch) < len(free):
                longest = max([len(s.prompt_ids) for s in batch] + [len(self._waiting[0].prompt_ids)])
                if batch and longest * (len(batch) + 1) > self.config.max_prefill_tokens:
                    break
                batch.append(self._waiting.popleft())
        if not batch:
            return
        slots = free[: len(batch)]
        for seq, slot in zip(batch, slots, strict=True):
            seq.slot, self._slots[slot] = slot, seq
        idx = torch.tensor(slots, device=self.device)
        self._sampling[:, idx] = torch.tensor([table_column(s.params) for s in batch], device=self.device).T
        logits = self.runner.prefill(slots, [s.prompt_ids for s in batch])
        ids = self._select(logits, logits.argmax(-1), idx, any(s.params.temperature > 0 for s in batch))
        self.runner.set_slots(slots, ids, [len(s.prompt_ids) for s in batch])
        for seq, tok in zip(batch, ids.tolist(), strict=True):
            seq.cache_len, seq.launched = len(seq.prompt_ids), 1
            self._emit(seq, tok)

    def _select(self, logits: torch.Tensor, greedy: torch.Tensor, rows: Any, sampling: bool) -> torch.Tensor:
        if not sampling:
            return greedy
        return sample(logits, greedy, self._sampling[:, rows], self._gen)

    def _decode(self) -> None:
        active = [s for s in self._slots if s is not None and not s.finished and s.launched < s.params.max_tokens]
        if not active:
            while self._inflight:
                self._process(self._inflight.popleft())
            return
        rows = max(s.slot for s in active) + 1
        batch, ctx = self.runner.bucket(rows, max(s.cache_len for s in active) + 1)
        logits, greedy = self.runner.decode(batch, ctx)
        ids = self._select(logits, greedy, slice(0, batch), any(s.params.temperature > 0 for s in active))
        self.runner.advance(batch, ids)
        snapshot: list[Sequence | None] = [None] * rows
        for seq in active:
            snapshot[seq.slot] = seq
            seq.cache_len += 1
            seq.launched += 1
        # Alternate by step number: with one step unread, the other buffer is free to overwrite.
        self._steps += 1
        host = self._host_bufs[self._steps % 2][:batch]
        host.copy_(ids, non_blocking=self.device.type == "cuda")
        done = _Inflight(snapshot, host, tokens=len(active))
        if self.device.type == "cuda":
            done.event = torch.cuda.Event()
            done.event.record()
        self._inflight.append(done)
        while len(self._inflight) > self.lag_steps:
            self._process(self._inflight.popleft())

    def _process(self, done: _Inflight) -> None:
        if done.event is not None:
            done.event.synchronize()
        tokens = done.host.tolist()
        for seq, tok in zip(done.rows, tokens, strict=False):
            if seq is not None and not seq.finished:
                self._emit(seq, tok)
        if self.observer is not None:
            self.observer.on_step(done.tokens, done.tokens)

    # ---- results -------------------------------------------------------------------------------
    def _emit(self, seq: Sequence, tok: int) -> None:
        now = time.perf_counter()
        if seq.t_first is None:
            seq.t_first = now
            if self.observer is not None:
                self.observer.on_first_token(now - seq.t_arrival)
        seq.t_last = now
        if (tok in self.eos_token_ids and not seq.params.ignore_eos) or tok in seq.params.stop_token_ids:
            self._finish(seq, "stop", seq.flush_text(self.tokenizer))
            return
        seq.out_ids.append(tok)
        delta, stopped = seq.update_text(self.tokenizer) if seq.wants_text else ("", False)
        if stopped:
            self._finish(seq, "stop", delta)
        elif len(seq.out_ids) >= seq.params.max_tokens:
            self._finish(seq, "length", delta + seq.flush_text(self.tokenizer))
        elif delta and seq.sink is not None:
            seq.sink(Delta(delta, None))

    def _finish(self, seq: Sequence, reason: str, delta: str) -> None:
        seq.finished, seq.finish_reason = True, reason
        if seq.slot is not None and self._slots[seq.slot] is seq:
            self._slots[seq.slot] = None
        if self.observer is not None:
            self.observer.on_finish(seq)
        if seq.sink is not None:
            seq.sink(Delta(delta, reason))

    def _fail_all(self) -> None:
        self._inflight.clear()
        for seq in [s for s in self._slots if s is not None]:
            self._finish(seq, "error", "")
