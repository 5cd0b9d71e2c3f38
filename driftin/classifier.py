"""Two small CIFAR-10 classifiers, one training loop, safetensors weights.

- "encoder": GroupNorm ResNet, the drift loss's feature encoder. GroupNorm (never BatchNorm) so a
  sample's features do not depend on which other samples share its batch. `features(x)` gives the
  four stage maps at 32/16/8/4.
- "resnet": the same GroupNorm ResNet at ResNet-18 size (widths 64-512, 2 blocks per stage, 11.2M
  parameters, 21 MiB in fp16): the stronger drift encoder recipe (training/encoder_resnet_cifar10.json).
- "evalnet": BatchNorm VGG-style net trained with label smoothing from another seed, used only to
  *evaluate* (FD, precision/recall, IS analogue). Independent of the encoder on purpose: a generator
  trained against the encoder's features must not be scored by the same features.

Both take float images in [-1, 1] and normalise inside.

    python -m driftin.classifier train --arch encoder --out weights/encoder-cifar10
    python -m driftin.classifier train --arch evalnet --out weights/evalnet-cifar10
    python -m driftin.classifier train --config training/encoder_resnet_cifar10.json
    python -m driftin.classifier pretrain-mae --config training/encoder_resnet_mae_cifar10.json   # then:
    python -m driftin.classifier train --config training/encoder_resnet_mae_ft_cifar10.json
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from driftin.data import REPO, load_cifar10_tar, to_model_range

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"
MAX_FILE_BYTES = 24 * 2**20  # one unsharded file per classifier; 24 MiB leaves room for the ResNet-18-size encoder
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


class Normalize(nn.Module):
    """[-1, 1] -> per-channel standardised with CIFAR-10 statistics (non-persistent: not in the weights)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return ((x + 1) * 0.5 - self.mean) / self.std


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, c), c)  # gcd: tiny test widths still divide evenly


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = _gn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = _gn(cout)
        nn.init.zeros_(self.norm2.weight)  # each block starts as identity: trains faster without BatchNorm
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _gn(cout))

    def forward(self, x):
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(h + (x if self.skip is None else self.skip(x)))


class Encoder(nn.Module):
    """GroupNorm ResNet; stage i has widths[i] channels at 32 / 2**i resolution."""

    arch = "encoder"

    def __init__(self, widths=(32, 64, 128, 256), blocks=(1, 1, 1, 1), num_classes: int = 10):
        super().__init__()
        self.config = {"arch": self.arch, "widths": list(widths), "blocks": list(blocks), "num_classes": num_classes}
        self.norm = Normalize()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), _gn(widths[0]), nn.ReLU())
        stages, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            stages.append(nn.Sequential(*[BasicBlock(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1) for j in range(n)]))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(widths[-1], num_classes)

    def features(self, x, mask=None) -> list[torch.Tensor]:
        """Stage outputs [B, widths[i], 32/2**i, 32/2**i] for x in [-1, 1]. mask [B, 1, 32, 32] (MAE
        pretraining): 1 where the normalised input is zeroed (set to the dataset mean colour)."""
        h = self.norm(x)
        if mask is not None:
            h = h * (1 - mask)
        h = self.stem(h)
        out = []
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def forward(self, x):
        return self.head(self.features(x)[-1].mean((2, 3)))


class ResNetEncoder(Encoder):
    """The Encoder at ResNet-18 size: a stronger feature space for the drift loss (the paper's encoder
    ablation: the encoder matters most). Same stage maps at 32/16/8/4, GroupNorm throughout."""

    arch = "resnet"

    def __init__(self, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), num_classes: int = 10):
        super().__init__(widths, blocks, num_classes)


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class EvalNet(nn.Module):
    """VGG-style BatchNorm net: stem, then per stage two 3x3 convs and a 2x2 max-pool (32 -> 16 -> 8 -> 4)."""

    def __init__(self, widths=(64, 128, 256), num_classes: int = 10):
        super().__init__()
        self.config = {"arch": "evalnet", "widths": list(widths), "num_classes": num_classes}
        self.norm = Normalize()
        layers, cin = _conv_bn(3, widths[0]), widths[0]
        for w in widths:
            layers += _conv_bn(cin, w) + _conv_bn(w, w) + [nn.MaxPool2d(2)]
            cin = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], num_classes)
        self.dim = widths[-1]

    def penultimate(self, x) -> torch.Tensor:
        """[B, widths[-1]] globally pooled features: the evaluation feature space."""
        return self.body(self.norm(x)).mean((2, 3))

    def forward(self, x):
        return self.head(self.penultimate(x))


