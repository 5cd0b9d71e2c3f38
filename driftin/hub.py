"""Inference weights: fp16 safetensors shards + config.json (+ README.md), the layout of a Hub model repo.

The persistence layer of the package: write_weights / read_state_dict are the one writer and reader of
weights folders (the UNet here, the classifiers in driftin.classifier.storage), built on huggingface_hub's
save_torch_state_dict and safetensors. save_pretrained / load_pretrained work on a local folder or a Hugging
Face Hub repo id.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from .checkpoint import clean_state_dict, write_atomic
from .config import UNetConfig, diff_keys, from_dict, to_dict
from .unet import UNet

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"  # unsharded weights; sharded ones come with WEIGHTS_FILE + ".index.json"
MAX_SHARD = "15MB"  # every tracked file stays small enough for the GPU machine's transfer limits
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")  # matched lower-cased


class WeightsError(ValueError):
    """Weights that cannot be loaded, with the reason."""


class WeightsMissing(WeightsError):
    """Nothing to load: no such folder, no weights file in it, or a Hub repo that cannot be fetched."""


class WeightsCorrupt(WeightsError):
    """Files are there but unusable: truncated or not safetensors, bad config.json, wrong architecture."""


def write_config(folder: str | Path, config: dict) -> Path:
    """config.json (indent 2, trailing newline), written atomically: a crash never leaves a weights folder half-described."""
    path = Path(folder) / CONFIG_FILE
    write_atomic(path, json.dumps(config, indent=2) + "\n")
    return path


def write_weights(folder: str | Path, state_dict: dict[str, torch.Tensor], config: dict, max_shard=MAX_SHARD) -> Path:
    """The one writer of weights folders (UNets and classifiers): safetensors through huggingface_hub's
    save_torch_state_dict (model.safetensors, or shards + index above max_shard) and config.json."""
    from huggingface_hub import save_torch_state_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("model*.safetensors*"):  # a re-save with other sharding leaves no stale shard
        old.unlink()
    save_torch_state_dict(state_dict, str(folder), max_shard_size=max_shard)
    write_config(folder, config)
    return folder


def state_dict_mismatch(expected: dict, found: dict) -> str | None:
    """Why the tensors `found` cannot load into a model whose state dict is `expected` (missing and unexpected keys,
    shape mismatches: a few of each, with counts), in one line; None when they fit. One wording for every loader."""
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k].shape != found[k].shape)

    def few(keys: list[str]) -> str:
        return f"{keys[:5]}{'…' if len(keys) > 5 else ''} ({len(keys)})"

    parts = [f"missing {few(missing)}" if missing else "", f"unexpected {few(extra)}" if extra else "",
             f"shape mismatch {few(wrong)}, e.g. file {tuple(found[wrong[0]].shape)} vs model "
             f"{tuple(expected[wrong[0]].shape)}" if wrong else ""]
    return ", ".join(p for p in parts if p) or None


def save_pretrained(model, folder: str | Path, meta: dict | None = None, dtype=torch.float16) -> Path:
    net = getattr(model, "module", model)
    sd = {k: v.detach().to("cpu", dtype).contiguous() for k, v in clean_state_dict(net.state_dict()).items()}
    config = {"model": to_dict(net.config), **(meta or getattr(net, "meta", {}))}
    return write_weights(folder, sd, config)


def looks_local(source: str | Path) -> bool:
    """A path rather than a Hub repo id ('user/name'): never looked up on the Hub."""
    s = str(source)
    return (s.count("/") != 1 or s.startswith((".", "/", "~")) or s.startswith("weights/")
            or Path(s).is_absolute() or "\\" in s)


def resolve(path_or_repo: str | Path, revision: str | None = None) -> Path:
    """A local folder as is; a bare name (`drift-cifar10`) from $DRIFTIN_WEIGHTS, ./weights or the checkout's
    weights/ (driftin.paths); otherwise a Hub repo id fetched (or found in the cache when HF_HUB_OFFLINE=1)."""
    p = Path(path_or_repo).expanduser()
    if p.exists():
        if p.is_file():
            raise WeightsError(f"{p} is a file; give the folder holding {CONFIG_FILE} and the .safetensors weights")
        return p
    s = str(path_or_repo)
    if "/" not in s and "\\" not in s:
        from .paths import find_weights, weights_candidates

        found = find_weights(s)
        if found is not None:
            return found
        raise WeightsMissing(f"weights folder {s!r} not found (looked in {', '.join(map(str, weights_candidates(s)))})")
    if looks_local(s):
        raise WeightsMissing(f"weights folder {s} does not exist (and it is not a Hub repo id like 'user/name')")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(s, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.md", "*.png"]))
    except Exception as e:  # noqa: BLE001 - offline, missing repo, no token: say which repo
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        hint = " (HF_HUB_OFFLINE is set and the repo is not in the local cache)" if offline else ""
        raise WeightsMissing(f"could not get Hub repo {s!r}{hint}: {type(e).__name__}: {e}") from e


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = folder / f"{WEIGHTS_FILE}.index.json"
    if index.exists():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise WeightsCorrupt(f"weights index {index} is corrupt: {type(e).__name__}: {e}") from e
    elif (folder / WEIGHTS_FILE).exists():
        files = [WEIGHTS_FILE]
    else:
        pickles = [f.name for f in folder.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES]
        if pickles:
            raise WeightsCorrupt(f"{folder} holds pickle checkpoint(s) {pickles}, not safetensors; driftin loads safetensors only "
                               "(a pickle can run code). Export with driftin.hub.save_pretrained or `python -m driftin.train export`.")
        raise WeightsMissing(f"no {WEIGHTS_FILE} or {WEIGHTS_FILE}.index.json in {folder}")
    sd = {}
    for name in files:
        path = folder / name
        if not path.exists():
            raise WeightsMissing(f"weights shard {path} is missing")
        try:
            sd.update(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as e:
            with open(path, "rb") as f:
                head = f.read(2)
            kind = "a pickle/torch.save file, not safetensors" if head in (b"PK", b"\x80\x02", b"\x80\x04") else "corrupt or truncated"
            raise WeightsCorrupt(f"weights file {path} is {kind}: {e}") from e
    return sd


def load_pretrained(path_or_repo: str | Path, device=None, config: UNetConfig | None = None, revision: str | None = None) -> UNet:
    """UNet in eval mode with `.meta` (objective, training details) from a folder or Hub repo id.
    `config`: the architecture the caller expects; a mismatch names the differing keys (dropout is not compared:
    it has no weights, so a run may continue weights with another rate)."""
    folder = resolve(path_or_repo, revision)
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.exists():
        raise WeightsMissing(f"{folder} has no {CONFIG_FILE}")
    try:
        meta = json.loads(cfg_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise WeightsCorrupt(f"{cfg_path} is not valid JSON (corrupt?): {e}") from e
    if not isinstance(meta, dict) or "model" not in meta:
        raise WeightsCorrupt(f"{cfg_path} has no 'model' section (not a driftin weights folder)")
    try:
        cfg = from_dict(UNetConfig, meta.pop("model"))
    except (TypeError, ValueError) as e:
        raise WeightsCorrupt(f"{cfg_path}: {e}") from e
    if config is not None and (same_dropout := dataclasses.replace(cfg, dropout=config.dropout)) != config:
        raise WeightsCorrupt(f"{folder} holds a different architecture: keys {diff_keys(same_dropout, config)} differ")
    model = UNet(cfg)
    sd = clean_state_dict(read_state_dict(folder))
    mismatch = state_dict_mismatch(model.state_dict(), sd)
    if mismatch:
        raise WeightsCorrupt(f"weights in {folder} do not match {CONFIG_FILE} (wrong preset?): {mismatch}")
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    model.meta = meta
    return model.eval().requires_grad_(False).to(device or "cpu")
