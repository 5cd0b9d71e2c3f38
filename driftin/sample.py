"""driftin sample --weights weights/drift-cifar10 --n 64 --out grid.png    (or python -m driftin.sample ...)

By default a conditional model draws a class per image (0..9 in turn, one row per class with --nrow 10),
where drift samples are recognisable; `--class unconditional` gives the unconditional ones.
"""
from __future__ import annotations

import argparse
import sys

import torch

from .data import CIFAR10_CLASSES, class_index
from .diffusion import DDIM_SPACINGS
from .fast import FastOptions
from .generate import generate, resolve_device
from .hub import load_pretrained

UNCONDITIONAL = ("unconditional", "none")


def class_labels(cls: str | None, n: int, num_classes: int):
    """Labels for --class: 'all' (default for a conditional model) cycles 0..9; a name or index; 'unconditional'."""
    if cls is None:
        cls = "all" if num_classes else "unconditional"
    cls = cls.strip().lower()
    if cls in UNCONDITIONAL:
        return None
    if not num_classes:
        raise ValueError(f"--class {cls}: this model is unconditional; use --class unconditional")
    if cls == "all":
        return torch.arange(n) % num_classes
    if (index := class_index(cls, num_classes)) is not None:
        return index
    raise ValueError(f"--class {cls!r}: use all, unconditional, a class name ({', '.join(CIFAR10_CLASSES)}) "
                     f"or an index 0..{num_classes - 1}")


def main(argv=None):
    p = argparse.ArgumentParser(description="Sample a PNG grid from driftin weights (folder, name under ./weights, "
                                            "or Hub repo id).")
    p.add_argument("--weights", required=True, help="folder, a name like drift-cifar10 ($DRIFTIN_WEIGHTS, ./weights), "
                                                    "or a Hub repo id")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=["drift", "ddim"], default=None, help="default: the model's objective")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--eta", type=float, default=0.0)
    p.add_argument("--spacing", choices=DDIM_SPACINGS, default="uniform", help="DDIM's sub-sequence of the 1,000 steps")
    p.add_argument("--class", dest="cls", default=None,
                   help="'all' (default for a conditional model: classes 0..9 in turn), a class name or index, "
                        "or 'unconditional'")
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--guidance-interval", type=int, nargs=2, metavar=("LO", "HI"),
                   help="DDIM guides only the steps whose timestep t (0-999) has LO <= t <= HI (default: every step)")
    p.add_argument("--nrow", type=int, default=8)
    p.add_argument("--fast", action="store_true", help="compiled / CUDA-graph path on GPU")
    p.add_argument("--device", default="auto", help="auto (CUDA, else Apple MPS, else CPU) | cpu | cuda[:N] | mps")
    p.add_argument("--out", default="samples.png")
    a = p.parse_args(argv)
    if a.n < 1:
        p.error("--n must be at least 1")
    from torchvision.utils import save_image

    model = load_pretrained(a.weights, device=resolve_device(a.device))
    labels = class_labels(a.cls, a.n, model.config.num_classes)
    imgs = generate(model, a.n, a.seed, method=a.method, steps=a.steps, eta=a.eta, class_labels=labels,
                    guidance=a.guidance, fast=FastOptions.from_env() if a.fast else False, spacing=a.spacing,
                    guidance_interval=a.guidance_interval)
    save_image(imgs, a.out, nrow=a.nrow)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    from .cli import run

    sys.exit(run("python -m driftin.sample", main, sys.argv[1:]))
