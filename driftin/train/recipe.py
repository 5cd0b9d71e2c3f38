"""The training recipe: TrainConfig (what a run is a function of) and the learning-rate schedule."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import from_dict, preset
from ..drift.objective import DriftConfig


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# the modes whose compiled graphs run as CUDA graphs (inductor's triton.cudagraphs), each with the same mode minus graphs
CUDAGRAPH_MODES = {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}


def uses_cudagraphs(mode: str) -> bool:
    """Whether torch.compile(mode=mode) replays its graphs as CUDA graphs."""
    return mode in CUDAGRAPH_MODES


def without_cudagraphs(mode: str) -> str:
    """`mode` minus CUDA graphs (a COMPILE_MODES name, as torch.compile takes it)."""
    return CUDAGRAPH_MODES.get(mode, mode)


def compile_kwargs(mode: str, force_layout: bool = False) -> dict:
    """torch.compile's keyword arguments for `mode` (a COMPILE_MODES name). force_layout: inductor's layout
    optimisation (channels-last activations around convolutions) in every graph. Inductor decides it per graph from
    the graph's aten.convolution nodes, and a backward graph has none (only convolution_backward), so it is off there:
    the backward's pointwise kernels may write NCHW gradients that each convolution backward converts to NHWC again
    (pytorch/pytorch#189239; forcing it took the drift step's copies from 15% to 9% of its device time, +5.7% img/s).
    torch.compile takes a mode or inductor options, not both, so the mode's own options go along."""
    if not force_layout:
        return {"mode": mode}
    from torch._inductor import list_mode_options

    return {"options": {**list_mode_options(mode), "force_layout_optimization": True}}


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
    # (FIRST, END): the learning rate falls linearly from lr at step FIRST to 0 at step END (a cool-down; 0 after END).
    # At a constant rate the drift chain's FID-10k curve went flat (block 10, training/chains/README.md). Absolute
    # steps, not "the last N of `steps`", so `steps` still decides only where a run stops: a chain block cut short by
    # its minutes is reproduced by its end step. () keeps the rate constant, as every block before the cool-down ran
    lr_decay: tuple[int, ...] = ()
    grad_clip: float = 1.0
    ema_decay: float = 0.9995
    # more EMA decays tracked beside ema_decay, for choosing the averaging length after training (it moves FID and no
    # recipe measured it): kept in checkpoints, exported with `export --ema-decay D`; snapshots hold ema_decay's only
    ema_extra: tuple[float, ...] = ()
    bf16: bool = True
    compile: bool = False
    compile_mode: str = "default"  # torch.compile mode (COMPILE_MODES); "reduce-overhead" and "max-autotune" use CUDA graphs
    channels_last: bool = True  # NHWC model and inputs on CUDA (ignored elsewhere)
    compile_force_layout: bool = False  # inductor's layout optimisation in backward graphs too (compile_kwargs)
    compile_field: bool = False  # drift: its field loss compiled too, one graph per feature map (DriftLoss.compile)
    # CUDA only (trainer.set_backends): cuDNN times each convolution's algorithms on first use and keeps the fastest;
    # training shapes are fixed, so the search is paid once (issue #17). Off until measured on a GPU; its pick
    # depends on timings, so on a GPU a resumed run with it on may not be bit-exact
    cudnn_benchmark: bool = False
    # in the UNet's residual blocks while training (the DDPM paper's CIFAR-10 model: 0.1); its masks come from torch's
    # global RNG, whose CUDA state a resume does not restore, so on a GPU a resumed run with dropout is not bit-exact
    dropout: float = 0.0
    seed: int = 0
    log_every: int = 100
    sample_every: int = 2000
    ckpt_every: int = 1000
    snapshot_every: int = 0  # >0: EMA as an inference folder <out>/snapshots/step_XXXXXXX every this many steps
    out: str = "runs/ddpm"
    drift: DriftConfig = field(default_factory=DriftConfig)

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        extra = self.ema_extra if isinstance(self.ema_extra, (list, tuple)) else (self.ema_extra,)  # `--ema-extra 0.9998`
        if any(not 0 < float(d) < 1 for d in extra):
            raise ValueError(f"ema_extra {tuple(extra)}: every decay must be in (0, 1)")
        # ema_decay itself and repeats are dropped: they are kept already (so one list can serve arms with other decays)
        object.__setattr__(self, "ema_extra", tuple(dict.fromkeys(float(d) for d in extra if float(d) != self.ema_decay)))
        if isinstance(self.drift, dict):
            object.__setattr__(self, "drift", from_dict(DriftConfig, self.drift))
        if self.objective not in ("ddpm", "drift"):
            raise ValueError(f"objective must be 'ddpm' or 'drift', got {self.objective!r}")
        decay = tuple(self.lr_decay) if isinstance(self.lr_decay, (list, tuple)) else self.lr_decay
        steps = isinstance(decay, tuple) and len(decay) == 2 and all(type(v) is int and v >= 0 for v in decay)  # no bools
        if decay != () and not (steps and decay[0] < decay[1]):
            raise ValueError(f"lr_decay {decay!r}: must be () or two steps (FIRST, END) with 0 <= FIRST < END")
        object.__setattr__(self, "lr_decay", decay)
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")

    def model_config(self):
        drift = self.objective == "drift"
        return preset(self.preset, num_classes=self.num_classes if self.class_cond else 0, dropout=self.dropout,
                      guidance_input=drift and self.class_cond and self.drift.cfg_max > 1.0,
                      zero_init_out=not drift)  # zero-init output makes every drift sample identical


def lr_at(step: int, cfg: TrainConfig, start: int = 0) -> float:
    """The learning rate of `step` (0-based): linear warmup from `start` (a run initialised from weights warms its
    fresh optimizer up again), constant, then with lr_decay = (FIRST, END) a linear fall to 0 at END (step END - 1
    runs at lr / (END - FIRST)). Both are ramps to or from 0, so the lower of the two is the rate."""
    warm = (step - start + 1) / max(1, cfg.warmup)
    decay = (cfg.lr_decay[1] - step) / (cfg.lr_decay[1] - cfg.lr_decay[0]) if cfg.lr_decay else 1.0
    return cfg.lr * max(0.0, min(1.0, warm, decay))
