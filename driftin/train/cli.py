"""python -m driftin.train [export]: the command line; its arguments are recorded with the run (train_args)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import distributed as dist
from ..config import from_dict
from ..drift.objective import DriftConfig
from .loop import export, train
from .recipe import TrainConfig


def json_or_str(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


@dataclass
class RunOptions:
    """Command-line options of one invocation that are not part of the recipe."""

    init_from: str | None = None
    max_minutes: float | None = None


def parse_args(argv=None) -> tuple[TrainConfig, RunOptions]:
    p = argparse.ArgumentParser(prog="python -m driftin.train", description="Train a driftin model (DDPM or drift); any world size via torchrun.")
    p.add_argument("--config", help="JSON recipe (e.g. training/ddpm_cifar10.json); flags override it")
    p.add_argument("--init-from", dest="init_from", help="start from an inference weights folder or Hub repo id "
                   "(continues its step count, images seen, LR schedule and data order; fresh optimizer, new warmup)")
    p.add_argument("--max-minutes", dest="max_minutes", type=float,
                   help="stop with a checkpoint at the first log step after this many minutes (re-run to resume)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "drift":
            for g in dataclasses.fields(DriftConfig):
                p.add_argument(f"--drift-{g.name.replace('_', '-')}", dest=f"drift.{g.name}", type=json_or_str, default=None,
                               help=f"drift option (JSON value), default {g.default!r}")
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=json.loads if f.name in ("betas", "ema_extra", "lr_decay") or f.type in ("bool",) else None, default=None)
    a = vars(p.parse_args(argv))
    run = RunOptions(init_from=a.pop("init_from"), max_minutes=a.pop("max_minutes"))
    base = json.loads(Path(a.pop("config")).read_text()) if a.get("config") else {}
    drift = dict(base.pop("drift", {}))
    for k, v in a.items():
        if v is None:
            continue
        if k.startswith("drift."):
            drift[k[6:]] = v
        else:
            typ = type(getattr(TrainConfig(), k))
            base[k] = v if typ in (bool, tuple) else typ(v)  # (ema_extra: a number or a JSON list, TrainConfig makes it a tuple)
    return from_dict(TrainConfig, {**base, "drift": drift}), run


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        p = argparse.ArgumentParser(prog="python -m driftin.train export", description="export a run's EMA weights as safetensors + config.json")
        p.add_argument("run_dir")
        p.add_argument("folder")
        p.add_argument("--ema-decay", dest="ema_decay", type=float, help="which EMA (the recipe's ema_decay or one of ema_extra; "
                       "default: ema_decay)")
        a = p.parse_args(argv[1:])
        print(export(a.run_dir, a.folder, a.ema_decay))
        return
    cfg, run = parse_args(argv)
    try:
        train(cfg, init_from=run.init_from, max_minutes=run.max_minutes, train_args=list(argv))
    finally:
        dist.cleanup()


if __name__ == "__main__":
    main()
