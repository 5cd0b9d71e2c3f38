"""The inference benchmark's measurement: one result row (first call, agreement with the reference, latency,
throughput), generate() end to end, kernel profiles, and a whole preset within its share of the time budget."""
from __future__ import annotations

import statistics
import time

import torch

from driftin import fast
from driftin.bench.infer_calls import PATHS, Calls, flops_per_image, make_models
from driftin.bench.profile import profile_call
from driftin.bench.timing import Timer
from driftin.generate import generate
from driftin.unet import count_params


class Clock:
    """Seconds since the run started, and a timestamped log line."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0

    def log(self, msg: str) -> None:
        print(f"[{self():6.1f}s] {msg}", flush=True)


def ok_row(rows: list[dict], preset: str, path: str, kind: str, bs: int, steps: int | None = None) -> dict | None:
    """The first row of (preset, path, kind, bs) - and steps, unless None - whose status is "ok"; None if there is none."""
    return next((r for r in rows if (r["preset"], r["path"], r["kind"], r["bs"]) == (preset, path, kind, bs)
                 and (steps is None or r["steps"] == steps) and r["status"] == "ok"), None)


def time_row(row: dict, calls: Calls, timer: Timer, args, flops) -> None:
    """Fill one result row: first call, exec path and agreement with the reference, then the timings."""
    path, kind, steps, bs, guidance = row["path"], row["kind"], row["steps"] or 1, row["bs"], row["guidance"]
    cuda, q = calls.cuda, args.quick
    fn = calls.caller(path, kind, steps, bs, guidance)
    try:
        with torch.no_grad():
            out, ms = timer.wall(fn)
            row["first_call_s"] = round(ms / 1e3, 3)
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
        row = ok_row(result["rows"], name, "fast", "drift", bs)
        if row is None:
            continue
        y = (torch.arange(bs) % 10).tolist()
        g = lambda: generate(nets["drift"], seeds=list(range(bs)), method="drift", class_labels=y,  # noqa: E731
                             guidance=2.0, fast=fast.FastOptions.from_env())
        g()
        row["generate_ms"] = statistics.median([timer.wall(g)[1] for _ in range(10)])
    clock.log(f"{name}: generate() end-to-end timings done")


def profile_preset(result: dict, name: str, calls: Calls, args) -> dict:
    """Kernel profiles of the fast path: drift at the smallest and largest batch, the longest DDIM at batch 1."""
    prof = {}

    def profile_row(kind, steps, bs, guidance, reps, key):
        row = ok_row(result["rows"], name, "fast", kind, bs, steps if kind == "ddim" else None)
        if row is None:
            return
        fn = calls.caller("fast", kind, steps, bs, guidance)
        try:
            with torch.no_grad():
                fn()
                entry = fast.get_sampler(calls.nets[kind], PATHS["fast"], calls.device).last_entry
                p = profile_call(fn, reps, calls.device, fallback=entry.run_fn)
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
    flops = flops_per_image(nets["drift"], device)
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
        result["profiles"][name] = profile_preset(result, name, calls, args)
        clock.log(f"{name}: profiles done")

    del nets, calls  # free the models before the next preset
    fast.clear_cache()
    if cuda:
        result["presets"][name]["max_memory_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
