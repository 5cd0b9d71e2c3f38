"""Datasets as uint8 tensors [N, 3, H, W] plus int64 labels, decoded once and cached.

Sources: the CIFAR-10 JPEG tarballs (read directly, no extraction), any ImageFolder-style
directory, or torchvision's CIFAR10 download when online.
"""
from __future__ import annotations

import io
import os
import tarfile
import weakref
from pathlib import Path

import numpy as np
import torch

from . import paths

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
REPO = paths.project_root()  # the checkout, or the CWD for an installed package
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def class_index(name: str, num_classes: int = len(CIFAR10_CLASSES)) -> int | None:
    """A CIFAR-10 class name (any case) or an index below num_classes -> the index; anything else -> None."""
    s = str(name).strip().lower()
    if s in CIFAR10_CLASSES[:num_classes]:
        return CIFAR10_CLASSES.index(s)
    return int(s) if s.isdigit() and int(s) < num_classes else None


def cache_dir() -> Path:
    return paths.cache_dir()


def default_cifar_root() -> Path | None:
    """First folder holding the CIFAR-10 tarballs: $DRIFTIN_DATA, data/cifar10 (a carried copy) or
    ../shared/data/cifar10, relative to the CWD and to the checkout (driftin.paths.data_candidates)."""
    return next((c for c in paths.data_candidates() if (c / "train.tar.gz").exists()), None)


def _decode(blobs: list[bytes], size: int | None = None) -> torch.Tensor:
    from PIL import Image

    out = []
    for b in blobs:
        im = Image.open(io.BytesIO(b)).convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.BICUBIC)
        out.append(np.asarray(im))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def _cached(key: str, build) -> tuple[torch.Tensor, torch.Tensor]:
    path = cache_dir() / f"{key}.npz"
    if path.exists():
        z = np.load(path)
        return torch.from_numpy(z["images"]), torch.from_numpy(z["labels"])
    images, labels = build()
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=images.numpy(), labels=labels.numpy())
    os.replace(tmp, path)  # atomic: a killed run never leaves a half-written cache
    return images, labels


def load_cifar10_tar(split: str = "train", root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 from `<root>/<split>.tar.gz` (entries `<split>/<class>/NNNN.jpg`)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root) if root else default_cifar_root()
    if root is None or not (root / f"{split}.tar.gz").exists():
        raise FileNotFoundError(
            f"CIFAR-10 tarball {split}.tar.gz not found (looked in {root or 'DRIFTIN_DATA, ./data/cifar10, ../shared/data/cifar10'}); "
            "set DRIFTIN_DATA or use load_dataset('cifar10', download=True)"
        )

    def build():
        blobs, labels = [], []
        with tarfile.open(root / f"{split}.tar.gz") as tar:
            for m in sorted((m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(IMAGE_EXTS)), key=lambda m: m.name):
                cls = Path(m.name).parent.name
                if cls not in CIFAR10_CLASSES:
                    raise ValueError(f"unexpected class folder {cls!r} in {m.name}")
                blobs.append(tar.extractfile(m).read())
                labels.append(CIFAR10_CLASSES.index(cls))
        return _decode(blobs), torch.tensor(labels, dtype=torch.int64)

    return _cached(f"cifar10-jpeg-{split}", build)


def load_image_folder(path: str | Path, size: int = 32) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """ImageFolder layout `<path>/<class>/*.png`; images resized to size x size. Returns images, labels, class names.
    A flat folder of images gets one class, named after the folder."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"image folder {path} does not exist")
    classes = sorted(d.name for d in path.iterdir() if d.is_dir())
    groups = [(c, sorted((path / c).iterdir())) for c in classes] or [(path.name, sorted(path.iterdir()))]
    blobs, labels = [], []
    for i, (_, files) in enumerate(groups):
        for f in files:
            if f.suffix.lower() in IMAGE_EXTS:
                blobs.append(f.read_bytes())
                labels.append(i)
    if not blobs:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTS)}) found under {path}")
    return _decode(blobs, size), torch.tensor(labels, dtype=torch.int64), [c for c, _ in groups]


def load_torchvision_cifar10(split: str = "train", root: str | Path | None = None, download: bool = True):
    """Original CIFAR-10 through torchvision (needs a network the first time)."""
    from torchvision.datasets import CIFAR10

    ds = CIFAR10(root=str(root or cache_dir() / "torchvision"), train=split == "train", download=download)
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets, dtype=torch.int64)


def load_dataset(name: str = "cifar10", split: str = "train", download: bool = False):
    """'cifar10' (local JPEG tarballs, else torchvision when download=True) or a path to an image folder."""
    if name == "cifar10":
        if default_cifar_root() is not None or not download:
            return load_cifar10_tar(split)
        return load_torchvision_cifar10(split, download=True)
    images, labels, _ = load_image_folder(name)
    return images, labels


def to_model_range(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range every model in driftin works in."""
    return images_u8.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


_pools_cache: dict = {}  # one entry: the labels tensor (held weakly) the class pools were built for