ARCHS = {"encoder": Encoder, "resnet": ResNetEncoder, "evalnet": EvalNet}
# Per-arch training defaults; the seeds differ so the two nets are independent draws.
DEFAULTS = {
    "encoder": dict(epochs=40, batch=512, lr=0.2, seed=0, label_smoothing=0.0),
    "evalnet": dict(epochs=30, batch=512, lr=0.2, seed=1, label_smoothing=0.1),
    "resnet": dict(epochs=200, batch=512, lr=0.2, seed=2, label_smoothing=0.1),
}


def build_classifier(arch: str, **kwargs) -> nn.Module:
    if arch not in ARCHS:
        raise ValueError(f"unknown classifier arch {arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[arch](**kwargs)


# ---------------------------------------------------------------- MAE pretraining

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


# ---------------------------------------------------------------- training

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
                     init: str | Path | None = None):
    """Train one classifier on CIFAR-10 (or `data` = (train_u8, train_y, test_u8, test_y)); save to `out` if given.
    init: a saved classifier of the same architecture to start from (e.g. an MAE-pretrained encoder).

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
                **({"init": str(init)} if init else {}))
    model = model.float().eval()
    if out is not None:
        save_classifier(model, out, info)
        model = load_classifier(out, device=device)  # report accuracy of the weights as shipped
        info = json.loads((Path(out) / CONFIG_FILE).read_text())
    acc = accuracy(model, test_x, test_y)
    info["test_acc"] = round(acc, 4)
    if out is not None:
        _write_config(out, info)
        _write_card(out, info)
    if progress:
        print(f"{arch}: test accuracy {acc:.4f} after {epochs} epochs in {train_seconds:.0f}s ({info['device']})")
    return model, info


# ---------------------------------------------------------------- weights on disk

def _write_config(out, info):
    (Path(out) / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n")


def _card_metadata(name: str, info: dict) -> str:
    """YAML front matter (Hub model-card metadata): library, license, dataset, tags, test accuracy."""
    from huggingface_hub import EvalResult, ModelCardData

    results = None
    if "test_acc" in info:
        results = [EvalResult(task_type="image-classification", task_name="Image Classification", dataset_type="cifar10",
                              dataset_name="CIFAR-10", dataset_split="test", metric_type="accuracy",
                              metric_value=round(info["test_acc"], 4), metric_name="CIFAR-10 test accuracy")]
    tags = ["driftin", "cifar10", "evaluation-network" if info["arch"] == "evalnet" else "drift-encoder"]
    data = ModelCardData(model_name=name, library_name="driftin", license="mit", datasets=["cifar10"], tags=tags,
                         pipeline_tag="image-classification", eval_results=results)
    return f"---\n{data.to_yaml()}\n---\n\n"


def write_card(folder: str | Path) -> Path:
    """(Re)write a saved classifier's README.md from its config.json."""
    folder = Path(folder)
    info = json.loads((folder / CONFIG_FILE).read_text())
    _write_card(folder, info)
    return folder / "README.md"


