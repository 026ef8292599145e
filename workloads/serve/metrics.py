"""Prometheus metrics of the server and the engine, in a registry per app (tests run several)."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from workloads.serve.sequence import Sequence

_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    """Engine observer + HTTP counters. Gauges that mirror engine state are read at scrape time."""

    def __init__(
        self,
        queue_depth: Callable[[], int],
        running: Callable[[], int],
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.registry = CollectorRegistry()
        r = self.registry
        Gauge("aidc_serve_queue_depth", "Requests waiting for a KV-cache slot", registry=r).set_function(queue_depth)
        Gauge("aidc_serve_running_sequences", "Sequences holding a KV-cache slot", registry=r).set_function(running)
        self.peak_running = Gauge("aidc_serve_peak_batch_size", "Largest decode batch since start", registry=r)
        Gauge(
            "aidc_serve_tokens_per_second", f"Output tokens per second over the last {window_s:g} s", registry=r
        ).set_function(self._tokens_per_second)
        self.batch_size = Histogram(
            "aidc_serve_batch_size", "Sequences per decode step", buckets=_BATCH_BUCKETS, registry=r
        )
        self.tokens = Counter("aidc_serve_generated_tokens", "Output tokens generated", registry=r)
        self.ttft = Histogram("aidc_serve_ttft_seconds", "Time to first token", buckets=_LATENCY_BUCKETS, registry=r)
        self.tpot = Histogram(
            "aidc_serve_tpot_seconds", "Time per output token after the first", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.requests = Counter(
            "aidc_serve_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.finished = Counter("aidc_serve_finished_sequences", "Finished sequences by reason", ["reason"], registry=r)
        self._window_s, self._clock = window_s, clock
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._lock = threading.Lock()
        self._peak = 0

    # ---- engine observer (engine thread) --------------------------------------------------------
    def on_step(self, batch: int, tokens: int) -> None:
        self.batch_size.observe(batch)
        self.tokens.inc(tokens)
        if batch > self._peak:
            self._peak = batch
            self.peak_running.set(batch)
        self._record(tokens)

    def on_first_token(self, ttft_s: float) -> None:
        self.ttft.observe(ttft_s)
        self.tokens.inc()  # the first token comes from the prefill, not from a decode step
        self._record(1)

    def on_finish(self, seq: Sequence) -> None:
        self.finished.labels(seq.finish_reason or "unknown").inc()
        if seq.tpot_s is not None:
            self.tpot.observe(seq.tpot_s)

    def _record(self, tokens: int) -> None:
        now = self._clock()
        with self._lock:
            self._recent.append((now, tokens))
            self._trim(now)  # here too, not only on scrape: unscraped, the window would grow forever

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - self._window_s:
            self._recent.popleft()

    def _tokens_per_second(self) -> float:
        now = self._clock()
        with self._lock:
            self._trim(now)
            return sum(n for _, n in self._recent) / self._window_s
