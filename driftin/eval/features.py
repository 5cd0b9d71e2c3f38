"""Features of the evaluation net for real and generated images, and the cached reference statistics."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from driftin.data import cache_dir, load_cifar10_tar, to_model_range

DEFAULT_EVALNET = "evalnet-cifar10"
CACHE_VERSION = 1  # bump when what is stored (or how it is computed) changes


def default_device(device=None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_evalnet(path_or_name: str | Path = DEFAULT_EVALNET, device=None):
    from driftin.classifier import load_classifier

    return load_classifier(path_or_name, device=default_device(device))


def state_hash(model: torch.nn.Module) -> str:
    """Hash of the weights themselves (names, shapes, bytes): any retrained net gets a new cache key."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def tensor_hash(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


class EvalFeatures:
    """Callable: uint8 [N,3,32,32] or float [-1,1] images -> (penultimate features [N, D], softmax [N, K]) as float32 numpy."""

    def __init__(self, net: torch.nn.Module, batch: int = 1000):
        self.net, self.batch = net, batch
        self.device = next(net.parameters()).device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        feats, probs = [], []
        for i in range(0, len(images), self.batch):
            x = images[i : i + self.batch].to(self.device)
            x = to_model_range(x) if x.dtype == torch.uint8 else x.float()
            f = self.net.penultimate(x)  # no autocast: metrics must not move with bf16 settings
            feats.append(f.cpu())
            probs.append(self.net.head(f).softmax(1).cpu())
        return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def reference_stats(net: torch.nn.Module, split: str = "train", images: torch.Tensor | None = None, name: str = "cifar10-jpeg",
                    pr_n: int = 10_000, cache: bool = True, progress: bool = True, images_hash: str | None = None) -> dict:
    """mu, sigma (float64), a fixed random subset `pr_feats` [pr_n, D] for precision/recall, and the IS analogue
    of the reference set. Cached in cache_dir() under a key of (evalnet weights, data name, split, data hash);
    the key is also stored inside the file and checked, so a stale or foreign file is recomputed, never reused.
    images_hash: tensor_hash(images) when the caller already has it (see reference_images); it keys the cache, so it
    must be that hash of these very images."""
    images, digest = reference_images(split, images, images_hash)
    key = f"v{CACHE_VERSION}-{state_hash(net)}-{name}-{split}-{len(images)}-{digest}-pr{pr_n}"

    def compute() -> dict:
        from driftin.eval.fd import feature_stats
        from driftin.eval.metrics import is_analogue

        if progress:
            print(f"computing evalnet reference statistics for {name}/{split} ({len(images)} images)")
        feats, probs = EvalFeatures(net)(images)
        mu, sigma = feature_stats(feats)
        return {"mu": mu, "sigma": sigma, "pr_feats": fixed_subset(feats, pr_n), "is_analogue": is_analogue(probs),
                "n": len(images)}

    return cached_reference("evalref", key, compute, cache, scalars=("is_analogue", "n"))


def reference_images(split: str, images: torch.Tensor | None = None, images_hash: str | None = None) -> tuple[torch.Tensor, str]:
    """The reference images (the CIFAR-10 `split` unless given) and their content hash, which keys the caches.
    Loading and hashing 50k images is most of a cache hit's cost, so an evaluation that needs several reference
    statistics of one split (evalnet and Inception) does it once here and passes both down."""
    if images is None:
        images = load_cifar10_tar(split)[0]
    return images, images_hash or tensor_hash(images)


def fixed_subset(feats: np.ndarray, n: int) -> np.ndarray:
    """n rows in a fixed random order (seed 0): the same subset whether computed now or read from a cache."""
    return feats[np.random.default_rng(0).permutation(len(feats))[:n]]


def cached_reference(prefix: str, key: str, compute: Callable[[], dict], cache: bool = True,
                     scalars: tuple[str, ...] = ("n",)) -> dict:
    """The stored arrays of `<prefix>-<key>.npz` when present and valid, else compute()'s, saved there atomically
    (cache=False: always computed, nothing read or written). The one cache path of every reference statistic, so
    their files cannot drift apart. `scalars` come back from the file as 0-d arrays: returned as Python numbers,
    as compute() gives them."""
    hit = load_cached(prefix, key) if cache else None
    if hit is not None:
        return {**hit, **{k: hit[k].item() for k in scalars}}
    ref = compute()
    return {**ref, **(save_cached(prefix, key, ref) if cache else {"key": key})}


def _cache_path(prefix: str, key: str) -> Path:
    return cache_dir() / f"{prefix}-{key}.npz"


def load_cached(prefix: str, key: str) -> dict | None:
    """The arrays stored under key, or None when absent or when the key stored inside differs (stale/foreign file)."""
    path = _cache_path(prefix, key)
    if not path.exists():
        return None
    with np.load(path) as z:
        if "key" not in z.files or str(z["key"]) != key:
            return None
        return {**{k: z[k] for k in z.files if k != "key"}, "key": key, "path": str(path)}


def save_cached(prefix: str, key: str, arrays: dict) -> dict:
    path = _cache_path(prefix, key)
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
    np.savez(tmp, key=np.array(key), **arrays)
    os.replace(tmp, path)  # atomic: a killed run never leaves a half-written cache
    return {"key": key, "path": str(path)}


def generated_batches(model, n: int, seed: int = 0, batch: int = 1000, method=None, steps: int = 50, guidance: float = 1.0,
                      classes: str = "none", num_classes: int = 10, device=None, fast=False,
                      spacing: str = "uniform", guidance_interval=None) -> Iterator[tuple[torch.Tensor, list | None]]:
    """Yield (uint8 images [b,3,32,32], class labels or None) for seeds range(seed, seed + n).

    classes="uniform": sample i gets label i % num_classes, a balanced set whatever n is. Output is
    uint8 because the reference is uint8: quantisation is part of what a real image is. fast: as generate()'s
    (False, True or a driftin.fast.FastOptions)."""
    from driftin.generate import generate

    for start in range(0, n, batch):
        idx = range(start, min(start + batch, n))
        labels = [i % num_classes for i in idx] if classes == "uniform" else None
        x = generate(model, seeds=[seed + i for i in idx], method=method, steps=steps, class_labels=labels,
                     guidance=guidance, output="uint8", device=device, fast=fast, spacing=spacing,
                     guidance_interval=guidance_interval)
        yield x, labels


def collect(batches, extractors: dict[str, Callable], total: int | None = None, progress: bool = True) -> dict:
    """Run every extractor on every batch and concatenate: {name: array or tuple of arrays}, plus 'labels'."""
    from tqdm import tqdm

    parts: dict[str, list] = {k: [] for k in extractors}
    labels: list = []
    bar = tqdm(total=total, desc="generate+features", unit="img", disable=not progress)
    for x, lab in batches:
        for k, fn in extractors.items():
            parts[k].append(fn(x))
        if lab is not None:
            labels.extend(lab)
        bar.update(len(x))
    bar.close()
    out = {}
    for k, chunks in parts.items():
        out[k] = tuple(np.concatenate(c) for c in zip(*chunks)) if isinstance(chunks[0], tuple) else np.concatenate(chunks)
    out["labels"] = np.asarray(labels) if labels else None
    return out