# the kinds of draw of one training step, each its own stream (stream_seed); one table so no two share an id
STREAMS = {"batch": 1, "uncond_from_batch": 2, "class_queue": 3, "uncond_queue": 4}


def stream_seed(base: int, stream: int) -> int:
    """Seed of one kind of draw (`stream` >= 1) of a step whose own generator is seeded with `base`, by splitmix64.

    Two generators seeded alike produce the same bits: torch.randint(50_000) and torch.randint(1_000) from one
    seed agree modulo 1,000, so drawing the batch's image indices and its diffusion timesteps from equal seeds
    would train every image at one fixed timestep. Each kind of draw therefore gets a seed of its own; the mix is
    a pure function of (base, stream), the same on every rank, and its low 32 bits (all a CPU generator keeps)
    differ between streams too."""
    m = 2**64
    z = (base + stream * 0x9E3779B97F4A7C15) % m
    z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9 % m
    z = (z ^ z >> 27) * 0x94D049BB133111EB % m
    return z ^ z >> 31


def class_pools(labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, ...]:
    """Sorted indices of each class in labels (on the CPU), built once per labels tensor: the trainer
    asks every step. Rebuilt when labels is another tensor or was changed in place (its _version)."""
    key = (None if labels.is_inference() else labels._version, num_classes)  # inference tensors have no _version
    hit = _pools_cache.get("labels")
    if hit is not None and hit[0]() is labels and hit[1] == key:
        return hit[2]
    cpu = labels.cpu()
    pools = tuple(torch.nonzero(cpu == c).flatten() for c in range(num_classes))
    _pools_cache["labels"] = (weakref.ref(labels), key, pools)
    return pools


def global_batch(images: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator,
                 flip: bool = True, num_classes: int = 0):
    """Draw a batch (with replacement) and random horizontal flips from `generator`.

    num_classes > 0: class-balanced and sorted by class (batch_size/num_classes of each), the
    grouping the drift field needs. Every rank draws the same global batch from the same seeded
    generator and keeps its slice, so a run is a function of (seed, step) alone."""
    if num_classes:
        if batch_size % num_classes:
            raise ValueError(f"batch size {batch_size} is not a multiple of {num_classes} classes")
        k = batch_size // num_classes
        pools = class_pools(labels, num_classes)
        idx = torch.cat([p[torch.randint(len(p), (k,), generator=generator)] for p in pools])
    else:
        idx = torch.randint(len(images), (batch_size,), generator=generator)
    x, y = images[idx.to(images.device)], labels[idx.to(labels.device)]
    if flip:
        mask = torch.rand(batch_size, generator=generator) < 0.5
        x = torch.where(mask.to(x.device)[:, None, None, None], x.flip(-1), x)
    return x, y


class DeviceData:
    """The uint8 dataset, its labels and its class pools resident on one device; batches are drawn there.

    The trainer's data path: indices and flips come from a generator on the same device, so a step
    needs no host work and no host-device copy. Draws are made at global-batch size from a generator
    seeded by (seed, step) and every rank keeps its slice, so the global batch is the same for any
    world size. (Another device type draws other numbers: the order is a function of (seed, step, device type).)"""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device, num_classes: int = 0):
        self.device = torch.device(device)
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        self.num_classes = num_classes
        if num_classes:
            pools = class_pools(labels, num_classes)
            sizes = [len(p) for p in pools]
            if min(sizes) == 0:
                raise ValueError(f"class {sizes.index(0)} has no images; class-balanced batches need all {num_classes} classes")
            # one padded [classes, largest pool] table, so a draw is one gather instead of a loop over classes
            table = torch.zeros(num_classes, max(sizes), dtype=torch.int64)
            for c, p in enumerate(pools):
                table[c, :len(p)] = p
            self.pools, self.pool_sizes = table.to(self.device), torch.tensor(sizes, device=self.device)

    def indices(self, batch_size: int, generator: torch.Generator, flip: bool = True):
        """Global-batch image indices and flip mask, on the generator's device; class-balanced and sorted by class
        when num_classes > 0."""
        dev = generator.device
        if self.num_classes:
            if batch_size % self.num_classes:
                raise ValueError(f"batch size {batch_size} is not a multiple of {self.num_classes} classes")
            k = batch_size // self.num_classes
            u = torch.rand(self.num_classes, k, generator=generator, device=dev, dtype=torch.float64)
            pos = (u * self.pool_sizes[:, None]).long().clamp_(max=self.pool_sizes[:, None] - 1)
            idx = self.pools.gather(1, pos).flatten()
        else:
            idx = torch.randint(len(self.images), (batch_size,), generator=generator, device=dev)
        mask = torch.rand(batch_size, generator=generator, device=dev) < 0.5 if flip else None
        return idx, mask

    def gather(self, idx: torch.Tensor, mask: torch.Tensor | None):
        """uint8 images (flipped where mask) and labels of the given indices."""
        x, y = self.images[idx], self.labels[idx]
        if mask is not None:
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x, y
