"""Benchmark of the drift-field implementations: time, peak extra memory and agreement.

python -m driftin.bench kernel --out benchmarks/kernel_h100.json      # GPU, ~2-4 min on an H100
python -m driftin.bench kernel --quick --out /tmp/k.json               # tiny sizes, CPU smoke test

Setting per row: L groups, N generated rows, P = N positives, M = N self-negatives (K = 2N columns),
C channels, three temperatures, kernel_norm "both". Implementations: "reference" (per-tau cdist +
two softmaxes), "torch" (dense, distances shared), "lean" (blocked two-pass path, torch elementwise, fp32 GEMMs),
"triton" (the same blocked passes, fused Triton elementwise kernels; one row per GEMM precision). max_abs_diff is against "reference" where it ran, else
against "lean" (diff_vs says which); V has unit per-dimension RMS per temperature, so it is absolute.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import time

import torch

from driftin.bench.timing import Timer
from driftin.drift.field import drift_field

TAUS = (0.02, 0.05, 0.2)


def _cases(quick: bool, device: str):
    if quick:
        return [(1, 32, 8), (2, 96, 24)]
    cases = []
    for L in (1, 8):
        for C in (64, 768):
            for N in (256, 1024, 4096, 16384, 65536):
                if L * N <= 131072:  # L=8 stops at N=16384 to stay within the time budget
                    cases.append((L, N, C))
    return cases


def _dense_bytes(impl, L, N, K):
    # live [L, N, K] fp32 matrices at the peak: reference ~6 (logits, 2 softmaxes, A, ...), torch ~5
    return {"reference": 6, "torch": 5}.get(impl, 0) * 4 * L * N * K


def _free():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_case(L, N, C, impls, device, timer, max_reps, budget_ms, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    # Roughly feature-normalised inputs: mean pairwise distance ~ sqrt(C), pos offset from x.
    x = torch.randn(L, N, C, device=device, generator=g) / math.sqrt(2)
    pos = torch.randn(L, N, C, device=device, generator=g) / math.sqrt(2) + 0.3
    rows, outs = [], {}
    total = torch.cuda.get_device_properties(0).total_memory if device == "cuda" else None
    for name, impl, kw in impls:
        row = dict(impl=name, L=L, N=N, P=N, M=N, C=C, T=len(TAUS), status="ok", ms=None,
                   peak_mb=None, max_abs_diff=None, diff_vs=None, reps=0)
        if total is not None and _dense_bytes(impl, L, N, 2 * N) > total:
            row["status"] = "skip (est. memory > GPU)"
            rows.append(row)
            continue

        def fn():
            return drift_field(x, pos, None, temperatures=TAUS, impl=impl, **kw)
        try:
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            out, _ = timer.call(fn)  # warm-up (triton compiles here)
            if device == "cuda":
                row["peak_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
            out, t1 = timer.call(fn)
            times = [t1]
            reps = max(1, min(max_reps, int(budget_ms / max(t1, 1e-3))))
            for _ in range(reps - 1):
                times.append(timer.once(fn))
            row["ms"] = round(statistics.median(times), 3)
            row["reps"] = len(times)
            outs[name] = out
        except torch.cuda.OutOfMemoryError:
            row["status"] = "OOM"
            out = None
            _free()
        rows.append(row)
    ref_name = "reference" if "reference" in outs else ("lean" if "lean" in outs else None)
    for row in rows:
        if ref_name and row["impl"] in outs and row["impl"] != ref_name:
            row["max_abs_diff"] = float((outs[row["impl"]] - outs[ref_name]).abs().max())
            row["diff_vs"] = ref_name
    del outs
    _free()
    return rows


def table(rows) -> str:
    head = "| L | N | K | C | impl | ms | x reference | peak MB | max abs diff | status |\n|---|---|---|---|---|---|---|---|---|---|"
    lines = [head]
    ref = {(r["L"], r["N"], r["C"]): r["ms"] for r in rows if r["impl"] == "reference" and r["ms"]}
    for r in rows:
        base = ref.get((r["L"], r["N"], r["C"]))
        x = f"{base / r['ms']:.1f}" if base and r["ms"] else ""
        d = "" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e} ({r['diff_vs']})"
        ms = "" if r["ms"] is None else f"{r['ms']:.2f}"
        pk = "" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        lines.append(f"| {r['L']} | {r['N']} | {r['P'] + r['M']} | {r['C']} | {r['impl']} | {ms} | {x} | {pk} | {d} | {r['status']} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m driftin.bench kernel", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/kernel.json", help="JSON output path")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test)")
    ap.add_argument("--max-reps", type=int, default=10)
    ap.add_argument("--budget-ms", type=float, default=3000.0, help="timed runs per row stop near this")
    ap.add_argument("--precisions", default="ieee,tf32x3,tf32", help="GEMM precisions of the triton path")
    ap.add_argument("--impls", default="reference,torch,lean,triton")
    ap.add_argument("--cases", default="", help="only these LxNxC cases, comma-separated (e.g. 1x4096x768)")
    args = ap.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.quick:
        print("no CUDA device: running --quick sizes")
        args.quick = True
    if args.quick:  # a smoke test: one timed run per row
        args.max_reps = 1
    torch.backends.cuda.matmul.allow_tf32 = False  # torch paths in true fp32
    wanted = args.impls.split(",")
    impls = [(i, i, {"precision": "ieee"} if i == "lean" else {}) for i in ("reference", "torch", "lean") if i in wanted]
    if "triton" in wanted and device == "cuda":
        from driftin.drift import field_triton
        if field_triton.available():
            impls += [(f"triton-{p}", "triton", {"precision": p}) for p in args.precisions.split(",")]
    timer = Timer(device)
    rows = []
    t0 = time.time()
    cases = [tuple(int(v) for v in c.split("x")) for c in args.cases.split(",") if c] or _cases(args.quick, device)
    for L, N, C in cases:
        new = run_case(L, N, C, impls, device, timer, args.max_reps, args.budget_ms)
        rows += new
        if not args.quick:
            print(f"[{time.time() - t0:6.1f}s] L={L} N={N} C={C}: " +
                  ", ".join(f"{r['impl']} {r['ms']}ms" if r["ms"] else f"{r['impl']} {r['status']}" for r in new),
                  flush=True)
    info = dict(device=torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                torch=torch.__version__, temperatures=TAUS, kernel_norm="both", quick=args.quick,
                wall_s=round(time.time() - t0, 1), rows=rows)
    try:
        import triton
        info["triton"] = triton.__version__
    except Exception:
        info["triton"] = None
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(info, f, indent=1)
    print(table(rows))
    print(f"wrote {args.out} ({info['device']}, {info['wall_s']} s)")
    return 0