def _write_card(out, info):
    enc_role = ("Feature encoder for the drift loss (`features(x)` -> 4 stage maps at 32/16/8/4). GroupNorm: "
                "features do not depend on batch composition.")
    role = {"encoder": enc_role, "resnet": enc_role,
            "evalnet": "Evaluation network for FD / precision-recall / IS-analogue (`penultimate(x)` features, softmax). "
                       "Independent of the drift encoder (other architecture, seed, objective)."}[info["arch"]]
    acc = f"{info['test_acc']:.4f}" if "test_acc" in info else "(not measured)"
    train = (f"CIFAR-10 train split (JPEG copy), {info['epochs']} epochs, batch {info['batch']}, SGD nesterov, lr {info['lr']}, "
             f"label smoothing {info['label_smoothing']}, seed {info['seed']}, crop+flip augmentation; "
             f"{info['train_seconds']} s on {info['device']}") if "epochs" in info else "(untrained save)"
    if info.get("pretrain") == "mae":
        train = (f"MAE pretraining only ({info['mask_ratio']:.0%} of 2x2 patches masked, l2 on the masked region), "
                 f"{info['mae_epochs']} epochs, AdamW lr {info['lr']}; the classification head is untrained")
    elif info.get("init"):
        train += f"; initialised from {info['init']}"
    blocks = f", blocks {info['blocks']}" if "blocks" in info else ""
    text = _card_metadata(Path(out).name, info) + f"""# {Path(out).name}

{role}

- Architecture: `{info['arch']}`, widths {info['widths']}{blocks}, {info['params']:,} parameters, stored {info['dtype']}
- Input: float images in [-1, 1], [B, 3, 32, 32]; CIFAR-10 normalisation happens inside the model.
- Training: {train}
- CIFAR-10 test accuracy: {acc}
- Command: `{info.get('train_command') or 'n/a'}`
- Load: `from driftin.classifier import load_classifier; net = load_classifier("{out}")`
"""
    (Path(out) / "README.md").write_text(text)


