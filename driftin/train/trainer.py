"""One training step: per-step random draws, the objective, EMA, and the Trainer that runs a step on any world size."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch

from .. import distributed as dist
from ..checkpoint import ema_key, saved_emas
from ..data import STREAMS, DeviceData, global_batch, stream_seed, to_model_range
from ..diffusion import DDPMLoss, unwrap
from ..unet import UNet
from .recipe import TrainConfig, compile_kwargs, lr_at, uses_cudagraphs, without_cudagraphs


class StepRandom:
    """Random draws of one step: made at global size from a (seed, step) generator, then sliced to this rank."""

    def __init__(self, seed: int, step: int, device):
        self.seed = self.base_seed(seed, step)
        self.gen = torch.Generator(device).manual_seed(self.seed)
        self.device, self.r, self.w = device, dist.rank(), dist.world()

    @staticmethod
    def base_seed(seed: int, step: int) -> int:
        """The step's own seed (noise, timesteps, guidance); other kinds of draws mix it with a stream id (stream)."""
        return seed * 1_000_003 + step

    def stream(self, kind: str, device=None) -> torch.Generator:
        """A fresh generator for one kind of draw of this step (data.STREAMS: the batch's images, the drift queues),
        on `device` (default: the step's device; a CPU draw for device data would need a blocking host-to-device
        copy every step). Seeded with stream_seed(step seed, stream id): the same on every rank, and unrelated to
        self.gen and to the other kinds (equal seeds give equal bits: each image would get one fixed timestep)."""
        return torch.Generator(device or self.device).manual_seed(stream_seed(self.seed, STREAMS[kind]))

    def _slice(self, t):
        n = t.shape[0] // self.w
        return t[self.r * n:(self.r + 1) * n]

    def randn(self, *local_shape):
        return self._slice(torch.randn(local_shape[0] * self.w, *local_shape[1:], generator=self.gen, device=self.device))

    def rand(self, n):
        return self._slice(torch.rand(n * self.w, generator=self.gen, device=self.device))

    def randint(self, high, n):
        return self._slice(torch.randint(high, (n * self.w,), generator=self.gen, device=self.device))


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


