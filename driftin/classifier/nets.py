"""The classifier architectures: ResNet encoders (the drift loss's features; GroupNorm, or BatchNorm with norm="batch")
and the BatchNorm evalnet."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """[-1, 1] -> per-channel standardised with CIFAR-10 statistics (non-persistent: not in the weights)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return ((x + 1) * 0.5 - self.mean) / self.std


NORMS = ("group", "batch")


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, c), c)  # gcd: tiny test widths still divide evenly


def _norm(c: int, norm: str = "group") -> nn.Module:
    """The encoders' norm layer, chosen here only. "group": per-sample in train and eval mode. "batch": per-sample in
    eval mode only (then a fixed per-channel affine), which is how a frozen drift encoder runs (load_classifier: eval)."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}")
    return _gn(c) if norm == "group" else nn.BatchNorm2d(c)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str = "group"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = _norm(cout, norm)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = _norm(cout, norm)
        nn.init.zeros_(self.norm2.weight)  # each block starts as identity (zero-init residual)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout, norm))

    def forward(self, x):
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(h + (x if self.skip is None else self.skip(x)))


class Encoder(nn.Module):
    """ResNet, GroupNorm by default (norm="batch": BatchNorm); stage i has widths[i] channels at 32 / 2**i resolution."""

    arch = "encoder"

    def __init__(self, widths=(32, 64, 128, 256), blocks=(1, 1, 1, 1), num_classes: int = 10, norm: str = "group"):
        super().__init__()
        self.config = {"arch": self.arch, "widths": list(widths), "blocks": list(blocks), "num_classes": num_classes,
                       "norm": norm}
        self.norm = Normalize()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), _norm(widths[0], norm), nn.ReLU())
        stages, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            stages.append(nn.Sequential(*[BasicBlock(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1, norm)
                                          for j in range(n)]))
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
    ablation: the encoder matters most). Same stage maps at 32/16/8/4; GroupNorm, or BatchNorm with norm="batch"."""

    arch = "resnet"

    def __init__(self, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), num_classes: int = 10, norm: str = "group"):
        super().__init__(widths, blocks, num_classes, norm)


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


def build_classifier(arch: str, **kwargs) -> nn.Module:
    if arch not in ARCHS:
        raise ValueError(f"unknown classifier arch {arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[arch](**kwargs)
