"""The fast path's captured CUDA graphs: one bounded LRU cache shared by all samplers, the capture itself
(warm-up on a side stream, then torch.cuda.graph), memory pools per device, and the torch.compile call.

Not thread-parallel: LOCK serialises every fast call (the static input buffers are shared per key).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict

import torch

from .options import FastOptions

LOCK = threading.RLock()
_POOLS: dict[int, object] = {}


class GraphCache:
    """Runnable entries by key (sampler uid first), least recently used dropped beyond `limit`."""

    def __init__(self, limit: int = 32):
        self.entries: "OrderedDict[tuple, Entry]" = OrderedDict()
        self.limit = limit

    def get(self, key):
        e = self.entries.get(key)
        if e is not None:
            self.entries.move_to_end(key)
        return e

    def put(self, key, entry) -> None:
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > self.limit:
            self.entries.popitem(last=False)

    def drop(self, uid: int) -> None:
        """Forget every entry of one sampler."""
        for k in [k for k in self.entries if k[0] == uid]:
            del self.entries[k]

    def clear(self) -> None:
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)


GRAPHS = GraphCache()


def _bump_recompile_limit(n: int = 64) -> None:
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name) and getattr(cfg, name) < n:
            setattr(cfg, name, n)


def compile_fn(fn, opts: FastOptions):
    import torch._dynamo  # noqa: F401

    _bump_recompile_limit()
    kw = {"backend": opts.backend, "dynamic": opts.dynamic}
    if opts.backend == "inductor":
        options = {}
        if opts.mode == "max-autotune-no-cudagraphs":
            options["max_autotune"] = True
        if opts.freezing:
            options["freezing"] = True
        if options:
            options["triton.cudagraphs"] = False
            kw["options"] = options
    return torch.compile(fn, **kw)


def _pool(device: torch.device):
    if device.index not in _POOLS:
        with torch.cuda.device(device):
            _POOLS[device.index] = torch.cuda.graph_pool_handle()
    return _POOLS[device.index]


class Entry:
    """One runnable: a captured CUDA graph with static inputs/outputs, or the plain function."""

    def __init__(self, run, inputs: dict, device: torch.device, use_graph: bool, warm: bool):
        self.run_fn, self.inputs, self.state = run, inputs, {}
        self.graph, self.out, self.warmup_s, self.capture_s, self.build_s = None, None, 0.0, 0.0, 0.0
        if use_graph:
            self._capture(device)
        elif warm:  # compile now, inside the build's error handling
            t0 = time.perf_counter()
            run()
            self.warmup_s = time.perf_counter() - t0

    def _capture(self, device, warmup: int = 2):
        bench = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # algorithm search during warm-up, baked into the graph
        try:
            with torch.cuda.device(device):
                t0 = time.perf_counter()
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(warmup):  # compile, autotune, cuDNN/cuBLAS setup
                        self.run_fn()
                torch.cuda.current_stream().wait_stream(side)
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=_pool(device), capture_error_mode="thread_local"):
                    out = self.run_fn()
                torch.cuda.synchronize()
                self.warmup_s, self.capture_s = t1 - t0, time.perf_counter() - t1
        finally:
            torch.backends.cudnn.benchmark = bench
        self.graph, self.out = graph, out

    def __call__(self):
        if self.graph is None:
            return self.run_fn()
        self.graph.replay()
        return self.out


class BuildError(RuntimeError):
    pass