def set_backends(cfg: TrainConfig, device) -> None:
    """The process-wide backend flags a run trains with, set by every Trainer (so the bench times what train runs);
    on CUDA only: elsewhere they are left as they are."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark  # set either way: a previous Trainer may have turned it on


def make_objective(cfg: TrainConfig, device):
    if cfg.objective == "ddpm":
        return DDPMLoss()
    from ..drift.objective import DriftLoss

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
    force_layout: bool = False  # compiled graphs with inductor's layout optimisation forced on (recipe.compile_kwargs)
    compile_field: bool = False  # drift: the field loss compiled as well (with compile)
    sync_every_step: bool = False  # read the loss on the host every step (what a naive loop does)

    @classmethod
    def for_config(cls, cfg: TrainConfig, device) -> StepOptions:
        cuda = torch.device(device).type == "cuda"
        return cls(compile=cfg.compile, compile_mode=cfg.compile_mode, channels_last=cfg.channels_last and cuda,
                   force_layout=cfg.compile_force_layout, compile_field=cfg.compile_field)

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
        set_backends(cfg, self.device)
        torch.manual_seed(cfg.seed)
        model = UNet(cfg.model_config()).to(self.device)
        if self.opts.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = copy.deepcopy(model).requires_grad_(False)
        self.ema_extra = {d: copy.deepcopy(model).requires_grad_(False) for d in cfg.ema_extra}
        if not self.opts.fused_optimizer:
            self.opt_flags = {"foreach": False, "fused": None}
        else:
            self.opt_flags = {"foreach": None, "fused": True} if cuda else {"foreach": True, "fused": None}
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **self.opt_flags)
        self.objective = make_objective(cfg, self.device)
        if self.opts.channels_last and hasattr(self.objective, "channels_last"):  # drift's encoder sees NHWC images
            self.objective.channels_last()
        kw = self.objective.batch_kwargs() if hasattr(self.objective, "batch_kwargs") else {}
        self.batch_classes = kw.get("num_classes", 0)  # drift: class-balanced, class-sorted batches
        if self.opts.device_data:
            self.data = DeviceData(images, labels, self.device, self.batch_classes)
            images, labels = self.data.images, self.data.labels
        else:
            self.images, self.labels = images.cpu(), labels.cpu()
            images, labels = self.images, self.labels
        if hasattr(self.objective, "attach_data"):  # drift's fresh unconditional samples come from the same dataset:
            self.objective.attach_data(images, labels)  # the device copy, so drawing them needs no host-device copy
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
        saved = saved_emas(state)
        for d, e in self.ema_extra.items():  # by decay (the saved main one included); one not saved starts from the main EMA
            e.load_state_dict(saved.get(ema_key(d), state["ema"]))
        self.load_optimizer(state["optimizer"])
        self.warm_start = int(state.get("meta", {}).get("warm_start", 0))
        if state.get("objective") and hasattr(self.objective, "load_state_dict"):  # drift's sample queues
            self.objective.load_state_dict(state["objective"])

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
        from ..hub import load_pretrained

        src = load_pretrained(path_or_repo, config=unwrap(self.model).config)
        meta = dict(getattr(src, "meta", {}))
        if meta.get("objective") not in (None, self.cfg.objective):
            raise ValueError(f"{path_or_repo} holds {meta['objective']!r} weights; this run trains {self.cfg.objective!r}")
        sd = src.state_dict()
        for m in (self.model, self.ema, *self.ema_extra.values()):
            m.load_state_dict(sd)
        self.warm_start = int(meta.get("steps", 0))
        return meta

    # ---------------------------------------------------------------- one step
    def lr(self, step: int) -> float:
        return lr_at(step, self.cfg, self.warm_start)

    def batch_indices(self, step: int, rng: StepRandom | None = None):
        """Global-batch image indices and flip mask of a step, drawn on the device from the step's "batch" stream
        (rng: the step's StepRandom when the caller has it)."""
        rng = rng or StepRandom(self.cfg.seed, step, self.device)
        return self.data.indices(self.cfg.batch_size, rng.stream("batch"))

    def batch(self, step: int) -> dict:
        cfg = self.cfg
        sl = slice(self.rank * self.local_bs, (self.rank + 1) * self.local_bs)
        rng = StepRandom(cfg.seed, step, self.device)  # the step's one: its batch stream here, the rest in the loss
        if self.opts.device_data:
            idx, mask = self.batch_indices(step, rng)
            x_u8, y = self.data.gather(idx[sl], mask[sl])  # only this rank's rows are gathered
        else:  # the naive path: per-class index pools and draws on the CPU, then a host-to-device copy
            x_u8, y = global_batch(self.images, self.labels, cfg.batch_size, rng.stream("batch", "cpu"),
                                   num_classes=self.batch_classes)
            x_u8, y = x_u8[sl].to(self.device), y[sl].to(self.device)
        x = to_model_range(x_u8)
        if self.opts.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return {"x": x, "y": y if cfg.class_cond else None, "rng": rng}

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
            mode = self.opts.compile_mode
            kwargs = compile_kwargs(mode, self.opts.force_layout)
            if self.world == 1 and isinstance(self.objective, DDPMLoss):
                self.objective.compile(**kwargs)  # the whole DDPM loss (noising, model, MSE) as one graph
            else:
                self.net = torch.compile(net, **kwargs)
                if hasattr(self.objective, "compile") and not isinstance(self.objective, DDPMLoss):
                    # drift: the frozen encoder + feature groups, never as CUDA graphs: it runs several times a
                    # step (generated with grad, real without) and graph outputs would be overwritten in between
                    self.objective.compile(field=self.opts.compile_field,
                                           **compile_kwargs(without_cudagraphs(mode), self.opts.force_layout))
            self.compiled = True

    def _forward_backward(self, batch: dict):
        if self.compiled and uses_cudagraphs(self.opts.compile_mode):
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
        if hasattr(self.objective, "compile"):
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
        for d, e in ((cfg.ema_decay, self.ema), *self.ema_extra.items()):
            ema_update(e, self.model, d, foreach=self.opts.foreach_ema)
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
