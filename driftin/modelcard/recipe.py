"""The training command a card shows: the one recorded at training time (config.json "train_args"), or for
folders exported before that was recorded, the recipe in training/ that matches train_config plus flags."""
from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

from .sources import _read_json

LAUNCHER = "torchrun --nproc_per_node=8"


def _norm(v):
    return json.loads(json.dumps(v))


def _full_config(recipe: dict) -> dict | None:
    """A recipe (partial TrainConfig dict) completed with the trainer's defaults; None if it does not parse."""
    try:
        from ..config import from_dict
        from ..train import TrainConfig

        drift = dict(recipe.get("drift", {}))
        return _norm(dataclasses.asdict(from_dict(TrainConfig, {**{k: v for k, v in recipe.items() if k != "drift"}, "drift": drift})))
    except Exception:  # noqa: BLE001
        return None


def _flat(cfg: dict) -> dict:
    out = {k: v for k, v in cfg.items() if k != "drift"}
    out.update({f"drift.{k}": v for k, v in (cfg.get("drift") or {}).items()})
    return out


def _flag(key: str, value) -> str:
    name = "--drift-" + key[6:].replace("_", "-") if key.startswith("drift.") else "--" + key.replace("_", "-")
    val = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return f"{name} {shlex.quote(val)}"


def find_recipe(train_config: dict, root: str | Path | None) -> tuple[str | None, list[str]]:
    """(recipe path relative to root or None, extra flags) that reproduce train_config with `driftin.train`."""
    target = _flat(_norm(train_config))
    candidates = []
    recipes = sorted(Path(root, "training").glob("*.json")) if root is not None else []
    for path in recipes:
        raw = _read_json(path)
        full = _full_config(raw) if isinstance(raw, dict) else None
        if full is None:
            continue
        flat = _flat(full)
        diff = [k for k in target if flat.get(k) != target[k]]
        candidates.append((len(diff), path.relative_to(root).as_posix(), diff))
    defaults = _full_config({})
    if defaults is not None:
        dflat = _flat(defaults)
        candidates.append((len([k for k in target if dflat.get(k) != target[k]]) + 1, None,
                           [k for k in target if dflat.get(k) != target[k]]))
    if not candidates:  # the trainer's config could not be built: spell out every key
        return None, [_flag(k, v) for k, v in target.items()]
    _, recipe, diff = min(candidates, key=lambda c: (c[0], c[1] is None, c[1] or ""))
    return recipe, [_flag(k, target[k]) for k in diff]


def train_command(train_config: dict, root: str | Path | None, launcher: str = LAUNCHER) -> str:
    """The command derived from train_config alone (a matching recipe file plus the flags that differ)."""
    recipe, flags = find_recipe(train_config, root)
    parts = [launcher, "-m driftin.train"] + ([f"--config {recipe}"] if recipe else []) + flags
    return " ".join(parts)


def reproduce_command(cfg: dict, root: str | Path | None, launcher: str = LAUNCHER) -> str:
    """The command that trained a folder (its config.json): the arguments the trainer recorded, else derived."""
    args = cfg.get("train_args")
    if isinstance(args, list) and args and all(isinstance(a, str) for a in args):
        return " ".join([launcher, "-m driftin.train", *(shlex.quote(a) for a in args)])
    return train_command(cfg.get("train_config") or {}, root, launcher)
