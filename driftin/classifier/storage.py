"""Saved classifiers on disk: one fp16 model.safetensors + config.json + README.md, written and read through
driftin.hub's weights layer (the one the UNet uses), so both kinds of weights folder are the same format."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from ..hub import (CONFIG_FILE, PICKLE_SUFFIXES, WEIGHTS_FILE, WeightsError, read_state_dict, resolve, state_dict_mismatch,
                   write_weights)
from .card import write_card_from_info
from .nets import build_classifier

MAX_FILE_BYTES = 24 * 2**20  # one unsharded file per classifier; 24 MiB leaves room for the ResNet-18-size encoder


def save_classifier(model: nn.Module, out: str | Path, info: dict | None = None) -> Path:
    """Write model.safetensors (fp16, like the shipped generators: half the bytes in the tracked tree, and
    train_classifier measures test accuracy on this round trip) + config.json + README.md."""
    out = Path(out)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fp16_bytes = sum(v.numel() * 2 for v in sd.values() if v.is_floating_point())
    if fp16_bytes > MAX_FILE_BYTES:
        raise ValueError(f"{model.config}: {fp16_bytes / 2**20:.1f} MiB in fp16, over the {MAX_FILE_BYTES / 2**20:.0f} MiB "
                         "one-file limit for classifiers; use smaller widths")
    dtype = torch.float16
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    info = {**(info or {}), **model.config, "dtype": str(dtype).replace("torch.", ""),
            "params": sum(p.numel() for p in model.parameters())}
    write_weights(out, sd, info, max_shard="1GB")  # size checked above: always the one file model.safetensors
    write_card_from_info(out, info)
    return out


def resolve_weights_dir(path_or_name: str | Path) -> Path:
    """A `.safetensors` file (its folder), else what hub.resolve finds: a folder path, a weights folder name
    ($DRIFTIN_WEIGHTS, ./weights, the checkout's weights/) or a Hugging Face repo id."""
    p = Path(path_or_name)
    if p.is_file():
        if p.suffix.lower() in PICKLE_SUFFIXES:
            raise ValueError(f"{p} is a pickle checkpoint; classifiers load only from safetensors folders "
                             f"({WEIGHTS_FILE} + {CONFIG_FILE}) because unpickling can run arbitrary code")
        if p.suffix == ".safetensors":
            return p.parent
        raise ValueError(f"{p} is a file; pass the folder holding {WEIGHTS_FILE} and {CONFIG_FILE}")
    try:
        return resolve(path_or_name)
    except WeightsError as e:  # a missing classifier is a missing file to its callers
        raise FileNotFoundError(f"classifier weights {str(path_or_name)!r}: no such folder ({e}); train one with "
                                "`python -m driftin.classifier train --arch evalnet --out weights/evalnet-cifar10`") from None


def load_classifier(path_or_name: str | Path, device=None) -> nn.Module:
    """Load a saved classifier: eval mode, fp32, requires_grad False."""
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
        kwargs["norm"] = cfg.get("norm", "group")  # configs saved before the option: GroupNorm
    model = build_classifier(arch, **kwargs)
    sd = read_state_dict(folder)
    expected = model.state_dict()
    mismatch = state_dict_mismatch(expected, sd)
    if mismatch:
        raise ValueError(f"{wfile} does not match a {arch} with config {kwargs}: {mismatch}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()})
    model.meta = cfg
    model.requires_grad_(False)
    return model.to(device or "cpu").eval()
