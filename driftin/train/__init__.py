"""The one training loop, for every objective and any world size.

    python -m driftin.train --objective ddpm --preset small --steps 20000 --out runs/ddpm
    torchrun --nproc_per_node=8 -m driftin.train --config training/drift_cifar10.json
    python -m driftin.train --config training/ddpm_cifar10.json --init-from weights/ddpm-cifar10 --steps 30000

Objectives are small callables loss(model, batch) -> (loss, logs). Every random draw of a step
comes from generators seeded by (seed, step), drawn at global-batch size and sliced per rank, so a
run is a function of its config alone: resuming after a kill, or changing the number of GPUs at a
fixed global batch, continues the same trajectory.

One step (Trainer.step, also timed by `python -m driftin.bench train`) does no host work that waits
for the GPU: data, class pools, indices and flips live on the device, the optimizer is fused AdamW
(foreach on CPU), the EMA is one foreach lerp, and finiteness is accumulated on the device and only
checked when the host reads anyway (log, checkpoint and snapshot steps).

Modules: recipe (TrainConfig, the LR schedule), trainer (StepRandom, StepOptions, Trainer: one step), loop
(train, snapshots, export), cli (parse_args, main).
"""
from __future__ import annotations

from .cli import RunOptions, json_or_str, main, parse_args
from .loop import export, save_grid, save_snapshot, train, weights_meta
from .recipe import COMPILE_MODES, TrainConfig, lr_at
from .trainer import StepOptions, StepRandom, Trainer, ema_update, make_objective

__all__ = ["COMPILE_MODES", "TrainConfig", "lr_at", "StepRandom", "StepOptions", "Trainer", "ema_update", "make_objective",
           "weights_meta", "train", "save_snapshot", "save_grid", "export", "RunOptions", "json_or_str", "parse_args", "main"]
