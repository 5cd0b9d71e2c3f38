"""The one training loop, for every objective and any world size.

    python -m driftin.train --objective ddpm --preset small --steps 20000 --out runs/ddpm
    torchrun --nproc_per_node=8 -m driftin.train --config training/drift_cifar10.json

Objectives are small callables loss(model, batch) -> (loss, logs). Every random draw of a step
comes from generators seeded by (seed, step), drawn at global-batch size and sliced per rank, so a
run is a function of its config alone: resuming after a kill, or changing the number of GPUs at a
fixed global batch, continues the same trajectory.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import distributed as dist
from .checkpoint import load_checkpoint, save_checkpoint
from .config import from_dict, preset
from .data import global_batch, load_dataset, to_model_range
from .diffusion import DDPMLoss
from .drift.objective import DriftConfig
from .unet import UNet, count_params


@dataclass(frozen=True)
class TrainConfig:
    objective: str = "ddpm"  # "ddpm" | "drift"
    preset: str = "small"
    class_cond: bool = True
    num_classes: int = 10
    data: str = "cifar10"  # "cifar10" or an image-folder path
    batch_size: int = 128  # global, over all ranks
    steps: int = 20_000
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup: int = 500
    grad_clip: float = 1.0
    ema_decay: float = 0.9995
    bf16: bool = True
    compile: bool = False
    seed: int = 0
    log_every: int = 100
    sample_every: int = 2000
    ckpt_every: int = 1000
    out: str = "runs/ddpm"
    drift: DriftConfig = field(default_factory=DriftConfig)

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        if isinstance(self.drift, dict):
            object.__setattr__(self, "drift", from_dict(DriftConfig, self.drift))
        if self.objective not in ("ddpm", "drift"):
            raise ValueError(f"objective must be 'ddpm' or 'drift', got {self.objective!r}")

    def model_config(self):
        drift = self.objective == "drift"
        return preset(self.preset, num_classes=self.num_classes if self.class_cond else 0,
                      guidance_input=drift and self.class_cond and self.drift.cfg_max > 1.0,
                      zero_init_out=not drift)  # zero-init output makes every drift sample identical


class StepRandom:
    """Random draws of one step: made at global size from a (seed, step) generator, then sliced to this rank."""

    def __init__(self, seed: int, step: int, device):
        self.gen = torch.Generator(device).manual_seed(seed * 1_000_003 + step)
        self.device, self.r, self.w = device, dist.rank(), dist.world()

    def _slice(self, t):
        n = t.shape[0] // self.w
        return t[self.r * n:(self.r + 1) * n]

    def randn(self, *local_shape):
        return self._slice(torch.randn(local_shape[0] * self.w, *local_shape[1:], generator=self.gen, device=self.device))

    def rand(self, n):
        return self._slice(torch.rand(n * self.w, generator=self.gen, device=self.device))

    def randint(self, high, n):
        return self._slice(torch.randint(high, (n * self.w,), generator=self.gen, device=self.device))


def lr_at(step: int, cfg: TrainConfig, start: int = 0) -> float:
    """Linear warmup from `start` (a run initialised from weights warms its fresh optimizer up again)."""
    return cfg.lr * min(1.0, (step - start + 1) / max(1, cfg.warmup))


@torch.no_grad()
def ema_update(ema, model, decay: float):
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def make_objective(cfg: TrainConfig, device):
    if cfg.objective == "ddpm":
        return DDPMLoss()
    from .drift.objective import DriftLoss

    return DriftLoss(cfg.drift, device, num_classes=cfg.num_classes if cfg.class_cond else 0)


def train(cfg: TrainConfig, stop_after: int | None = None, quiet: bool = False, init_from: str | None = None) -> dict:
    """Run (or resume) training; returns the final state. stop_after: halt at that step (for tests).

    init_from: an inference weights folder (or Hub id) to start from when there is no checkpoint:
    model and EMA take its weights, the step count continues from its meta, the optimizer starts
    fresh with a new warmup. This is how a run continues on a new machine from shipped weights."""
    device = dist.init()
    world, out = dist.world(), Path(cfg.out)
    if cfg.batch_size % world:
        raise ValueError(f"global batch {cfg.batch_size} is not divisible by world size {world}")
    local_bs = cfg.batch_size // world
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    images, labels = load_dataset(cfg.data, "train")
    images, labels = images.to(device), labels.to(device)
    model = UNet(cfg.model_config()).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    objective = make_objective(cfg, device)

    start, warm_start, ckpt = 0, 0, out / "checkpoint.pt"
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        if state["config"] != json.loads(json.dumps(dataclasses.asdict(cfg))):
            diff = sorted(k for k, v in dataclasses.asdict(cfg).items() if json.loads(json.dumps(v)) != state["config"].get(k))
            dist.print0(f"note: resuming {ckpt} with changed config keys {diff}")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        start = state["step"]
        dist.print0(f"resumed from {ckpt} at step {start}")
    elif init_from:
        from .hub import load_pretrained

        src = load_pretrained(init_from, config=model.config)
        model.load_state_dict(src.state_dict())
        ema.load_state_dict(src.state_dict())
        start = warm_start = int(src.meta.get("steps", 0))
        dist.print0(f"initialised from {init_from} (step {start}); optimizer and warmup start fresh")

    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    step_fn = torch.compile(net) if cfg.compile else net
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        dist.print0(f"{cfg.objective} | {cfg.preset} {count_params(model) / 1e6:.1f}M params | world {world} | global batch {cfg.batch_size} | {device}")

    last = stop_after if stop_after is not None else cfg.steps
    bar = None
    if dist.is_main() and not quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=last, initial=start, dynamic_ncols=True)
    log_file = open(out / "log.jsonl", "a") if dist.is_main() else None
    t0, seen = time.time(), 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step = start
    for step in range(start, last):
        rng = StepRandom(cfg.seed, step, device)
        x_u8, y = global_batch(images, labels, cfg.batch_size, torch.Generator().manual_seed(cfg.seed * 7919 + step),
                               **objective.batch_kwargs() if hasattr(objective, "batch_kwargs") else {})
        sl = slice(dist.rank() * local_bs, (dist.rank() + 1) * local_bs)
        batch = {"x": to_model_range(x_u8[sl]), "y": y[sl] if cfg.class_cond else None, "rng": rng, "step": step}
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg, warm_start)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss, logs = objective(step_fn, batch)
        if not torch.isfinite(loss).all():
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}; the last good checkpoint is {ckpt} "
                                     "(lower --lr or raise --warmup, then resume)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema_update(ema, model, cfg.ema_decay)
        seen += cfg.batch_size
        done = step + 1
        if bar is not None:
            bar.update(1)
        if done % cfg.log_every == 0 or done == last:
            elapsed = time.time() - t0
            # an objective may log its loss unscaled (drift multiplies the backward loss by the world size)
            shown = logs.pop("loss", loss).detach()
            rec = {"step": done, "loss": dist.all_reduce_mean(float(shown), device), "grad_norm": float(gnorm),
                   "lr": lr_at(step, cfg, warm_start), "img_per_s": seen / max(elapsed, 1e-9),
                   "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0,
                   **{k: float(v) for k, v in logs.items()}}
            if log_file:
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.4f}", img_s=f"{rec['img_per_s']:.0f}")
            t0, seen = time.time(), 0
        if dist.is_main() and (done % cfg.ckpt_every == 0 or done == last):
            save_checkpoint(ckpt, model=model, ema=ema, optimizer=opt, step=done, config=dataclasses.asdict(cfg))
        if dist.is_main() and cfg.sample_every and (done % cfg.sample_every == 0 or done == last):
            save_grid(ema, cfg, out / f"samples_{done:07d}.png")
    if bar is not None:
        bar.close()
    if log_file:
        log_file.close()
    dist.barrier()
    return {"model": model, "ema": ema, "optimizer": opt, "step": last}


def save_grid(ema, cfg: TrainConfig, path: Path, n: int = 100):
    from torchvision.utils import save_image

    from .generate import generate

    labels = torch.arange(n) % cfg.num_classes if cfg.class_cond else None
    method = "drift" if cfg.objective == "drift" else "ddim"
    was_training = ema.training
    ema.eval()
    imgs = generate(ema, n, 0, method=method, steps=50, class_labels=labels)
    ema.train(was_training)
    save_image(imgs, path, nrow=10)


def export(run_dir: str | Path, folder: str | Path) -> Path:
    """Write the EMA weights of a run as an inference folder (safetensors + config.json)."""
    from .hub import save_pretrained

    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    cfg = TrainConfig(**state["config"])
    model = UNet(cfg.model_config())
    model.load_state_dict(state["ema"])
    meta = {"objective": cfg.objective, "steps": state["step"], "train_config": state["config"]}
    return save_pretrained(model, folder, meta)


def json_or_str(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def parse_args(argv=None) -> TrainConfig:
    p = argparse.ArgumentParser(description="Train a driftin model (DDPM or drift); any world size via torchrun.")
    p.add_argument("--config", help="JSON recipe (e.g. training/ddpm_cifar10.json); flags override it")
    p.add_argument("--init-from", dest="init_from", help="start from an inference weights folder or Hub repo id")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "drift":
            for g in dataclasses.fields(DriftConfig):
                p.add_argument(f"--drift-{g.name.replace('_', '-')}", dest=f"drift.{g.name}", type=json_or_str, default=None,
                               help=f"drift option (JSON value), default {g.default!r}")
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=json.loads if f.name in ("betas",) or f.type in ("bool",) else None, default=None)
    a = vars(p.parse_args(argv))
    init_from = a.pop("init_from")
    base = json.loads(Path(a.pop("config")).read_text()) if a.get("config") else {}
    drift = dict(base.pop("drift", {}))
    for k, v in a.items():
        if v is None:
            continue
        if k.startswith("drift."):
            drift[k[6:]] = v
        else:
            typ = type(getattr(TrainConfig(), k))
            base[k] = v if typ in (bool, tuple) else typ(v)
    return from_dict(TrainConfig, {**base, "drift": drift}), init_from


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        p = argparse.ArgumentParser(description="export a run's EMA weights as safetensors + config.json")
        p.add_argument("run_dir")
        p.add_argument("folder")
        a = p.parse_args(argv[1:])
        print(export(a.run_dir, a.folder))
        return
    cfg, init_from = parse_args(argv)
    try:
        train(cfg, init_from=init_from)
    finally:
        dist.cleanup()


if __name__ == "__main__":
    main()
