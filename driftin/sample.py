"""python -m driftin.sample --weights weights/drift-cifar10 --n 64 --out grid.png"""
from __future__ import annotations

import argparse

import torch

from .data import CIFAR10_CLASSES
from .generate import generate
from .hub import load_pretrained


def main(argv=None):
    p = argparse.ArgumentParser(description="Sample a PNG grid from driftin weights (folder or Hub repo id).")
    p.add_argument("--weights", required=True)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=["drift", "ddim"], default=None, help="default: the model's objective")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--eta", type=float, default=0.0)
    p.add_argument("--class", dest="cls", default=None, help="class name or index; 'all' cycles 0..9; default unconditional")
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--nrow", type=int, default=8)
    p.add_argument("--fast", action="store_true", help="compiled / CUDA-graph path on GPU")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="samples.png")
    a = p.parse_args(argv)
    from torchvision.utils import save_image

    model = load_pretrained(a.weights, device=a.device)
    labels = None
    if a.cls == "all":
        labels = torch.arange(a.n) % 10
    elif a.cls is not None:
        labels = CIFAR10_CLASSES.index(a.cls) if a.cls in CIFAR10_CLASSES else int(a.cls)
    imgs = generate(model, a.n, a.seed, method=a.method, steps=a.steps, eta=a.eta, class_labels=labels,
                    guidance=a.guidance, fast=a.fast)
    save_image(imgs, a.out, nrow=a.nrow)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
