"""Frozen feature encoders for the drift loss: each maps images in [-1, 1] to a list of feature maps.

- "cifar": the project's own CIFAR-10 encoder (GroupNorm ResNet, maps at 32/16/8/4), shipped in
  weights/encoder-cifar10 – the default, since no pretrained weights can be downloaded offline.
- "pixels": no encoder (raw-pixel groups only): the baseline that shows why features matter.
- "timm:<name>": any timm backbone with features_only (ResNet, ConvNeXt-V2, DINOv2 ViT, a MoCo
  ResNet-50 from a local file); pretrained weights from a local file or, online, from the Hub.
"""
from __future__ import annotations

import difflib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import paths

REPO = paths.project_root()
# $DRIFTIN_WEIGHTS, ./weights or the checkout's weights/ (works from an installed package too)
DEFAULT_CIFAR_ENCODER = paths.find_weights("encoder-cifar10") or REPO / "weights" / "encoder-cifar10"


class TimmEncoder(nn.Module):
    """A timm backbone (features_only) with pretrained weights: `weights` is a local file (.safetensors or
    .pth holding the timm model's state dict); without it they come from the Hub (or its local cache)."""

    def __init__(self, name: str, weights: str = "", resize: int = 0):
        super().__init__()
        import timm

        if not name.startswith(("hf-hub:", "hf_hub:", "local-dir:")) and not timm.is_model(name):
            similar = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=5)
            raise ValueError(f"unknown timm model {name!r}" + (f"; similar names: {', '.join(similar)}" if similar else ""))
        kwargs = {"features_only": True}
        if weights and name.startswith(("hf-hub:", "hf_hub:")):
            raise ValueError(f"timm model {name!r} takes its weights from the Hub, not from {weights}: "
                             "name the architecture instead (e.g. timm:resnet50) to load a local file")
        if weights:
            if not Path(weights).is_file():
                raise FileNotFoundError(f"encoder weights file {weights} does not exist")
            weights, file_keys = _self_supervised_backbone(weights)
            kwargs["pretrained_cfg_overlay"] = {"file": str(weights)}
        try:
            self.net = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as e:  # noqa: BLE001 - a bad file, offline, no features_only: say which and what to do
            if weights:
                raise RuntimeError(f"could not load encoder weights {weights} into timm model {name!r} "
                                   f"({type(e).__name__}: {e}); the file must hold that model's state dict") from e
            raise RuntimeError(
                f"could not build timm encoder {name!r} with pretrained weights ({type(e).__name__}: {e}). "
                "Offline, pass a local weights file (.safetensors or .pth): --drift-encoder-weights PATH, or "
                "DriftConfig(encoder_weights=PATH); a randomly initialised encoder is never used silently."
            ) from e
        if weights:
            missing = _missing_keys(self.net, file_keys)
            if missing:  # timm loads features_only weights non-strictly: it would leave these randomly initialised
                raise RuntimeError(
                    f"encoder weights {weights} do not fit timm model {name!r}: {len(missing)} of its tensors are not "
                    f"in the file (e.g. {', '.join(missing[:3])}). Save the file from that timm model's state dict, "
                    f"e.g. safetensors.torch.save_file(timm.create_model({name!r}, pretrained=True).state_dict(), PATH)."
                )
        cfg = self.net.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1))
        self.resize = resize or cfg.get("input_size", (3, 224, 224))[-1]
        # most backbones give [B, C, H, W]; some (Swin) give [B, H, W, C], and the features want the former
        fmt = getattr(self.net, "output_fmt", "NCHW")
        self.nhwc = getattr(fmt, "value", fmt) == "NHWC"

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x + 1) / 2
        if x.shape[-1] != self.resize:
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False)
        maps = self.net((x - self.mean) / self.std)
        return [m.permute(0, 3, 1, 2) for m in maps] if self.nhwc else list(maps)


# Self-supervised checkpoints keep the backbone under a prefix next to other networks (MoCo v2: the
# momentum encoder "encoder_k.", the queue; MoCo v3: "momentum_encoder.", "predictor.").
_BACKBONE_PREFIXES = ("encoder_q.", "base_encoder.", "backbone.")


def _self_supervised_backbone(weights: str) -> tuple[str, list[str]]:
    """A MoCo-style checkpoint as a plain state dict: the file itself when it already is one, else the
    backbone's tensors (prefix stripped, the MLP head dropped) written once next to it as *.backbone.safetensors.
    Returns that file and its tensor names (the file is read once here, not again for the key check)."""
    from safetensors.torch import save_file
    from timm.models import load_state_dict

    sd = load_state_dict(weights)  # unwraps "state_dict"/"model" and strips "module."
    prefix = next((p for p in _BACKBONE_PREFIXES if any(k.startswith(p) for k in sd)), None)
    if prefix is None:
        return weights, list(sd)
    backbone = {k[len(prefix):]: v.contiguous() for k, v in sd.items()
                if k.startswith(prefix) and not k[len(prefix):].startswith(("fc.", "head."))}
    out = Path(weights).with_suffix(".backbone.safetensors")
    if out.exists() and out.stat().st_mtime >= Path(weights).stat().st_mtime:
        return str(out), list(backbone)
    try:
        save_file(backbone, str(out))
    except OSError:  # a read-only folder: a private temporary copy instead
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="driftin-encoder-")) / out.name
        save_file(backbone, str(out))
    return str(out), list(backbone)


def _missing_keys(net: nn.Module, file_keys: list[str]) -> list[str]:
    """Tensors of a timm features net that the weights file (its tensor names, as timm's load_state_dict
    reads them) lacks. The features net renames modules (a "model." prefix, "layers_0" for "layers.0"),
    so names are compared with both spellings folded."""

    def fold(key: str) -> str:
        return key.removeprefix("model.").replace("_", ".")

    have = {fold(k) for k in file_keys}
    return [k for k in net.state_dict() if fold(k) not in have and not k.endswith("num_batches_tracked")]


class CifarEncoder(nn.Module):
    def __init__(self, weights: str | Path = ""):
        """weights: a classifier folder, or a folder name looked up like every weights name (DRIFTIN_WEIGHTS,
        ./weights, the checkout's weights/), so a recipe can name its encoder wherever the weights are staged."""
        super().__init__()
        from ..classifier import load_classifier

        source = weights or DEFAULT_CIFAR_ENCODER
        try:
            self.net = load_classifier(source)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"CIFAR encoder weights {source} not found ({e}); train them with `python -m "
                                    "driftin.classifier train --arch encoder --out weights/encoder-cifar10`") from None

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