def save_classifier(model: nn.Module, out: str | Path, info: dict | None = None) -> Path:
    """Write model.safetensors (fp16, like the shipped generators: half the bytes in the tracked tree, and
    train_classifier measures test accuracy on this round trip) + config.json + README.md."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fp16_bytes = sum(v.numel() * 2 for v in sd.values() if v.is_floating_point())
    if fp16_bytes > MAX_FILE_BYTES:
        raise ValueError(f"{model.config}: {fp16_bytes / 2**20:.1f} MiB in fp16, over the {MAX_FILE_BYTES / 2**20:.0f} MiB "
                         "one-file limit for classifiers; use smaller widths")
    dtype = torch.float16
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    save_file(sd, str(out / WEIGHTS_FILE))
    info = {**(info or {}), **model.config, "dtype": str(dtype).replace("torch.", ""),
            "params": sum(p.numel() for p in model.parameters())}
    _write_config(out, info)
    _write_card(out, info)
    return out


def resolve_weights_dir(path_or_name: str | Path) -> Path:
    """A folder path, a name under <repo>/weights/, a `.safetensors` file (its folder), or a Hugging Face repo id."""
    p = Path(path_or_name)
    if p.is_file():
        if p.suffix.lower() in PICKLE_SUFFIXES:
            raise ValueError(f"{p} is a pickle checkpoint; classifiers load only from safetensors folders "
                             f"({WEIGHTS_FILE} + {CONFIG_FILE}) because unpickling can run arbitrary code")
        if p.suffix == ".safetensors":
            return p.parent
        raise ValueError(f"{p} is a file; pass the folder holding {WEIGHTS_FILE} and {CONFIG_FILE}")
    from driftin.paths import weights_candidates  # $DRIFTIN_WEIGHTS, ./weights, the checkout's weights/

    for cand in (p, *weights_candidates(str(path_or_name))):
        if cand.is_dir():
            return cand
    s = str(path_or_name)
    if s.count("/") == 1 and not s.startswith((".", "/")):  # looks like owner/name: try the hub
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(s, allow_patterns=["*.safetensors", "*.json", "*.md"]))
        except Exception as e:  # offline, missing repo, missing package: one clear message
            raise FileNotFoundError(f"classifier weights {s!r}: no such local folder (also looked in {REPO / 'weights'}) "
                                    f"and Hugging Face download failed ({type(e).__name__}: {str(e)[:200]})") from None
    raise FileNotFoundError(f"classifier weights {s!r}: no such folder (also looked in {REPO / 'weights'}); "
                            f"train one with `python -m driftin.classifier train --arch evalnet --out weights/evalnet-cifar10`")


def load_classifier(path_or_name: str | Path, device=None) -> nn.Module:
    """Load a saved classifier: eval mode, fp32, requires_grad False."""
    from safetensors.torch import load_file

    folder = resolve_weights_dir(path_or_name)
    wfile, cfile = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if not wfile.exists():
        pickles = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES)
        hint = f"; found pickle checkpoint(s) {pickles}, which are not loaded (unsafe) - re-save as safetensors" if pickles else ""
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_FILE}{hint}")
    if not cfile.exists():
        raise FileNotFoundError(f"{folder} has no {CONFIG_FILE} (needed to rebuild the architecture)")
    cfg = json.loads(cfile.read_text())
    arch = cfg.get("arch")
    kwargs = {"widths": cfg["widths"], "num_classes": cfg.get("num_classes", 10)}
    if arch in ("encoder", "resnet"):
        kwargs["blocks"] = cfg["blocks"]
    model = build_classifier(arch, **kwargs)
    sd = load_file(str(wfile))
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{wfile} does not match a {arch} with config {kwargs}: missing keys {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    bad = [k for k in sd if sd[k].shape != expected[k].shape]
    if bad:
        raise ValueError(f"{wfile}: shape mismatch for {bad[:5]} (file {tuple(sd[bad[0]].shape)} vs model {tuple(expected[bad[0]].shape)})")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()})
    model.meta = cfg
    model.requires_grad_(False)
    return model.to(device or "cpu").eval()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m driftin.classifier", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train and save a classifier")
    m = sub.add_parser("pretrain-mae", help="MAE-pretrain a GroupNorm encoder (then fine-tune: train --init FOLDER)")
    for q in (t, m):
        q.add_argument("--config", help="JSON recipe with any of these options (flags override it), "
                                         "e.g. training/encoder_resnet_cifar10.json")
        q.add_argument("--arch", choices=sorted(ARCHS))
        q.add_argument("--out", help="weights folder, e.g. weights/evalnet-cifar10")
        q.add_argument("--epochs", type=int)
        q.add_argument("--batch", type=int)
        q.add_argument("--lr", type=float)
        q.add_argument("--seed", type=int)
        q.add_argument("--device")
        q.add_argument("--widths", type=lambda s: [int(v) for v in s.split(",")], help="override, e.g. 32,64,128")
        q.add_argument("--blocks", type=lambda s: [int(v) for v in s.split(",")], help="encoder/resnet: blocks per stage, e.g. 2,2,2,2")
        q.add_argument("--weight-decay", dest="weight_decay", type=float)
        q.add_argument("--compile", action="store_true", help="torch.compile the model (faster epochs, ~1 min compile)")
    t.add_argument("--label-smoothing", dest="label_smoothing", type=float)
    t.add_argument("--init", help="start from this saved classifier (same architecture), e.g. an MAE-pretrained encoder")
    m.add_argument("--mask-ratio", dest="mask_ratio", type=float)
    c = sub.add_parser("card", help="rewrite a saved classifier's README.md (model card) from its config.json")
    c.add_argument("folder")
    a = ap.parse_args(argv)
    if a.cmd == "card":
        print(write_card(a.folder))
        return
    command = "python -m driftin.classifier " + " ".join(shlex.quote(v) for v in (argv if argv is not None else sys.argv[1:]))
    opts = train_options(a)
    fn = pretrain_mae if a.cmd == "pretrain-mae" else train_classifier
    fn(opts.pop("arch"), opts.pop("out"), **opts, command=command)


def train_options(a: argparse.Namespace) -> dict:
    """train_classifier's / pretrain_mae's arguments from the recipe file (if any) overridden by the flags given."""
    keys = ("arch", "out", "epochs", "batch", "lr", "seed", "device", "widths", "blocks", "weight_decay", "compile")
    keys += ("mask_ratio",) if a.cmd == "pretrain-mae" else ("label_smoothing", "init")
    recipe = json.loads(Path(a.config).read_text()) if a.config else {}
    unknown = sorted(set(recipe) - set(keys))
    if unknown:
        raise ValueError(f"{a.config}: unknown keys {unknown}; allowed: {list(keys)}")
    o = {**recipe, **{k: getattr(a, k) for k in keys if getattr(a, k) not in (None, False)}}
    if not o.get("arch") or not o.get("out"):
        raise ValueError("need --arch and --out (or a --config that sets them)")
    arch_kwargs = {k: o.pop(k) for k in ("widths", "blocks") if o.get(k)}
    if "blocks" in arch_kwargs and o["arch"] == "evalnet":
        raise ValueError("evalnet has no blocks option")
    return {**o, "arch_kwargs": arch_kwargs or None}


if __name__ == "__main__":
    main()
