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
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import distributed as dist
from .checkpoint import load_checkpoint, save_checkpoint
from .config import from_dict, preset
from .data import DeviceData, global_batch, load_dataset, to_model_range
from .diffusion import DDPMLoss, unwrap
from .drift.objective import DriftConfig
from .unet import UNet, count_params

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


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
    compile_mode: str = "default"  # torch.compile mode: "default" | "reduce-overhead" (CUDA graphs) | "max-autotune"...
    channels_last: bool = True  # NHWC model and inputs on CUDA (ignored elsewhere)
    seed: int = 0
    log_every: int = 100
    sample_every: int = 2000
    ckpt_every: int = 1000
    snapshot_every: int = 0  # >0: EMA as an inference folder <out>/snapshots/step_XXXXXXX every this many steps
    out: str = "runs/ddpm"
    drift: DriftConfig = field(default_factory=DriftConfig)

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        if isinstance(self.drift, dict):
            object.__setattr__(self, "drift", from_dict(DriftConfig, self.drift))
        if self.objective not in ("ddpm", "drift"):
            raise ValueError(f"objective must be 'ddpm' or 'drift', got {self.objective!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")

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
def ema_update(ema, model, decay: float, foreach: bool = True):
    ep, mp = list(ema.parameters()), [p.detach() for p in model.parameters()]
    if foreach:
        torch._foreach_lerp_(ep, mp, 1 - decay)  # one fused launch over all parameters instead of one per tensor
    else:
        for e, p in zip(ep, mp):
            e.lerp_(p, 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def make_objective(cfg: TrainConfig, device):
    if cfg.objective == "ddpm":
        return DDPMLoss()
    from .drift.objective import DriftLoss

    return DriftLoss(cfg.drift, device, num_classes=cfg.num_classes if cfg.class_cond else 0)


@dataclass(frozen=True)
class StepOptions:
    """How a step runs, not what it computes: the trainer's fast path, or the naive baseline the bench compares with."""

    compile: bool = False
    compile_mode: str = "default"
    fused_optimizer: bool = True  # AdamW fused=True on CUDA, foreach=True elsewhere; False: a loop over parameters
    foreach_ema: bool = True  # one _foreach_lerp_ over all parameters; False: a loop
    device_data: bool = True  # dataset, class pools, indices and flips on the device; False: drawn on the CPU, then copied
    channels_last: bool = False  # NHWC model and inputs
    sync_every_step: bool = False  # read the loss on the host every step (what a naive loop does)

    @classmethod
    def for_config(cls, cfg: TrainConfig, device) -> StepOptions:
        cuda = torch.device(device).type == "cuda"
        return cls(compile=cfg.compile, compile_mode=cfg.compile_mode, channels_last=cfg.channels_last and cuda)

    @classmethod
    def naive(cls) -> StepOptions:
        """A plain eager step: no compile, per-parameter AdamW and EMA, CPU data, a host sync every step."""
        return cls(fused_optimizer=False, foreach_ema=False, device_data=False, sync_every_step=True)


class Trainer:
    """Model, EMA, optimizer, objective and data of one run, and step(): the one training step,
    used by train() and timed as is by `python -m driftin.bench train`."""

    def __init__(self, cfg: TrainConfig, device, images: torch.Tensor, labels: torch.Tensor, opts: StepOptions | None = None):
        self.cfg, self.device = cfg, torch.device(device)
        self.opts = opts or StepOptions.for_config(cfg, self.device)
        self.rank, self.world = dist.rank(), dist.world()
        if cfg.batch_size % self.world:
            raise ValueError(f"global batch {cfg.batch_size} is not divisible by world size {self.world}")
        self.local_bs = cfg.batch_size // self.world
        cuda = self.device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(cfg.seed)
        model = UNet(cfg.model_config()).to(self.device)
        if self.opts.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = copy.deepcopy(model).requires_grad_(False)
        if not self.opts.fused_optimizer:
            self.opt_flags = {"foreach": False, "fused": None}
        else:
            self.opt_flags = {"foreach": None, "fused": True} if cuda else {"foreach": True, "fused": None}
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **self.opt_flags)
        self.objective = make_objective(cfg, self.device)
        if hasattr(self.objective, "attach_data"):  # drift's fresh unconditional samples come from the same dataset
            self.objective.attach_data(images, labels)
        kw = self.objective.batch_kwargs() if hasattr(self.objective, "batch_kwargs") else {}
        self.batch_classes = kw.get("num_classes", 0)  # drift: class-balanced, class-sorted batches
        if self.opts.device_data:
            self.data = DeviceData(images, labels, self.device, self.batch_classes)
        else:
            self.images, self.labels = images.cpu(), labels.cpu()
        self.warm_start = 0  # the step the LR warmup (re)starts from
        self.net = None  # the model as the objective calls it (DDP and/or compiled); built by prepare()
        self.compiled = self.compile_ok = False
        self.compile_error: str | None = None  # why compiling failed and the step fell back to eager
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=self.device)  # first step with a non-finite loss/grad

    # ---------------------------------------------------------------- state
    def load_state(self, state: dict) -> None:
        """Model, EMA, optimizer and LR warmup start from a checkpoint (as load_checkpoint returns it)."""
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.load_optimizer(state["optimizer"])
        self.warm_start = int(state.get("meta", {}).get("warm_start", 0))
        if state.get("objective") and hasattr(self.objective, "load_state_dict"):  # drift's sample queues
            # buffers go back to the device, fill counters (scalars) stay on the CPU where the objective keeps them
            self.objective.load_state_dict({k: v.to(self.device) if v.dim() else v for k, v in state["objective"].items()})

    def objective_state(self) -> dict | None:
        return self.objective.state_dict() if hasattr(self.objective, "state_dict") else None

    def load_optimizer(self, sd: dict) -> None:
        self.opt.load_state_dict(sd)
        # the saved groups carry the writer's fused/foreach flags; a checkpoint moves between CPU and GPU, keep ours
        fused = bool(self.opt_flags["fused"])
        for g in self.opt.param_groups:
            g.update(self.opt_flags)
        for p, st in self.opt.state.items():
            for k, v in list(st.items()):
                if k == "step":  # fused AdamW keeps the step count on the device, the others on the CPU
                    st[k] = v.to(device=p.device if fused else "cpu", dtype=torch.float32, copy=True)  # never shared with the source
                elif torch.is_tensor(v) and v.shape == p.shape:
                    st[k] = torch.empty_like(p).copy_(v)  # same layout as the parameter (channels_last)

    def init_from(self, path_or_repo: str) -> dict:
        """Model and EMA from an inference weights folder; returns its meta. The optimizer stays fresh and
        the warmup restarts at the recorded step."""
        from .hub import load_pretrained

        src = load_pretrained(path_or_repo, config=unwrap(self.model).config)
        meta = dict(getattr(src, "meta", {}))
        if meta.get("objective") not in (None, self.cfg.objective):
            raise ValueError(f"{path_or_repo} holds {meta['objective']!r} weights; this run trains {self.cfg.objective!r}")
        sd = src.state_dict()
        self.model.load_state_dict(sd)
        self.ema.load_state_dict(sd)
        self.warm_start = int(meta.get("steps", 0))
        return meta

    # ---------------------------------------------------------------- one step
    def lr(self, step: int) -> float:
        return lr_at(step, self.cfg, self.warm_start)

    def batch_indices(self, step: int):
        """Global-batch image indices and flip mask of a step, drawn on the device from (seed, step)."""
        gen = torch.Generator(self.device).manual_seed(self.cfg.seed * 7919 + step)
        return self.data.indices(self.cfg.batch_size, gen)

    def batch(self, step: int) -> dict:
        cfg = self.cfg
        sl = slice(self.rank * self.local_bs, (self.rank + 1) * self.local_bs)
        if self.opts.device_data:
            idx, mask = self.batch_indices(step)
            x_u8, y = self.data.gather(idx[sl], mask[sl])  # only this rank's rows are gathered
        else:  # the naive path: per-class index pools and draws on the CPU, then a host-to-device copy
            x_u8, y = global_batch(self.images, self.labels, cfg.batch_size, torch.Generator().manual_seed(cfg.seed * 7919 + step),
                                   num_classes=self.batch_classes)
            x_u8, y = x_u8[sl].to(self.device), y[sl].to(self.device)
        x = to_model_range(x_u8)
        if self.opts.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return {"x": x, "y": y if cfg.class_cond else None, "rng": StepRandom(cfg.seed, step, self.device), "step": step}

    def prepare(self) -> None:
        """Wrap the model for DDP and compile; called by the first step (after any weights were loaded)."""
        if self.net is not None:
            return
        net = self.model
        if self.world > 1:
            cuda = self.device.type == "cuda"
            net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[self.device.index] if cuda else None)
        self.plain_net = self.net = net
        if self.opts.compile:
            mode = None if self.opts.compile_mode == "default" else self.opts.compile_mode
            if self.world == 1 and isinstance(self.objective, DDPMLoss):
                self.objective.compile(mode=mode)  # the whole DDPM loss (noising, model, MSE) as one graph
            else:
                self.net = torch.compile(net, mode=mode)
            self.compiled = True

    def _forward_backward(self, batch: dict):
        if self.compiled and "reduce-overhead" in self.opts.compile_mode:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may be overwritten
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            loss, logs = self.objective(self.net, batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss, logs

    def _eager_again(self, err: Exception) -> None:
        self.compile_error = f"{type(err).__name__}: {' '.join(str(err).split())}"[:500]  # one line, with the cause
        dist.print0(f"warning: the compiled step failed ({self.compile_error}); continuing eager "
                    "(set DRIFTIN_COMPILE_STRICT=1 to raise instead, or --compile false)")
        self.net = self.plain_net
        if isinstance(self.objective, DDPMLoss):
            self.objective.compile(False)
        self.compiled = False

    def step(self, step: int):
        """One optimisation step at `step`: (loss, logs, grad_norm), all still on the device."""
        self.prepare()
        cfg = self.cfg
        batch = self.batch(step)
        lr = self.lr(step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        try:
            loss, logs = self._forward_backward(batch)
        except Exception as e:  # noqa: BLE001 - compile errors surface at the first call; nothing was updated yet
            if not self.compiled or self.compile_ok or os.environ.get("DRIFTIN_COMPILE_STRICT", "0") == "1":
                raise
            self._eager_again(e)
            loss, logs = self._forward_backward(self.batch(step))  # a fresh batch: the same draws, from (seed, step)
        self.compile_ok = True
        if self.opts.sync_every_step and not torch.isfinite(loss).all():
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        ema_update(self.ema, self.model, cfg.ema_decay, foreach=self.opts.foreach_ema)
        # remember the first bad step on the device: reading it here would stall the host every step
        ok = torch.isfinite(loss.detach()) & torch.isfinite(gnorm)
        self.first_bad = torch.where(ok | (self.first_bad >= 0), self.first_bad, step)
        return loss, logs, gnorm

    def check_finite(self, last_good: str) -> None:
        """Raise if any step so far had a non-finite loss or gradient (a host sync: call it where the host reads anyway)."""
        bad = int(dist.all_reduce_max_(self.first_bad.clone()))
        if bad >= 0:
            raise FloatingPointError(f"non-finite loss (or gradient norm) at step {bad}; weights after it are not usable. "
                                     f"{last_good} (lower --lr or raise --warmup, then resume)")


# -------------------------------------------------------------------- the loop
def weights_meta(config: dict, step: int, images_seen: int, chain: list, train_args: list[str] | None = None) -> dict:
    """What an inference folder records about its training: the next block starts from these. train_args: the
    command-line arguments of `driftin.train` that ran it, recorded as given (the card shows them as they were)."""
    meta = {"objective": config["objective"], "steps": int(step), "images_seen": int(images_seen),
            "chain": chain, "train_config": config}
    if train_args is not None:
        meta["train_args"] = list(train_args)
    return meta


def train(cfg: TrainConfig, stop_after: int | None = None, quiet: bool = False, init_from: str | None = None,
          max_minutes: float | None = None, train_args: list[str] | None = None) -> dict:
    """Run (or resume) training; returns the final state. stop_after: halt at that step (for tests).

    init_from: an inference weights folder (or Hub id) to start from when there is no checkpoint:
    model and EMA take its weights, the step count and images seen continue from its meta (so do the
    LR schedule and the data order, both functions of the step), the optimizer starts fresh with a new
    warmup, and a {"event": "boundary"} record goes into log.jsonl. This is how a run continues on a
    new machine from committed weights. max_minutes: stop cleanly (checkpoint) at the first log step
    after this much wall time, so a block ends before its lease does. train_args: the command-line arguments
    of this invocation, recorded in checkpoints and weights folders (main() passes them)."""
    device = dist.init()
    out = Path(cfg.out)
    images, labels = load_dataset(cfg.data, "train")
    tr = Trainer(cfg, device, images, labels)
    model, ema = tr.model, tr.ema
    config = dataclasses.asdict(cfg)

    start, ckpt, boundary = 0, out / "checkpoint.pt", None
    images_seen, chain, last_good = 0, [], None
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        if state["config"] != json.loads(json.dumps(config)):
            diff = sorted(k for k, v in config.items() if json.loads(json.dumps(v)) != state["config"].get(k))
            dist.print0(f"note: resuming {ckpt} with changed config keys {diff}")
        tr.load_state(state)
        torch.set_rng_state(state["rng_cpu"])
        start, meta = state["step"], state["meta"]
        images_seen = int(meta.get("images_seen", start * state["config"].get("batch_size", cfg.batch_size)))
        chain, last_good = meta.get("chain", []), start
        dist.print0(f"resumed from {ckpt} at step {start}")
    elif init_from:
        meta = tr.init_from(init_from)
        start = tr.warm_start
        images_seen = int(meta.get("images_seen", start * meta.get("train_config", {}).get("batch_size", cfg.batch_size)))
        chain = list(meta.get("chain", [])) + [{"step": start, "images_seen": images_seen, "init_from": str(init_from)}]
        boundary = {"event": "boundary", "step": start, "images_seen": images_seen, "init_from": str(init_from),
                    "warmup_from": start, "warmup": cfg.warmup, "batch_size": cfg.batch_size,
                    "source_batch_size": meta.get("train_config", {}).get("batch_size")}
        dist.print0(f"initialised from {init_from} (step {start}, {images_seen:,} images seen); optimizer and warmup start fresh")

    def run_meta():
        meta = {"warm_start": tr.warm_start, "images_seen": images_seen, "chain": chain}
        return meta if train_args is None else {**meta, "train_args": list(train_args)}

    def good():
        return (f"The last good checkpoint is {ckpt} (step {last_good})" if last_good is not None
                else f"No checkpoint was saved before it ({ckpt} does not hold a good state)")

    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        dist.print0(f"{cfg.objective} | {cfg.preset} {count_params(model) / 1e6:.1f}M params | world {tr.world} | "
                    f"global batch {cfg.batch_size} | {device}")

    last = stop_after if stop_after is not None else cfg.steps
    bar = None
    if dist.is_main() and not quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=last, initial=start, dynamic_ncols=True)
    log_file = open(out / "log.jsonl", "a") if dist.is_main() else None
    if boundary and log_file:
        log_file.write(json.dumps(boundary) + "\n")
        log_file.flush()
    t_begin = t0 = time.time()
    seen, done, checked = 0, start, -1
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def check(at):
        nonlocal checked
        if checked != at:  # one host sync per step at most, however many reasons to check
            tr.check_finite(good())
            checked = at

    for step in range(start, last):
        loss, logs, gnorm = tr.step(step)
        seen += cfg.batch_size
        images_seen += cfg.batch_size
        done = step + 1
        if bar is not None:
            bar.update(1)
        stop = False
        if done % cfg.log_every == 0 or done == last:
            check(done)
            elapsed = time.time() - t0
            # an objective may log its loss unscaled (drift multiplies the backward loss by the world size)
            shown = logs.pop("loss", loss).detach()
            rec = {"step": done, "loss": dist.all_reduce_mean(float(shown), device), "grad_norm": float(gnorm),
                   "lr": tr.lr(step), "img_per_s": seen / max(elapsed, 1e-9), "images_seen": images_seen,
                   "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0,
                   **{k: float(v) for k, v in logs.items()}}
            if log_file:
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.4f}", img_s=f"{rec['img_per_s']:.0f}")
            if max_minutes:  # every rank must agree, or the ones that go on would wait for the others forever
                over = torch.tensor(float(time.time() - t_begin >= 60 * max_minutes), device=device)
                stop = bool(dist.all_reduce_max_(over)) and done < last
            t0, seen = time.time(), 0
        final = done == last or stop
        if done % cfg.ckpt_every == 0 or final:
            check(done)  # never write a checkpoint over the last good one with broken weights
            if dist.is_main():
                save_checkpoint(ckpt, model=model, ema=ema, optimizer=tr.opt, step=done, config=config, meta=run_meta(),
                                objective=tr.objective_state())
            last_good = done
        if cfg.snapshot_every and done % cfg.snapshot_every == 0:
            check(done)
            if dist.is_main():
                save_snapshot(ema, out, weights_meta(config, done, images_seen, chain, train_args))
        if dist.is_main() and cfg.sample_every and (done % cfg.sample_every == 0 or final):
            save_grid(ema, cfg, out / f"samples_{done:07d}.png")
        if stop:
            dist.print0(f"stopping at step {done}: the {max_minutes} min limit is reached; re-run the same command to resume")
            break
    if bar is not None:
        bar.close()
    if log_file:
        log_file.close()
    dist.barrier()
    return {"model": model, "ema": ema, "optimizer": tr.opt, "step": done, "images_seen": images_seen, "trainer": tr}


