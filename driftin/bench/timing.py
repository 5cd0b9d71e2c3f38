"""The one timer of the benchmarks (infer, kernel, train): GPU time between CUDA events on CUDA, host
perf_counter elsewhere, always in milliseconds.

Every measurement starts from an idle device (synchronised first), so a call's time includes its host launch
overhead and nothing queued before it.
"""
from __future__ import annotations

import statistics
import time

import torch


class Timer:
    def __init__(self, device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def sync(self) -> None:
        """Wait for this timer's device (a bare "cuda": the current one)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def call(self, fn):
        """(fn's result, ms of the call): device time between events on CUDA, host time elsewhere."""
        self.sync()
        if self.cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            out = fn()
            b.record()
            b.synchronize()
            return out, a.elapsed_time(b)
        t = time.perf_counter()
        out = fn()
        return out, (time.perf_counter() - t) * 1e3

    def once(self, fn) -> float:
        """ms of one call."""
        return self.call(fn)[1]

    def wall(self, fn):
        """(fn's result, host ms until the device is done): end-to-end time, host work included."""
        self.sync()
        t = time.perf_counter()
        out = fn()
        self.sync()
        return out, (time.perf_counter() - t) * 1e3

    def back_to_back(self, fn, k: int) -> float:
        """mean ms per call over k queued calls (pipelined: the host runs ahead of the device)."""
        def loop():
            for _ in range(k):
                fn()
        return self.once(loop) / k

    def measure(self, fn, warmup: int, reps: int, max_s: float, min_reps: int = 5) -> dict:
        """Median and spread of single calls after a warm-up, at most reps calls or about max_s seconds."""
        est = self.once(fn)
        for _ in range(min(warmup, max(0, int(0.3 * max_s * 1e3 / max(est, 1e-3))))):
            fn()
        times, t_end = [], time.perf_counter() + max_s
        while len(times) < reps and (len(times) < min_reps or time.perf_counter() < t_end):
            times.append(self.once(fn))
        times.sort()
        q = lambda p: times[min(len(times) - 1, int(p * len(times)))]  # noqa: E731
        return {"ms": statistics.median(times), "p10_ms": q(0.1), "p90_ms": q(0.9), "min_ms": times[0], "reps": len(times)}
