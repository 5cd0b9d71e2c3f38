"""FID against images seen: evaluate every EMA snapshot of one or more runs (a chain of runs across GPU
blocks reads as one curve) and write the curve as JSON (+ a PNG plot).

    python -m driftin.eval.curve runs/drift-a/snapshots runs/drift-b/snapshots --n 10000 \\
        --out benchmarks/curve_drift.json --plot assets/curve_drift.png

Snapshots are inference folders `step_XXXXXXX` (written by the trainer's `snapshot_every`); each is
scored with `python -m driftin.eval`'s main (same protocol: Inception FID/KID vs the train split, n samples, labels
i % 10, seeds 0..n-1), its entries merged into the curve file under the snapshot's step.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def snapshot_folders(roots: list[str]) -> list[Path]:
    found = []
    for r in roots:
        r = Path(r)
        found += [r] if (r / "config.json").exists() else sorted(p for p in r.glob("step_*") if (p / "config.json").exists())
    if not found:
        raise FileNotFoundError(f"no snapshot folders (step_*/config.json) under {', '.join(roots)}")
    return found


def images_seen(folder: Path) -> tuple[int, int]:
    """(step, images seen) from the snapshot's config.json meta."""
    meta = json.loads((folder / "config.json").read_text())  # save_pretrained: {"model": ..., **meta}
    step = int(meta.get("steps", 0))
    seen = meta.get("images_seen")
    if seen is None:
        seen = step * int(meta.get("train_config", {}).get("batch_size", 0))
    return step, int(seen)


def plot(points: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
    for label in sorted({p["label"] for p in points}):
        pts = sorted((p for p in points if p["label"] == label), key=lambda p: p["images_seen"])
        ax.plot([p["images_seen"] / 1e6 for p in pts], [p["fid"] for p in pts], "o-", ms=3, label=label)
    ax.set_xlabel("images seen (millions)")
    ax.set_ylabel(f"FID-{points[0]['n'] // 1000}k (Inception, vs train)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m driftin.eval.curve", description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", nargs="+", help="snapshot folders or folders holding step_* snapshots")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--label", default=None, help="curve label (default: the run folder's name)")
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps for DDPM snapshots")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--inception", default="auto")
    ap.add_argument("--evalnet", help="evaluation net folder for the diagnostics (default: python -m driftin.eval's)")
    ap.add_argument("--device")
    ap.add_argument("--out", required=True, help="curve JSON (points are merged in)")
    ap.add_argument("--plot", help="PNG of FID vs images seen")
    args = ap.parse_args(argv)

    from driftin.eval import write_json
    from driftin.eval.__main__ import EvalContext, main as evaluate

    # One context for the whole curve: the evalnet, the Inception network and their reference statistics are
    # loaded once, and every snapshot's weights go into one generator object (so the fast sampling path keeps
    # its compiled code and CUDA graphs instead of building them again per snapshot).
    ctx = EvalContext()
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {"points": []}
    for folder in snapshot_folders(args.roots):
        step, seen = images_seen(folder)
        label = args.label or (folder.parent.parent.name if folder.parent.name == "snapshots" else folder.parent.name)
        cli = ["--weights", str(folder), "--n", str(args.n), "--batch", str(args.batch), "--guidance", str(args.guidance),
               "--steps", str(args.steps), "--inception", args.inception, "--out", str(folder / "eval.json"), "--pr-n", "5000"]
        cli += (["--device", args.device] if args.device else []) + (["--evalnet", args.evalnet] if args.evalnet else [])
        e = evaluate(cli, context=ctx)
        point = {"label": label, "folder": str(folder), "step": step, "images_seen": seen, "n": e["n"], "fid": e["fid"],
                 "kid": e.get("kid"), "method": e["method"], "sampler_steps": e["steps"], "guidance": e["guidance"],
                 "fd_evalnet": e["fd"], "git_commit": e["git_commit"]}
        data["points"] = [p for p in data["points"] if not (p["label"] == label and p["step"] == step)] + [point]
        write_json(out, data)
        print(f"{label} step {step} ({seen / 1e6:.2f}M images): FID-{args.n // 1000}k {e['fid']:.2f}")
    if args.plot:
        plot(data["points"], Path(args.plot), f"{out.stem}: FID-{args.n // 1000}k vs images seen")
    return data


if __name__ == "__main__":
    main()
