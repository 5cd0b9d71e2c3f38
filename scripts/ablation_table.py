"""The drift recipe ablation (#19) as one table: every row's training log, config and FID-10k eval, read from
the run folders, written as JSON + markdown.

    python scripts/ablation_table.py training/logs/ablation --out benchmarks/ablation_drift.json --md benchmarks/ablation_drift.md

Each row folder holds what `scripts/gpu_lease.sh ablation` leaves per row: config.json (the TrainConfig as run),
log.jsonl (the trainer's log) and eval.json (`python -m driftin.eval --n 10000` of the exported EMA weights).
The "change" column is the config keys in which a row differs from the reference row (01_fixes by default).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_row(folder: Path) -> dict:
    cfg = json.loads((folder / "config.json").read_text())
    records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    losses = [r for r in records if "loss" in r and "step" in r]
    (entry,) = json.loads((folder / "eval.json").read_text()).values()
    speeds = [r["img_per_s"] for r in losses[1:]]  # the first window holds the compile
    return {"row": folder.name, "config": cfg, "steps": losses[-1]["step"], "batch": cfg["batch_size"],
            "images_seen": losses[-1].get("images_seen", losses[-1]["step"] * cfg["batch_size"]),
            "final_loss": losses[-1]["loss"], "img_per_s_median": statistics.median(speeds) if speeds else None,
            "fid": entry["fid"], "kid": entry.get("kid"), "fd_evalnet": entry.get("fd"), "n": entry["n"],
            "eval_git_commit": entry.get("git_commit")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="folder of row folders")
    ap.add_argument("--reference", default="01_fixes")
    ap.add_argument("--out", required=True)
    ap.add_argument("--md")
    ap.add_argument("--note", default="")
    ap.add_argument("--command", default="", help="the command that ran the rows (recorded in the JSON)")
    args = ap.parse_args(argv)

    rows = [load_row(f) for f in sorted(Path(args.root).iterdir()) if (f / "eval.json").exists()]
    ref = flat(next(r["config"] for r in rows if r["row"] == args.reference))
    ignore = {"out", "steps", "warmup", "sample_every", "ckpt_every", "log_every"}
    for r in rows:
        mine = flat(r["config"])
        r["change"] = {k: mine.get(k) for k in sorted(set(mine) | set(ref)) if k not in ignore and mine.get(k) != ref.get(k)}
        del r["config"]
    out = {"rows": rows, "reference": args.reference, "note": args.note, "command": args.command}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    if args.md:
        lines = ["| row | change vs " + args.reference + " | steps | batch | images | FID-10k ↓ | KID ×10³ | evalnet FD | img/s (shared GPU) |",
                 "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            change = ", ".join(f"`{k}`={json.dumps(v)}" for k, v in r["change"].items()) or "–"
            lines.append(f"| {r['row']} | {change} | {r['steps']} | {r['batch']} | {r['images_seen']:,} | {r['fid']:.1f} | "
                         f"{r['kid'] * 1e3:.0f} | {r['fd_evalnet']:.1f} | {r['img_per_s_median']:,.0f} |")
        Path(args.md).write_text("\n".join(lines) + "\n" + (f"\n{args.note}\n" if args.note else ""))
    print("\n".join(f"{r['row']}: FID-10k {r['fid']:.1f} at step {r['steps']}" for r in rows))
    return out


if __name__ == "__main__":
    main()
