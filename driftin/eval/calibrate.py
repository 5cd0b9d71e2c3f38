"""What do the FID / KID (and evalnet FD) numbers mean? Floor and sanity table against CIFAR-10 train statistics.

    python -m driftin.eval.calibrate --out benchmarks/fd_calibration.json [--inception auto|PATH|none]

Rows: the real test split (the floor a perfect generator reaches with 10k samples; Inception FID of the
test split vs the train split is the standard calibration, ~3.15 on the PNG original), a clean 10k subset
of train (the small-sample bias alone), and that subset degraded by gaussian blur and gaussian noise:
FD should grow monotonically with the damage. The train tarball is sorted by class, so the subset is a
seeded random 10k, not the first 10k (which would be two classes only).
"""
from __future__ import annotations

import argparse
import math
import time

import torch
from torchvision.transforms.functional import gaussian_blur

from driftin.data import load_cifar10_tar
from driftin.eval import git_commit, markdown_table, write_json
from driftin.eval.features import (DEFAULT_EVALNET, EvalFeatures, default_device, load_evalnet, reference_images, reference_stats,
                                   state_hash)
from driftin.eval.metrics import compute_metrics

BLUR_SIGMAS = (0.5, 1.0, 2.0)
NOISE_STDS = (0.05, 0.1, 0.2)  # in [0, 1] pixel units (0.1 ~ 25/255)


def blur(u8: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(u8.float(), [k, k], [sigma, sigma]).round().clamp(0, 255).to(torch.uint8)


def add_noise(u8: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noisy = u8.float() + 255 * std * torch.randn(u8.shape, generator=g)
    return noisy.round().clamp(0, 255).to(torch.uint8)  # requantised: the same pipeline as generated samples


def variants(train_u8: torch.Tensor, test_u8: torch.Tensor, n: int = 10_000, seed: int = 0):
    """(name, uint8 images) for every calibration row."""
    sub = train_u8[torch.randperm(len(train_u8), generator=torch.Generator().manual_seed(seed))[:n]]
    yield "test split (floor)", test_u8[:n]
    yield "train subset (clean)", sub
    for s in BLUR_SIGMAS:
        yield f"train subset, blur sigma={s:g}", blur(sub, s)
    for s in NOISE_STDS:
        yield f"train subset, noise std={s:g}", add_noise(sub, s, seed)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m driftin.eval.calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/fd_calibration.json")
    ap.add_argument("--evalnet", default=DEFAULT_EVALNET)
    ap.add_argument("--n", type=int, default=10_000, help="images per row")
    ap.add_argument("--pr-n", type=int, default=10_000)
    ap.add_argument("--inception", "--inception-weights", dest="inception", default="auto",
                    help="FID network (as in python -m driftin.eval); none: evalnet rows only")
    ap.add_argument("--kid-subsets", type=int, default=100)
    ap.add_argument("--device")
    args = ap.parse_args(argv)

    device = default_device(args.device)
    net = load_evalnet(args.evalnet, device)
    train_u8, train_hash = reference_images("train")  # loaded and hashed once for both reference statistics
    ref = reference_stats(net, "train", images=train_u8, images_hash=train_hash)
    inception = inc_ref = None
    if args.inception != "none":
        from driftin.eval.inception import InceptionFeatures, inception_metrics, inception_reference_stats

        inception = InceptionFeatures(args.inception, device)
        inc_ref = inception_reference_stats(inception, "train", images=train_u8, images_hash=train_hash)
    test_u8, test_y = load_cifar10_tar("test")
    extract = EvalFeatures(net)
    rows = []
    for name, imgs in variants(train_u8, test_u8, args.n):
        feats, probs = extract(imgs)
        labels = test_y[: len(imgs)].numpy() if name.startswith("test") else None
        row = {"data": name, "n": len(imgs)}
        if inception:
            row.update(inception_metrics(inception(imgs), inc_ref, args.kid_subsets, device))
        row.update(compute_metrics(feats, probs, ref, labels=labels, pr_n=args.pr_n, device=device))
        rows.append(row)
        print(f"{name}: " + (f"FID {row['fid']:.4g}, " if inception else "") + f"evalnet FD {row['fd']:.4g}")

    result = {"rows": rows, "git_commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "evalnet": {"path": str(args.evalnet), "hash": state_hash(net), "test_acc": net.meta.get("test_acc")},
              "reference": {"split": "train", "n": ref["n"], "key": ref["key"], "is_analogue": ref["is_analogue"]},
              "inception": inception.name if inception else None,
              "notes": "fid/kid: standard Inception FID/KID vs the CIFAR-10 train split (JPEG copy, 50k). fd/precision/"
                       "recall/is_analogue/class_acc: evalnet (CIFAR-10 classifier) features, diagnostics only. FD and FID "
                       "are biased upwards at small n, so compare rows only at equal n (generated evals use 50k); KID is not."}
    write_json(args.out, result)
    cols = ["data", "n"] + (["fid", "kid"] if inception else []) + ["fd", "precision", "recall", "is_analogue", "class_acc"]
    print(markdown_table(rows, cols))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
