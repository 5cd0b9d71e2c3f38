"""The drift recipe ablation (#19) as one table: every row's training log, config and FID-10k eval, read from
the run folders, written as JSON + markdown.

    python scripts/ablation_table.py training/logs/ablation --out benchmarks/ablation_drift.json --md benchmarks/ablation_drift.md

Each row folder holds what `scripts/gpu_lease.sh ablation` leaves per row: config.json (the TrainConfig as run),
log.jsonl (the trainer's log) and eval.json (`python -m driftin.eval --n 10000` of the exported EMA weights).
The "change" column is the config keys in which a row differs from the reference row (01_recipe by default).

The arms of a chain block (`chains+trial`: chain_drift, chain_drift_trial, fine-tuned from the same weights) read
the same way; their eval.json is in export/ and holds several entries, so name one:

    python scripts/ablation_table.py runs/lease-N --rows chain_drift chain_drift_trial --reference chain_drift \
        --entry drift_steps1_g1 --out benchmarks/ablation_block4.json --md benchmarks/ablation_block4.md

Rows continued from the shipped weights (`ABL_FROM=drift-cifar10 ... start chains ablation`) stop at one of the drift
chain's snapshot steps; --at-step N reads every row there (a run that went on, the chain, by its snapshot's eval and
its log up to N), so the chain is the reference row:

    python scripts/ablation_table.py runs/lease-N --rows chain_drift ablation_from/05_queues --reference chain_drift \
        --at-step 17000 --out ... --md ...
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from driftin.checkpoint import write_atomic  # noqa: E402


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def eval_file(folder: Path) -> Path:
    return folder / "eval.json" if (folder / "eval.json").exists() else folder / "export" / "eval.json"


def load_row(folder: Path, entry_key: str | None = None, at_step: int | None = None) -> dict:
    """One row; a run continued from weights (a chain arm) counts its steps and images from its boundary record.
    at_step: the row as it was at that step (its EMA snapshot's eval where the run went on past it)."""
    cfg = json.loads((folder / "config.json").read_text())
    records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    losses = [r for r in records if "loss" in r and "step" in r]
    folder_eval = folder
    if at_step is not None:  # the row must have got there: a run cut short, or past it without a snapshot, is no row
        last = max((r["step"] for r in losses), default=0)
        snapshot = folder / "snapshots" / f"step_{at_step:07d}"
        if last < at_step:
            raise ValueError(f"{folder.name} stopped at step {last}, before --at-step {at_step}")
        if last > at_step:
            if not (snapshot / "eval.json").exists():
                raise ValueError(f"{folder.name} went on to step {last} and has no evaluated snapshot at {at_step} ({snapshot})")
            folder_eval = snapshot
        records = [r for r in records if r.get("step", 0) <= at_step]
        losses = [r for r in losses if r["step"] <= at_step]
    start = next((r for r in records if r.get("event") == "boundary"), {"step": 0, "images_seen": 0})
    entries = json.loads(eval_file(folder_eval).read_text())
    if entry_key is None and len(entries) != 1:
        raise ValueError(f"{eval_file(folder_eval)} holds {sorted(entries)}: name one with --entry")
    entry = entries[entry_key] if entry_key else next(iter(entries.values()))
    speeds = [r["img_per_s"] for r in losses[1:]]  # the first window holds the compile
    images = losses[-1].get("images_seen", losses[-1]["step"] * cfg["batch_size"])
    return {"row": folder.name, "config": cfg, "steps": losses[-1]["step"] - start["step"], "batch": cfg["batch_size"],
            "images_seen": images - start["images_seen"], **({"from_step": start["step"]} if start["step"] else {}),
            "final_loss": losses[-1]["loss"], "img_per_s_median": statistics.median(speeds) if speeds else None,
            "fid": entry["fid"], "kid": entry.get("kid"), "fd_evalnet": entry.get("fd"), "n": entry["n"],
            "eval_git_commit": entry.get("git_commit")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="folder of row folders")
    ap.add_argument("--rows", nargs="+", help="only these row folders (default: every one with an eval.json)")
    ap.add_argument("--entry", help="the eval.json entry to read (needed where it holds several)")
    ap.add_argument("--reference", default="01_recipe")
    ap.add_argument("--at-step", type=int, help="every row as at this step (the chain's snapshot there)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--md")
    ap.add_argument("--note", default="")
    ap.add_argument("--command", default="", help="the command that ran the rows (recorded in the JSON)")
    args = ap.parse_args(argv)

    folders = [Path(args.root) / r for r in args.rows] if args.rows else sorted(Path(args.root).iterdir())
    rows = [load_row(f, args.entry, args.at_step) for f in folders if eval_file(f).exists()]
    ref = flat(next(r["config"] for r in rows if r["row"] == args.reference))
    ignore = {"out", "steps", "warmup", "sample_every", "ckpt_every", "log_every", "snapshot_every"}
    for r in rows:
        mine = flat(r["config"])
        r["change"] = {k: mine.get(k) for k in sorted(set(mine) | set(ref)) if k not in ignore and mine.get(k) != ref.get(k)}
        del r["config"]
    out = {"rows": rows, "reference": args.reference, "note": args.note, "command": args.command}
    write_atomic(args.out, json.dumps(out, indent=2) + "\n")
    if args.md:
        lines = ["| row | change vs " + args.reference + " | steps | batch | images | FID ↓ (n) | KID ×10³ | evalnet FD | img/s |",
                 "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            change = ", ".join(f"`{k}`={json.dumps(v)}" for k, v in r["change"].items()) or "–"
            lines.append(f"| {r['row']} | {change} | {r['steps']} | {r['batch']} | {r['images_seen']:,} | {r['fid']:.2f} ({r['n'] // 1000}k) | "
                         f"{r['kid'] * 1e3:.0f} | {r['fd_evalnet']:.1f} | {r['img_per_s_median']:,.0f} |")
        write_atomic(args.md, "\n".join(lines) + "\n" + (f"\n{args.note}\n" if args.note else ""))
    print("\n".join(f"{r['row']}: FID ({r['n']:,} samples) {r['fid']:.2f} after {r['steps']} steps" for r in rows))
    return out


if __name__ == "__main__":
    main()
