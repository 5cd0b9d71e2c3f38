"""Frozen feature encoders for the drift loss: each maps images in [-1, 1] to a list of feature maps.

- "cifar": the project's own CIFAR-10 encoder (GroupNorm ResNet, maps at 32/16/8/4), shipped in
  weights/encoder-cifar10 – the default, since no pretrained weights can be downloaded offline.
- "pixels": no encoder (raw-pixel groups only): the baseline that shows why features matter.
- "timm:<name>": any timm backbone with features_only (ResNet, ConvNeXt-V2, DINOv2 ViT, a MoCo
  ResNet-50 from a local file); pretrained weights from a local file or, online, from the Hub.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CIFAR_ENCODER = REPO / "weights" / "encoder-cifar10"


class TimmEncoder(nn.Module):
    def __init__(self, name: str, weights: str = "", resize: int = 0):
        super().__init__()
        import timm

        kwargs = {"features_only": True}
        if weights:
            if not Path(weights).exists():
                raise FileNotFoundError(f"encoder weights file {weights} does not exist")
            kwargs["pretrained_cfg_overlay"] = {"file": str(weights)}
        try:
            self.net = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as e:  # noqa: BLE001 - offline, unknown name, no features_only: say which and what to do
            raise RuntimeError(
                f"could not build timm encoder {name!r} with pretrained weights ({type(e).__name__}: {e}). "
                "Offline, pass a local weights file (--drift-encoder-weights PATH, .safetensors or .pth); "
                "a randomly initialised encoder is never used silently."
            ) from e
        cfg = self.net.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1))
        self.resize = resize or cfg.get("input_size", (3, 224, 224))[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x + 1) / 2
        if x.shape[-1] != self.resize:
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False)
        maps = self.net((x - self.mean) / self.std)
        # ViTs give [B, H, W, C] or [B, C, H, W] depending on version; the field wants [B, C, H, W]
        return [m if m.ndim == 4 else m.transpose(1, 2) for m in maps]


class CifarEncoder(nn.Module):
    def __init__(self, weights: str | Path = ""):
        super().__init__()
        from ..classifier import load_classifier

        path = Path(weights or DEFAULT_CIFAR_ENCODER)
        if not path.exists():
            raise FileNotFoundError(f"CIFAR encoder weights {path} not found; train them with "
                                    "`python -m driftin.classifier train --arch encoder --out weights/encoder-cifar10`")
        self.net = load_classifier(path)

    def forward(self, x):
        return self.net.features(x)


def build_encoder(name: str = "cifar", weights: str = "", resize: int = 0) -> nn.Module | None:
    """A frozen encoder in eval mode, or None for "pixels"."""
    if name == "pixels":
        return None
    if name == "cifar":
        enc = CifarEncoder(weights)
    elif name.startswith("timm:"):
        enc = TimmEncoder(name[5:], weights, resize)
    else:
        raise ValueError(f"unknown encoder {name!r}: use 'cifar', 'pixels' or 'timm:<model name>'")
    return enc.eval().requires_grad_(False)