def save_snapshot(ema, out: Path, meta: dict) -> Path:
    """The EMA as an inference folder <out>/snapshots/step_XXXXXXX (loads with driftin.hub.load_pretrained)."""
    from .hub import save_pretrained

    return save_pretrained(ema, Path(out) / "snapshots" / f"step_{meta['steps']:07d}", meta)


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
    run = state["meta"]
    seen = run.get("images_seen", state["step"] * cfg.batch_size)  # checkpoints before images_seen was recorded
    return save_pretrained(model, folder, weights_meta(state["config"], state["step"], seen, run.get("chain", []),
                                                       run.get("train_args")))


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
    p = argparse.ArgumentParser(description="Train a driftin model (DDPM or drift); any world size via torchrun.")
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
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=json.loads if f.name in ("betas",) or f.type in ("bool",) else None, default=None)
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
            base[k] = v if typ in (bool, tuple) else typ(v)
    return from_dict(TrainConfig, {**base, "drift": drift}), run


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        p = argparse.ArgumentParser(description="export a run's EMA weights as safetensors + config.json")
        p.add_argument("run_dir")
        p.add_argument("folder")
        a = p.parse_args(argv[1:])
        print(export(a.run_dir, a.folder))
        return
    cfg, run = parse_args(argv)
    try:
        train(cfg, init_from=run.init_from, max_minutes=run.max_minutes, train_args=list(argv))
    finally:
        dist.cleanup()


if __name__ == "__main__":
    main()
