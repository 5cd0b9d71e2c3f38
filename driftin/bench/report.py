"""What `driftin.bench infer` reports besides timings: the markdown tables (kernel profiles: bench/profile.py)."""
from __future__ import annotations


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
