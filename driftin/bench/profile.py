"""Where a step's time goes: torch.profiler over a few back-to-back calls, reduced to the numbers that say
whether the step is bound by the device's math or by the host (launches, syncs, Python).

device_busy_ms: summed duration of the device kernels and copies per call; wall_ms: host time per call,
the device drained at the end. busy / wall near 1: the math bounds the step; far below 1: the device
waits for the host, and fewer launches (compile, CUDA graphs) or no host syncs are the lever.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile


def profile_calls(fn, calls: int, device, table_path: str | Path | None = None, rows: int = 30) -> dict:
    """Profile `calls` back-to-back calls fn(i), i = 0..calls-1; summary dict, op tables written to table_path."""
    cuda = torch.device(device).type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for i in range(calls):
            fn(i)
        if cuda:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - t0) * 1e3 / calls
    events = prof.events()
    on_device = [e for e in events if e.device_type == DeviceType.CUDA]
    busy_ms = sum(e.time_range.elapsed_us() for e in on_device) / 1e3 / calls
    syncs = sum(1 for e in events if e.name in ("cudaStreamSynchronize", "cudaEventSynchronize")) / calls  # the final drain is a device sync
    summary = {"calls": calls, "wall_ms": wall_ms, "device_busy_ms": busy_ms if cuda else None,
               "device_busy_fraction": busy_ms / wall_ms if cuda and wall_ms > 0 else None,
               "device_ops_per_call": len(on_device) / calls if cuda else None,
               "host_syncs_per_call": syncs}
    if table_path:
        ka = prof.key_averages()
        parts = [f"# {summary}"]
        if cuda:
            parts += ["## by self device time", ka.table(sort_by="self_device_time_total", row_limit=rows)]
        parts += ["## by self host time", ka.table(sort_by="self_cpu_time_total", row_limit=rows)]
        Path(table_path).parent.mkdir(parents=True, exist_ok=True)
        Path(table_path).write_text("\n\n".join(parts) + "\n")
    return summary
