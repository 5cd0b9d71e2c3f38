"""Sampling latency and throughput: drift (one forward pass) and DDIM, per preset, batch size and path.

python -m driftin.bench infer --presets small base --out benchmarks/infer_h100.json   # GPU, ~6-8 min
python -m driftin.bench infer --quick --out /tmp/infer.json                           # CPU smoke test
(python -m driftin.bench.infer ... is the same.)

Models are random-init UNets of each preset, class-conditional (10 classes); the drift generator has the
guidance input (alpha), the DDIM model has not (speed does not depend on the weights). Paths:
  eager-fp32   generate()'s eager code on the fp32 model (cuDNN TF32 as PyTorch defaults it)
  eager-bf16   bf16 copy of the model as it is (no fused AdaGN projection), no compile, no graphs
  graph-bf16   bf16 copy (fused AdaGN projection), CUDA graphs of the eager model (DRIFTIN_COMPILE=0)
  fast         generate(fast=True)'s default: bf16 + channels_last + torch.compile + CUDA graphs
  fast-autotune   the same, compiled with mode=max-autotune-no-cudagraphs, dynamic=False (opt-in)
  fast-static  fast with dynamic=False (one compile per batch size; opt-in)
  fast-nocl    fast without channels_last (opt-in)
  static-fp32  the fast path's code without graphs or compile (CPU check of the code path)
Latency: GPU time between CUDA events around one call (queue empty at the start, so host launch
overhead counts), median over many calls after warm-up; img/s = batch / latency. pipelined_ms: the
mean over back-to-back calls. first_call_s: the first call at a shape (compile + capture for fast
paths); build.warmup_s / build.capture_s split it. generate_ms: generate(..., fast=True) end to end,
including its per-seed CPU noise (host-timed). Noise is pre-drawn for all other figures.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import torch

from driftin.bench.infer_calls import PATHS
from driftin.bench.infer_measure import Clock, bench_preset, ok_row
from driftin.bench.report import tables
from driftin.bench.timing import Timer

DRIFT_BS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TARGETS = {  # preset "base", fast path, H100
    "drift_bs1_img_s": 1500.0,
    "drift_bs256_img_s": 30000.0,
    "ddim50_bs1_ms": 25.0,
}


def _versions(device) -> dict:
    d = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
         "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
         "host": platform.node(), "cpu_threads": torch.get_num_threads()}
    try:
        import triton

        d["triton"] = triton.__version__
    except Exception:  # noqa: BLE001
        d["triton"] = None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        d.update(gpu=p.name, gpu_mem_gb=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count,
                 cudnn_benchmark=torch.backends.cudnn.benchmark, cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                 matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return d


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m driftin.bench infer", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=None, help="default: small base (tiny with --quick)")
    ap.add_argument("--paths", nargs="+", default=None, choices=sorted(PATHS),
                    help="default: fast eager-fp32 eager-bf16 graph-bf16 (CPU: eager-fp32 static-fp32 eager-bf16 fast)")
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=None, help="drift batch sizes")
    ap.add_argument("--ddim-steps", nargs="*", type=int, default=None, help="default 10 25 50")
    ap.add_argument("--ddim-batch", nargs="*", type=int, default=None, help="default 1 16")
    ap.add_argument("--cfg-steps", type=int, default=50, help="also DDIM-N with CFG (guidance 2) at batch 1; 0: off")
    ap.add_argument("--reps", type=int, default=100, help="max timed calls per point")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=1.5, help="time cap per point (at least 5 calls)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip remaining points after this many seconds")
    ap.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                    help="kernel profile of the fast drift path at the smallest and largest batch "
                         "(auto: for every preset on CUDA)")
    ap.add_argument("--no-generate", action="store_true", help="skip the end-to-end generate() timings")
    ap.add_argument("--quick", action="store_true", help="tiny preset, few sizes, few reps (CPU smoke test)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default="benchmarks/infer.json")
    ap.add_argument("--md", default=None, help="also write the markdown tables here")
    return ap.parse_args(argv)


def fill_defaults(args: argparse.Namespace, cuda: bool) -> None:
    """The defaults that depend on the device and on --quick, in place."""
    q = args.quick
    args.presets = args.presets or (["tiny"] if q else ["small", "base"])
    args.paths = args.paths or (["eager-fp32", "static-fp32", "eager-bf16", "fast"] if not cuda
                                else ["fast", "eager-fp32", "eager-bf16", "graph-bf16"])
    args.batch_sizes = args.batch_sizes or ([1, 2, 4] if q else list(DRIFT_BS))
    args.ddim_steps = args.ddim_steps if args.ddim_steps is not None else ([2, 3] if q else [10, 25, 50])
    args.ddim_batch = args.ddim_batch if args.ddim_batch is not None else ([1] if q else [1, 16])
    if q:
        args.cfg_steps = min(args.cfg_steps, 2)
        args.reps, args.warmup, args.max_seconds = min(args.reps, 3), min(args.warmup, 1), min(args.max_seconds, 0.5)


def check_targets(result: dict) -> dict:
    """The issue's speed targets for the base preset's fast path: goal, measured value, met."""
    targets = {}
    for key, goal in TARGETS.items():
        if key.startswith("drift"):
            r = ok_row(result["rows"], "base", "fast", "drift", 1 if "bs1_" in key else 256)
            value = r and r["img_s"]
            met = value is not None and value >= goal
        else:
            r = ok_row(result["rows"], "base", "fast", "ddim", 1, 50)
            value = r and r["ms"]
            met = value is not None and value <= goal
        targets[key] = {"goal": goal, "value": value, "met": bool(met)}
    return targets


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    fill_defaults(args, cuda)
    if cuda:
        torch.backends.cudnn.benchmark = True  # for every path: eager gets its best conv algorithms too

    timer, clock = Timer(device), Clock()
    result = {"meta": {**_versions(device), "argv": list(sys.argv if argv is None else argv),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S"), "timing": "cuda events" if cuda else "perf_counter",
                       "env": {k: v for k, v in os.environ.items() if k.startswith("DRIFTIN_")}},
              "args": vars(args), "presets": {}, "rows": [], "profiles": {}, "targets": {}}
    for i_preset, name in enumerate(args.presets):
        # each preset gets an equal share of what is left of the budget
        deadline = clock() + max(0.0, args.budget_s - clock()) / (len(args.presets) - i_preset)
        bench_preset(result, name, deadline, args, device, timer, clock)
    if cuda and "base" in args.presets:
        result["targets"] = check_targets(result)

    result["meta"]["wall_s"] = round(clock(), 1)
    md = tables(result)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o))
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    print(md)
    print(f"\nwrote {args.out} ({result['meta'].get('gpu', device)}, torch {torch.__version__}, {result['meta']['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main() or 0)
