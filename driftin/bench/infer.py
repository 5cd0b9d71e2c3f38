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
import statistics
import sys
import time

import torch

from driftin import fast
from driftin.bench.report import profile_call, tables
from driftin.bench.timing import Timer
from driftin.config import preset
from driftin.generate import generate, make_noise
from driftin.unet import UNet, count_params

DRIFT_BS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TARGETS = {  # preset "base", fast path, H100
    "drift_bs1_img_s": 1500.0,
    "drift_bs256_img_s": 30000.0,
    "ddim50_bs1_ms": 25.0,
}

PATHS = {
    "eager-fp32": None,
    "eager-bf16": fast.FastOptions(dtype="bf16", compile=False, graphs=False, channels_last=False, fuse_emb=False),
    "graph-bf16": fast.FastOptions(dtype="bf16", compile=False, graphs=True, channels_last=False),
    "fast": fast.FastOptions(),  # the default of generate(fast=True) with no DRIFTIN_* variables
    "fast-autotune": fast.FastOptions(mode="max-autotune-no-cudagraphs", dynamic=False),
    "fast-static": fast.FastOptions(dynamic=False),  # one compile per batch size
    "fast-nocl": fast.FastOptions(channels_last=False),
    "static-fp32": fast.FastOptions(dtype="fp32", compile=False, graphs=False, channels_last=False),
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


def _flops_per_image(net, device) -> float | None:
    try:
        from torch.utils.flop_counter import FlopCounterMode

        x = torch.randn(1, 3, net.config.image_size, net.config.image_size, device=device)
        y = torch.zeros(1, dtype=torch.long, device=device)
        alpha = torch.ones(1, device=device) if net.config.guidance_input else None
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            net(x, None, y, alpha)
        return float(fc.get_total_flops())
    except Exception:  # noqa: BLE001
        return None


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


class Clock:
    """Seconds since the run started, and a timestamped log line."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0

    def log(self, msg: str) -> None:
        print(f"[{self():6.1f}s] {msg}", flush=True)


class Calls:
    """The timed callables of one preset: per (path, kind, steps, batch, guidance), on pre-drawn noise, and the
    eager fp32 reference outputs they are compared against."""

    def __init__(self, nets: dict, device: torch.device):
        self.nets, self.device, self.cuda = nets, device, device.type == "cuda"
        self.inputs, self.refs = {}, {}

    def get_inputs(self, bs: int):
        if bs not in self.inputs:
            seeds = list(range(bs))
            self.inputs[bs] = (seeds, make_noise(seeds, (3, 32, 32), self.device), torch.arange(bs, device=self.device) % 10)
        return self.inputs[bs]

    def caller(self, path, kind, steps, bs, guidance):
        seeds, noise, y = self.get_inputs(bs)
        net, method = self.nets["drift" if kind == "drift" else "ddim"], "drift" if kind == "drift" else "ddim"
        opts = PATHS[path]
        if opts is None:
            return lambda: fast.eager_generate(net, noise, method, steps, y, guidance, 0.0, seeds)
        if self.cuda or path.startswith("fast"):  # on CPU fast_generate picks the eager path itself
            return lambda: fast.fast_generate(net, noise, method, steps, y, guidance, 0.0, seeds, options=opts)
        s = fast.get_sampler(net, opts, self.device)
        return lambda: s.generate(noise, method, steps, y, guidance, 0.0, seeds)

    def reference(self, kind, steps, bs, guidance):
        key = (kind, steps, bs)
        if key not in self.refs:
            with torch.no_grad():
                self.refs[key] = self.caller("eager-fp32", kind, steps, bs, guidance)().clamp(-1, 1)
        return self.refs[key]


def make_models(name: str, device: torch.device) -> dict:
    """Random-init class-conditional UNets of a preset: the drift generator (with guidance input) and the DDIM model."""
    torch.manual_seed(0)
    return {"drift": UNet(preset(name, num_classes=10, guidance_input=True, zero_init_out=False)).to(device).eval(),
            "ddim": UNet(preset(name, num_classes=10, zero_init_out=False)).to(device).eval()}


def time_row(row: dict, calls: Calls, timer: Timer, args, flops) -> None:
    """Fill one result row: first call, exec path and agreement with the reference, then the timings."""
    path, kind, steps, bs, guidance = row["path"], row["kind"], row["steps"] or 1, row["bs"], row["guidance"]
    cuda, q = calls.cuda, args.quick
    fn = calls.caller(path, kind, steps, bs, guidance)
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            out = fn()
            timer.sync()
            row["first_call_s"] = round(time.perf_counter() - t0, 3)
            if path != "eager-fp32":
                info = dict(fast.last_info) if cuda or path.startswith("fast") else {"path": "static"}
                row["exec_path"] = info.get("path")
                row["build"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in info.items()
                                if k in ("build_s", "warmup_s", "capture_s", "compile_error", "reason")}
                ref = calls.reference(kind, steps, bs, guidance)
                d = (out.clamp(-1, 1) - ref).abs()
                row["max_abs_diff"], row["mean_abs_diff"] = d.max().item(), d.mean().item()
            else:
                row["exec_path"] = "eager"
            del out
            row.update(timer.measure(fn, args.warmup, args.reps, args.max_seconds, min_reps=2 if q else 5))
            if kind == "drift":
                row["pipelined_ms"] = timer.back_to_back(fn, max(2, min(20, int(200 / max(row["ms"], 1e-3)))))
                row["pipelined_img_s"] = bs * 1e3 / row["pipelined_ms"]
                if flops:
                    row["tflops"] = flops * bs / (row["ms"] * 1e-3) / 1e12
        row["img_s"] = bs * 1e3 / row["ms"]
        if path.startswith("fast") and cuda and row["exec_path"] == "eager":
            row["status"] = f"fell back to eager: {fast.last_info.get('reason')}"
    except Exception as err:  # noqa: BLE001 – record and go on
        row["status"] = f"error: {type(err).__name__}: {str(err)[:300]}"
        if cuda:
            torch.cuda.empty_cache()


def time_generate(result: dict, name: str, nets: dict, args, timer: Timer, clock: Clock, deadline: float) -> None:
    """End to end: generate(fast=...) with its CPU noise and the CLI's options (from DRIFTIN_*; == "fast" unset)."""
    for bs in args.batch_sizes:
        if clock() > deadline:
            break
        row = next(r for r in result["rows"] if (r["preset"], r["path"], r["kind"], r["bs"]) == (name, "fast", "drift", bs))
        if row["status"] != "ok":
            continue
        y = (torch.arange(bs) % 10).tolist()
        g = lambda: generate(nets["drift"], seeds=list(range(bs)), method="drift", class_labels=y,  # noqa: E731
                             guidance=2.0, fast=fast.FastOptions.from_env())
        g()
        row["generate_ms"] = statistics.median([timer.wall(g)[1] for _ in range(10)])
    clock.log(f"{name}: generate() end-to-end timings done")


def profile_preset(result: dict, name: str, nets: dict, calls: Calls, args, device) -> dict:
    """Kernel profiles of the fast path: drift at the smallest and largest batch, the longest DDIM at batch 1."""
    prof = {}

    def profile_row(kind, steps, bs, guidance, reps, key):
        match = (name, "fast", kind, bs) + ((steps,) if kind == "ddim" else ())
        row = next((r for r in result["rows"]
                    if (r["preset"], r["path"], r["kind"], r["bs"]) + ((r["steps"],) if kind == "ddim" else ()) == match), None)
        if row is None or row["status"] != "ok":
            return
        fn = calls.caller("fast", kind, steps, bs, guidance)
        try:
            with torch.no_grad():
                fn()
                entry = fast.get_sampler(nets[kind], PATHS["fast"], device).last_entry
                p = profile_call(fn, reps, device, fallback=entry.run_fn)
            p["latency_ms"] = row["ms"]
            p["gpu_busy_pct"] = round(100 * p["kernel_us_per_call"] / 1e3 / row["ms"], 1)
            if kind == "ddim":
                p["kernel_us_per_step"] = round(p["kernel_us_per_call"] / steps, 1)
            prof[key] = p
        except Exception as err:  # noqa: BLE001
            prof[key] = {"error": f"{type(err).__name__}: {err}"[:300]}

    for bs in sorted({min(args.batch_sizes), max(args.batch_sizes)}):
        profile_row("drift", 1, bs, 2.0, 20, f"drift_bs{bs}")
    if args.ddim_steps and 1 in args.ddim_batch:  # the longest DDIM at batch 1: per-step kernels
        steps = max(args.ddim_steps)
        profile_row("ddim", steps, 1, 1.0, 3, f"ddim{steps}_bs1")
    return prof


def bench_preset(result: dict, name: str, deadline: float, args, device, timer: Timer, clock: Clock) -> None:
    cuda = device.type == "cuda"
    nets = make_models(name, device)
    flops = _flops_per_image(nets["drift"], device)
    result["presets"][name] = {"params": count_params(nets["drift"]), "params_ddim": count_params(nets["ddim"]),
                               "gflops_per_image": flops / 1e9 if flops else None}
    clock.log(f"preset {name}: {count_params(nets['drift']) / 1e6:.1f}M params, "
              f"{(flops or 0) / 1e9:.2f} GFLOP/img forward")

    cases = [("drift", 1, bs, 2.0) for bs in args.batch_sizes]
    cases += [("ddim", s, bs, 1.0) for bs in args.ddim_batch for s in args.ddim_steps]
    extra = [("ddim-cfg", args.cfg_steps, 1, 2.0)] if args.cfg_steps else []  # after all paths' main cases
    calls = Calls(nets, device)
    for path, (kind, steps, bs, guidance) in [(p, c) for p in args.paths for c in cases] + \
            [(p, c) for c in extra for p in args.paths]:
        row = {"preset": name, "path": path, "kind": kind, "bs": bs, "steps": steps if kind != "drift" else None,
               "guidance": guidance, "status": "ok"}
        result["rows"].append(row)
        if clock() > deadline:
            row["status"] = "skipped (time budget)"
            continue
        time_row(row, calls, timer, args, flops)
        clock.log(f"{name:5s} {path:12s} {kind:8s} steps={row['steps'] or '-':>3} bs={bs:<4d} "
                  + (f"{row['ms']:9.3f} ms {row.get('img_s', 0):10,.0f} img/s  first {row['first_call_s']:.1f}s"
                     if "ms" in row else row["status"]))

    if not args.no_generate and "fast" in args.paths and cuda:
        time_generate(result, name, nets, args, timer, clock, deadline)
    if cuda and args.profile != "never" and "fast" in args.paths and clock() < deadline + 30:
        result["profiles"][name] = profile_preset(result, name, nets, calls, args, device)
        clock.log(f"{name}: profiles done")

    del nets, calls  # free the models before the next preset
    fast.clear_cache()
    if cuda:
        result["presets"][name]["max_memory_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def check_targets(result: dict) -> dict:
    """The issue's speed targets for the base preset's fast path: goal, measured value, met."""
    def find(kind, bs, steps=None, preset_name="base", path="fast"):
        return next((r for r in result["rows"] if (r["preset"], r["path"], r["kind"], r["bs"]) == (preset_name, path, kind, bs)
                     and (steps is None or r["steps"] == steps) and r["status"] == "ok"), None)

    targets = {}
    for key, goal in TARGETS.items():
        if key.startswith("drift"):
            r = find("drift", 1 if "bs1_" in key else 256)
            value = r and r["img_s"]
            met = value is not None and value >= goal
        else:
            r = find("ddim", 1, 50)
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
