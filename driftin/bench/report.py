"""What `driftin.bench infer` reports besides timings: kernel profiles (torch.profiler) and the markdown tables."""
from __future__ import annotations

import torch


def _device_time_us(e) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total"):
        v = getattr(e, name, None)
        if v is not None:
            return float(v)
    return 0.0


def profile_call(fn, reps: int, device, fallback=None) -> dict:
    """Top kernels by GPU time per call (torch.profiler), of fn; if kernels inside CUDA graphs are not
    visible to the profiler, of fallback (the same work run uncaptured)."""
    from torch.profiler import ProfilerActivity, profile

    def run(f):
        for _ in range(3):
            f()
        torch.cuda.synchronize(device)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                f()
            torch.cuda.synchronize(device)
        kernels = [e for e in prof.key_averages()
                   if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA and _device_time_us(e) > 0]
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


def _fmt(v, nd=3):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}" if v < 100 else f"{v:,.0f}"
    return str(v)


def tables(result) -> str:
    rows, out = result["rows"], []
    for name in result["presets"]:
        pr = [r for r in rows if r["preset"] == name and r["status"] == "ok"]
        paths = [p for p in result["args"]["paths"] if any(r["path"] == p for r in pr)]
        if not pr:
            continue
        info = result["presets"][name]
        out.append(f"\n### {name} ({info['params'] / 1e6:.1f}M params, "
                   f"{_fmt((info.get('gflops_per_image') or 0), 2)} GFLOP/img), drift: ms per call (img/s)\n")
        out.append("| batch | " + " | ".join(paths) + " | fast build s | fast max abs diff |")
        out.append("|---:|" + "---:|" * (len(paths) + 2))
        for bs in sorted({r["bs"] for r in pr if r["kind"] == "drift"}):
            cells, build, diff = [], None, None
            for p in paths:
                r = next((r for r in pr if r["kind"] == "drift" and r["bs"] == bs and r["path"] == p), None)
                cells.append("–" if r is None else f"{r['ms']:.3f} ({r['img_s']:,.0f})")
                if r is not None and p.startswith("fast") and build is None:
                    build, diff = r.get("first_call_s"), r.get("max_abs_diff")
            out.append(f"| {bs} | " + " | ".join(cells) + f" | {_fmt(build, 1)} | {_fmt(diff, 4)} |")
        ddim = sorted({(r["kind"], r["steps"], r["bs"]) for r in pr if r["kind"] != "drift"})
        if ddim:
            out.append(f"\n{name}, DDIM: ms per call (whole sampler)\n")
            out.append("| sampler | batch | " + " | ".join(paths) + " | fast build s | fast max abs diff |")
            out.append("|---|---:|" + "---:|" * (len(paths) + 2))
            for kind, steps, bs in ddim:
                cells, build, diff = [], None, None
                for p in paths:
                    r = next((r for r in pr if (r["kind"], r["steps"], r["bs"], r["path"]) == (kind, steps, bs, p)), None)
                    cells.append("–" if r is None else f"{r['ms']:.2f}")
                    if r is not None and p.startswith("fast") and build is None:
                        build, diff = r.get("first_call_s"), r.get("max_abs_diff")
                label = f"DDIM-{steps}" + (" CFG" if kind == "ddim-cfg" else "")
                out.append(f"| {label} | {bs} | " + " | ".join(cells) + f" | {_fmt(build, 1)} | {_fmt(diff, 4)} |")
    if result.get("targets"):
        out.append("\nTargets (base, fast path)\n")
        out.append("| target | goal | measured | met |")
        out.append("|---|---:|---:|:---:|")
        for k, t in result["targets"].items():
            out.append(f"| {k} | {_fmt(t['goal'])} | {_fmt(t['value'])} | {'yes' if t['met'] else 'NO'} |")
    skipped = [r for r in rows if r["status"] != "ok"]
    if skipped:
        out.append(f"\n{len(skipped)} rows not ok, e.g. " + "; ".join(
            f"{r['preset']}/{r['path']}/{r['kind']}/bs{r['bs']}: {r['status']}" for r in skipped[:5]))
    return "\n".join(out)
