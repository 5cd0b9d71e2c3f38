"""Where time goes, from torch.profiler: profile_calls (the training bench: device-busy vs wall time of a step)
and profile_call (the inference bench: the top kernels of a sampling call).

profile_calls reduces a few back-to-back calls to the numbers that say whether the step is bound by the
device's math or by the host (launches, syncs, Python).

device_busy_ms: summed duration of the device kernels and copies per call; wall_ms: host time per call,
the device drained at the end. busy / wall near 1: the math bounds the step; far below 1: the device
waits for the host, and fewer launches (compile, CUDA graphs) or no host syncs are the lever.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from driftin.bench.timing import Timer


def profile_calls(fn, calls: int, device, table_path: str | Path | None = None, rows: int = 30) -> dict:
    """Profile `calls` back-to-back calls fn(i), i = 0..calls-1; summary dict, op tables written to table_path."""
    cuda = torch.device(device).type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])

    def loop():
        for i in range(calls):
            fn(i)

    # shapes (which tensors the copies move) only for the tables: recording them costs host time per op
    with profile(activities=acts, record_shapes=table_path is not None) as prof:
        wall_ms = Timer(device).wall(loop)[1] / calls
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
        parts += ["## copies by input shape (layout changes and materialised views: which tensors they move)",
                  copies_by_shape(prof, cuda, rows)]
        Path(table_path).parent.mkdir(parents=True, exist_ok=True)
        Path(table_path).write_text("\n\n".join(parts) + "\n")
    return summary


def copies_by_shape(prof, cuda: bool, rows: int = 30) -> str:
    """The aten::copy_ calls grouped by their input shapes, the most expensive first (device time on a GPU,
    host time on a CPU): a layout conversion shows up as the shape of the activation it converts."""
    copies = [e for e in prof.key_averages(group_by_input_shape=True) if e.key == "aten::copy_"]
    total = _device_time_us if cuda else (lambda e: float(e.self_cpu_time_total))
    copies.sort(key=total, reverse=True)
    lines = ["| input shapes | calls | total us |", "| --- | ---: | ---: |"]
    lines += [f"| {e.input_shapes} | {e.count} | {total(e):,.0f} |" for e in copies[:rows]]
    return "\n".join(lines)


def _device_time_us(e) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total"):
        v = getattr(e, name, None)
        if v is not None:
            return float(v)
    return 0.0


def profile_call(fn, reps: int, device, fallback=None) -> dict:
    """Top kernels by GPU time per call (torch.profiler), of fn; if kernels inside CUDA graphs are not
    visible to the profiler, of fallback (the same work run uncaptured)."""
    def run(f):
        for _ in range(3):
            f()
        torch.cuda.synchronize(device)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                f()
            torch.cuda.synchronize(device)
        kernels = [e for e in prof.key_averages()
                   if getattr(e, "device_type", None) == DeviceType.CUDA and _device_time_us(e) > 0]
        return kernels

    source = "graph replay"
    kernels = run(fn)
    if not kernels and fallback is not None:
        source, kernels = "uncaptured step function (graph kernels not visible to the profiler)", run(fallback)
    total = sum(_device_time_us(e) for e in kernels) / reps
    kernels.sort(key=_device_time_us, reverse=True)
    top = [{"kernel": e.key[:140], "us_per_call": round(_device_time_us(e) / reps, 2),
            "launches_per_call": round(e.count / reps, 2),
            "pct": round(100 * _device_time_us(e) / reps / total, 1) if total else None} for e in kernels[:15]]
    return {"source": source, "kernel_us_per_call": round(total, 1),
            "kernel_launches_per_call": round(sum(e.count for e in kernels) / reps, 1), "top": top}
