"""training_curve.png: loss and throughput against the step, from train_log.jsonl."""
from __future__ import annotations

from pathlib import Path

from .sources import _num


def plot_training_curve(records: list[dict], out: str | Path, title: str = "") -> Path | None:
    """training_curve.png: loss vs step (left) and throughput img/s vs step (right). None without records."""
    pts = [(int(r["step"]), _num(r.get("loss"))) for r in records if _num(r.get("loss")) is not None]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    speed = [(int(r["step"]), _num(r.get("img_per_s"))) for r in records if _num(r.get("img_per_s"))]
    fig, axes = plt.subplots(1, 2 if speed else 1, figsize=(11 if speed else 6, 3.6), squeeze=False)
    ax = axes[0][0]
    steps, loss = zip(*pts)
    ax.plot(steps, loss, lw=0.8, alpha=0.45 if len(pts) > 50 else 1.0, color="tab:blue", label="loss")
    if len(pts) > 50:
        k = max(2, len(pts) // 25)
        smooth = [sum(loss[max(0, i - k + 1): i + 1]) / len(loss[max(0, i - k + 1): i + 1]) for i in range(len(loss))]
        ax.plot(steps, smooth, lw=1.6, color="tab:blue", label=f"moving mean ({k} logs)")
        ax.legend(fontsize=8)
    if min(loss) > 0 and max(loss) / min(loss) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("loss" + (f" — {title}" if title else ""), fontsize=10)
    ax.grid(alpha=0.3)
    if speed:
        ax = axes[0][1]
        s, v = zip(*speed)
        ax.plot(s, v, lw=1.0, color="tab:green")
        ax.set_xlabel("step")
        ax.set_ylabel("images / s (global)")
        ax.set_title("training throughput", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return out
