"""Meters (UI frame rate, model throughput) and the fair lock that serialises model calls on one device."""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable

import torch

class RateMeter:
    """Events per second over a sliding time window (e.g. frames handed to the UI)."""

    def __init__(self, window: float = 2.0, clock: Callable[[], float] = time.perf_counter):
        self.window, self.clock = window, clock
        self.times: collections.deque[float] = collections.deque()
        self.count = 0

    def tick(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.times.append(now)
        self.count += 1
        while len(self.times) > 2 and now - self.times[0] > self.window:
            self.times.popleft()

    @property
    def rate(self) -> float:
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


class WorkMeter:
    """Throughput of timed work: durations of the last `window` calls (frames / second of model time)."""

    def __init__(self, window: int = 30):
        self.durations: collections.deque[float] = collections.deque(maxlen=window)
        self.total, self.count = 0.0, 0

    def add(self, seconds: float) -> None:
        self.durations.append(max(float(seconds), 1e-9))
        self.total += seconds
        self.count += 1

    @property
    def mean(self) -> float:
        return sum(self.durations) / len(self.durations) if self.durations else 0.0

    @property
    def per_second(self) -> float:
        m = self.mean
        return 1.0 / m if m > 0 else 0.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FairLock:
    """FIFO lock: one model call at a time per device, served in arrival order (threading.Lock is not fair,
    so a busy drift loop could starve the DDIM thread). Serialising also makes the timings honest."""

    def __init__(self):
        self._cond = threading.Condition()
        self._next = self._serving = 0

    def acquire(self) -> None:
        with self._cond:
            ticket = self._next
            self._next += 1
            while ticket != self._serving:
                self._cond.wait()

    def release(self) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
