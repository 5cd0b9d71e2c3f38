"""Training the classifiers: supervised CIFAR-10 training (SGD, crop+flip, one-cycle schedule) and MAE
pretraining of the GroupNorm encoders. Results are saved through storage.save_classifier."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import load_cifar10_tar, to_model_range
from ..hub import write_config
from .card import write_card_from_info
from .nets import ARCHS, _gn, build_classifier
from .storage import load_classifier, save_classifier

# Per-arch training defaults; the seeds differ so the two nets are independent draws.
DEFAULTS = {
    "encoder": dict(epochs=40, batch=512, lr=0.2, seed=0, label_smoothing=0.0),
    "evalnet": dict(epochs=30, batch=512, lr=0.2, seed=1, label_smoothing=0.1),
    "resnet": dict(epochs=200, batch=512, lr=0.2, seed=2, label_smoothing=0.1),
}


class MAEDecoder(nn.Module):
    """Light U-Net decoder (the paper's: bilinear upsampling + concatenated skips): the encoder's four
    stage maps, coarse to fine, -> the normalised image [B, 3, 32, 32]. Pretraining only; not saved."""

    def __init__(self, widths, dim: int = 64):
        super().__init__()
        self.lat = nn.ModuleList(nn.Conv2d(w, dim, 1) for w in widths)
        self.fuse = nn.ModuleList(nn.Sequential(nn.Conv2d(2 * dim, dim, 3, 1, 1), _gn(dim), nn.ReLU())
                                  for _ in widths[:-1])
        self.out = nn.Conv2d(dim, 3, 1)

    def forward(self, maps):
        h = self.lat[-1](maps[-1])
        for i in range(len(maps) - 2, -1, -1):
            up = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = self.fuse[i](torch.cat([up, self.lat[i](maps[i])], 1))
        return self.out(h)


def mae_mask(n: int, ratio: float = 0.5, patch: int = 2, size: int = 32, generator=None, device=None) -> torch.Tensor:
    """[n, 1, size, size] with 1 on exactly round(ratio * cells) of the patch x patch cells of each image."""
    cells = (size // patch) ** 2
    k = round(ratio * cells)
    order = torch.rand(n, cells, generator=generator, device=device).argsort(1)
    m = (order.argsort(1) < k).float().view(n, 1, size // patch, size // patch)
    return F.interpolate(m, scale_factor=patch, mode="nearest")


def mae_loss(enc: nn.Module, dec: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the reconstructed normalised image over the masked pixels only."""
    pred = dec(enc.features(x, mask)).float()
    err = (pred - enc.norm(x)).square() * mask
    return err.sum() / (mask.sum() * x.shape[1]).clamp_min(1)


def pretrain_mae(arch: str = "resnet", out: str | Path | None = None, *, epochs: int = 200, batch: int = 512,
                 lr: float = 1.5e-3, weight_decay: float = 0.05, mask_ratio: float = 0.5, seed: int = 3, device=None,
                 arch_kwargs: dict | None = None, data=None, compile: bool = False, command: str | None = None,
                 progress: bool = True):
    """MAE pretraining of an encoder (the paper's recipe, scaled down): 50% of the 2x2 patches of the
    normalised input zeroed, a U-Net decoder reconstructs, l2 on the masked region; AdamW, warmup+cosine,
    crop+flip. Saves the encoder (its classification head untouched) for `train --init` fine-tuning."""
    from tqdm import tqdm

    if arch not in ("encoder", "resnet"):
        raise ValueError(f"MAE pretraining is for the GroupNorm encoders ('encoder', 'resnet'), not {arch!r}")
    if (arch_kwargs or {}).get("norm", "group") != "group":
        raise ValueError(f"MAE pretraining needs norm 'group', not norm {arch_kwargs['norm']!r}: BatchNorm would learn its "
                         "running statistics from masked images; train a BatchNorm encoder supervised (train --norm batch)")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    train_x = (data or load_cifar10_tar("train"))[0]
    torch.manual_seed(seed)
    enc = build_classifier(arch, **(arch_kwargs or {})).to(device)
    dec = MAEDecoder(enc.config["widths"]).to(device)
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
                             {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    batch = min(batch, len(train_x))
    steps_per_epoch = len(train_x) // batch
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, total))
    step_loss = torch.compile(mae_loss) if compile else mae_loss
    padded = F.pad(train_x.to(device), (4, 4, 4, 4))
    gen = torch.Generator(device=device).manual_seed(seed)
    t0, loss = time.time(), torch.zeros(())
    bar = tqdm(total=total, desc=f"MAE {arch}", disable=not progress, mininterval=1.0)
    for epoch in range(epochs):
        perm = torch.randperm(len(train_x), device=device, generator=gen)
        for i in range(steps_per_epoch):
            x = to_model_range(augment(padded[perm[i * batch:(i + 1) * batch]], gen))
            mask = mae_mask(len(x), mask_ratio, generator=gen, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = step_loss(enc, dec, x, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
    bar.close()
    info = dict(arch=arch, pretrain="mae", mae_epochs=epochs, batch=batch, lr=lr, weight_decay=weight_decay,
                mask_ratio=mask_ratio, seed=seed, final_mae_loss=round(float(loss.detach()), 5),
                train_seconds=round(time.time() - t0, 1), device=torch.cuda.get_device_name(device) if cuda else "cpu",
                torch=torch.__version__, dataset="cifar10 (JPEG copy), train split, images only", train_command=command)
    enc = enc.float().eval()
    if out is not None:
        save_classifier(enc, out, info)
    return enc, info


def augment(padded: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 32x32 crop of 4-padded uint8 images [B, 3, 40, 40] plus random horizontal flip, as one gather."""
    B, dev = padded.shape[0], padded.device
    dy = torch.randint(0, 9, (B, 1), device=dev, generator=generator)
    dx = torch.randint(0, 9, (B, 1), device=dev, generator=generator)
    flip = torch.rand(B, 1, device=dev, generator=generator) < 0.5
    ar = torch.arange(32, device=dev)
    rows = dy + ar  # [B, 32]
    cols = torch.where(flip, dx + 31 - ar, dx + ar)  # flipping = reading the crop's columns backwards
    b = torch.arange(B, device=dev)[:, None, None, None]
    c = torch.arange(3, device=dev)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]  # [B, 3, 32, 32]


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): each image of x [B, C, H, W] (model range) gets one size x size square,
    centred anywhere in the image and clipped at its borders, set to 0 (mid-grey)."""
    B, _, H, W = x.shape
    cy = torch.randint(0, H, (B, 1, 1), device=x.device, generator=generator)
    cx = torch.randint(0, W, (B, 1, 1), device=x.device, generator=generator)
    r, c = torch.arange(H, device=x.device)[None, :, None], torch.arange(W, device=x.device)[None, None, :]
    inside = (r >= cy - size // 2) & (r < cy - size // 2 + size) & (c >= cx - size // 2) & (c < cx - size // 2 + size)
    return x.masked_fill(inside[:, None], 0.0)


@torch.no_grad()
def accuracy(model: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images_u8), batch):
        x = to_model_range(images_u8[i : i + batch].to(dev))
        correct += (model(x).argmax(1).cpu() == labels[i : i + batch]).sum().item()
    model.train(was_training)
    return correct / len(images_u8)


def _schedule(step: int, total: int, warmup: float = 0.15) -> float:
    """Linear warmup then cosine to zero (a one-cycle shape)."""
    f = step / max(total, 1)
    return f / warmup if f < warmup else 0.5 * (1 + math.cos(math.pi * (f - warmup) / (1 - warmup)))


def train_classifier(arch: str, out: str | Path | None = None, *, epochs=None, batch=None, lr=None, seed=None,
                     label_smoothing=None, weight_decay: float = 5e-4, device=None, arch_kwargs: dict | None = None,
                     data=None, compile: bool = False, command: str | None = None, progress: bool = True,
                     init: str | Path | None = None, cutout_size: int = 0):
    """Train one classifier on CIFAR-10 (or `data` = (train_u8, train_y, test_u8, test_y)); save to `out` if given.
    init: a saved classifier of the same architecture to start from (e.g. an MAE-pretrained encoder).
    cutout_size: Cutout after crop+flip (16 is the usual CIFAR-10 size; 0 = off, and no extra random draws).

    Returns (model, info); the reported test accuracy is measured on the weights as saved (fp16 round trip)."""
    from tqdm import tqdm

    if arch not in DEFAULTS:
        raise ValueError(f"unknown classifier arch {arch!r}; choose one of {sorted(ARCHS)}")
    d = DEFAULTS[arch]
    epochs, batch, lr = epochs or d["epochs"], batch or d["batch"], lr or d["lr"]
    seed = d["seed"] if seed is None else seed
    ls = d["label_smoothing"] if label_smoothing is None else label_smoothing
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if data is None:
        data = (*load_cifar10_tar("train"), *load_cifar10_tar("test"))
    train_x, train_y, test_x, test_y = data

    torch.manual_seed(seed)
    model = build_classifier(arch, **(arch_kwargs or {})).to(device)
    if init:
        src = load_classifier(init)
        if src.config != model.config:
            raise ValueError(f"init {init} is a {src.config}, not the {model.config} being trained")
        model.load_state_dict(src.state_dict())
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]  # no weight decay on norms and biases
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=lr, momentum=0.9, nesterov=True)
    batch = min(batch, len(train_x))
    steps_per_epoch = len(train_x) // batch
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, total))
    fwd = torch.compile(model) if compile else model

    padded = F.pad(train_x.to(device), (4, 4, 4, 4))  # the whole train set lives on the device as uint8
    ys = train_y.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    t0 = time.time()
    bar = tqdm(total=total, desc=f"train {arch}", disable=not progress, mininterval=1.0)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(train_x), device=device, generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * batch : (i + 1) * batch]
            x = to_model_range(augment(padded[idx], gen))
            if cutout_size:
                x = cutout(x, cutout_size, gen)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = fwd(x)
            loss = F.cross_entropy(logits.float(), ys[idx], label_smoothing=ls)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            if i == steps_per_epoch - 1:  # one host sync per epoch
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    bar.close()
    train_seconds = time.time() - t0

    info = dict(arch=arch, **{k: v for k, v in model.config.items() if k != "arch"}, epochs=epochs, batch=batch, lr=lr,
                seed=seed, label_smoothing=ls, weight_decay=weight_decay, optimizer="SGD nesterov 0.9, warmup+cosine",
                train_seconds=round(train_seconds, 1), device=torch.cuda.get_device_name(device) if cuda else "cpu",
                torch=torch.__version__, dataset="cifar10 (JPEG copy), train split", train_command=command,
                **({"init": str(init)} if init else {}), **({"cutout_size": cutout_size} if cutout_size else {}))
    model = model.float().eval()
    if out is not None:
        save_classifier(model, out, info)
        model = load_classifier(out, device=device)  # report accuracy of the weights as shipped
        info = dict(model.meta)  # config.json as load_classifier read it
    acc = accuracy(model, test_x, test_y)
    info["test_acc"] = round(acc, 4)
    if out is not None:
        write_config(out, info)
        write_card_from_info(out, info)
    if progress:
        print(f"{arch}: test accuracy {acc:.4f} after {epochs} epochs in {train_seconds:.0f}s ({info['device']})")
    return model, info
