"""Figures for the README, made from shipped weights or run outputs.

    python scripts/make_assets.py compare --out assets/drift_vs_ddim50.png     # same noise, same class
    python scripts/make_assets.py gif --out assets/drift_vs_ddim.gif           # drift done at once, DDIM step by step
    python scripts/make_assets.py pair A.png "title A" B.png "title B" --out assets/x.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from driftin import generate, load_pretrained  # noqa: E402
from driftin.data import CIFAR10_CLASSES  # noqa: E402
from driftin.demo import DDIM_GUIDANCE, DDIM_GUIDANCE_INTERVAL, guided_at  # noqa: E402


def titled(images: list[Image.Image], titles: list[str], gap: int = 12, bar: int = 22) -> Image.Image:
    w = sum(i.width for i in images) + gap * (len(images) - 1)
    h = max(i.height for i in images) + bar
    canvas = Image.new("RGB", (w, h), "white")
    draw, x = ImageDraw.Draw(canvas), 0
    for img, title in zip(images, titles):
        canvas.paste(img, (x, bar))
        draw.text((x + 4, 5), title, fill="black")
        x += img.width + gap
    return canvas


def grid(images: torch.Tensor, nrow: int, scale: int) -> Image.Image:
    from torchvision.utils import make_grid

    g = make_grid(images, nrow=nrow, padding=2, pad_value=1.0).mul(255).round().byte().permute(1, 2, 0).numpy()
    img = Image.fromarray(g)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def compare(a):
    drift, ddpm = load_pretrained(a.drift), load_pretrained(a.ddpm)
    labels = torch.arange(10).repeat_interleave(a.per_class)  # one row per class
    seeds = list(range(a.seed, a.seed + len(labels)))
    x_drift = generate(drift, seeds=seeds, method="drift", class_labels=labels, guidance=a.guidance)
    x_ddim = generate(ddpm, seeds=seeds, method="ddim", steps=a.steps, class_labels=labels, guidance=a.ddim_guidance,
                      guidance_interval=a.ddim_guidance_interval)
    titles = [f"drift, 1 step (guidance {a.guidance:g})",
              f"DDPM, DDIM {a.steps} steps (guidance {a.ddim_guidance:g}{guided_at(a.ddim_guidance_interval)})"]
    titled([grid(x_drift, a.per_class, a.scale), grid(x_ddim, a.per_class, a.scale)], titles).save(a.out)
    print(f"wrote {a.out} (rows: {', '.join(CIFAR10_CLASSES)}; same seeds per cell)")


def gif(a):
    """Same noise and classes: drift's one step is finished in the first frame; DDIM's x0 prediction
    sharpens over its steps. Uses the app's own grid/panel/GIF helpers, so it looks like a recording."""
    from driftin.live import make_grid, side_by_side, to_uint8, write_gif

    drift, ddpm = load_pretrained(a.drift), load_pretrained(a.ddpm)
    labels = torch.tensor(a.classes)
    seeds = list(range(a.seed, a.seed + len(labels)))
    left = make_grid(generate(drift, seeds=seeds, method="drift", class_labels=labels, output="uint8"), scale=a.scale)
    x0s = []
    generate(ddpm, seeds=seeds, method="ddim", steps=a.steps, class_labels=labels, guidance=a.ddim_guidance,
             guidance_interval=a.ddim_guidance_interval, callback=lambda i, x, x0: x0s.append(to_uint8(x0)))
    ddim_title = f"DDIM (guidance {a.ddim_guidance:g}{guided_at(a.ddim_guidance_interval)})"
    frames = [side_by_side(left, make_grid(x0, scale=a.scale), ("drift: 1 step (done)", f"{ddim_title}: step {i + 1}/{a.steps}"))
              for i, x0 in enumerate(x0s) if i % a.every == 0 or i == len(x0s) - 1]
    write_gif(frames, a.out, [0.1 * a.every] * (len(frames) - 1) + [2.0])
    print(f"wrote {a.out} ({len(frames)} frames, {Path(a.out).stat().st_size // 1024} kB)")


def pair(a):
    imgs = [Image.open(p).convert("RGB") for p in a.items[0::2]]
    titled(imgs, a.items[1::2]).save(a.out)
    print(f"wrote {a.out}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    models = argparse.ArgumentParser(add_help=False)  # the two generators, the first seed and DDIM guidance, shared by compare and gif
    models.add_argument("--drift", default="weights/drift-cifar10")
    models.add_argument("--ddpm", default="weights/ddpm-cifar10")
    models.add_argument("--seed", type=int, default=0)
    models.add_argument("--ddim-guidance", type=float, default=DDIM_GUIDANCE,
                        help="the DDPM's (default: the app's, its best DDIM-50 FID-50k in weights/ddpm-cifar10/eval.json)")
    models.add_argument("--ddim-guidance-interval", type=int, nargs=2, metavar=("LO", "HI"), default=DDIM_GUIDANCE_INTERVAL,
                        help="DDIM's guided timesteps (default: the app's; none = every step)")
    c = sub.add_parser("compare", parents=[models], help="drift 1 step vs DDIM from the same noise and class labels")
    c.add_argument("--steps", type=int, default=50)
    c.add_argument("--guidance", type=float, default=1.0, help="drift's (1: its best FID-50k)")
    c.add_argument("--per-class", type=int, default=8)
    c.add_argument("--scale", type=int, default=2)
    c.add_argument("--out", default="assets/drift_vs_ddim50.png")
    g = sub.add_parser("gif", parents=[models], help="animated: drift 1 step vs DDIM's steps from the same noise")
    g.add_argument("--steps", type=int, default=25)
    g.add_argument("--classes", type=int, nargs="+", default=[1, 3, 7, 8], help="one image per label (car, cat, horse, ship)")
    g.add_argument("--every", type=int, default=2, help="keep every k-th DDIM step as a frame (and the last)")
    g.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscale per image (GIF size grows ~scale^2)")
    g.add_argument("--out", default="assets/drift_vs_ddim.gif")
    q = sub.add_parser("pair", help="put PNGs side by side with titles")
    q.add_argument("items", nargs="+", help="PNG TITLE [PNG TITLE ...]")
    q.add_argument("--out", required=True)
    a = p.parse_args()
    {"compare": compare, "gif": gif, "pair": pair}[a.cmd](a)


if __name__ == "__main__":
    main()
