"""DDPM schedule (linear betas, T=1000) and the noise-prediction loss: the diffusion objective.

Sampling from it (DDIM, guidance, noise) is driftin/sampling.py, downstream of this module."""
from __future__ import annotations

import torch
import torch.nn.functional as F

T = 1000


def alphas_cumprod(num_steps: int = T, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al.'s linear schedule, float64 for an accurate cumulative product."""
    betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def ddpm_mse(model, x0, t, noise, abar_t, y):
    """The math of one DDPM loss: noise x0 to x_t, predict the noise, MSE. Pure (no random draws),
    so the trainer can compile it with the model inside as one graph."""
    xt = abar_t.sqrt() * x0 + (1 - abar_t).sqrt() * noise
    return F.mse_loss(model(xt, t, y).float(), noise.float())


class DDPMLoss:
    """loss(model, batch) -> (loss, logs): MSE between the true and predicted noise at a uniform t."""

    def __init__(self, num_steps: int = T, cfg_dropout: float = 0.1):
        self.abar = alphas_cumprod(num_steps).float()
        self.num_steps, self.cfg_dropout = num_steps, cfg_dropout
        self.mse = ddpm_mse
        self._abar_on = {}  # the schedule per device: copying it to the GPU every step would sync the host

    def compile(self, enabled: bool = True, **kwargs):
        """Compile the loss math (model forward included) with torch.compile; enabled=False: back to eager."""
        self.mse = torch.compile(ddpm_mse, **kwargs) if enabled else ddpm_mse

    def __call__(self, model, batch: dict):
        x0, rng = batch["x"], batch["rng"]  # rng: the trainer's per-step, rank-sliced draws
        b, dev = x0.shape[0], x0.device
        t = rng.randint(self.num_steps, b)
        noise = rng.randn(*x0.shape).contiguous(memory_format=torch.contiguous_format)
        if dev not in self._abar_on:
            self._abar_on[dev] = self.abar.to(dev)
        abar_t = self._abar_on[dev][t].view(b, 1, 1, 1)
        y = batch.get("y")
        num_classes = unwrap(model).config.num_classes
        if y is not None and num_classes:
            drop = rng.rand(b) < self.cfg_dropout  # learn the unconditional model too
            y = torch.where(drop, torch.full_like(y, num_classes), y)
        else:
            y = None
        return self.mse(model, x0, t, noise, abar_t, y), {}


def unwrap(model):
    """The plain module inside DDP / torch.compile wrappers."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


DDIM_SPACINGS = ("uniform", "quadratic")


def ddim_timesteps(steps: int, num_steps: int = T, spacing: str = "uniform") -> list[int]:
    """The DDIM sub-sequence, from the noisiest t down to t = 0. "uniform": every num_steps/steps-th step;
    "quadratic": after the DDIM paper's CIFAR-10 sequence (its FID 4.67 at 50 steps), t_i = (i * sqrt(0.8 num_steps) /
    (steps - 1))^2, dense near the data and stopping at 0.8 num_steps; rounded (its code truncates and keeps a repeated
    t = 0), and each t at least one above the previous, so there are always `steps` distinct steps."""
    if not 1 <= steps <= num_steps:
        raise ValueError(f"DDIM steps must be in [1, {num_steps}], got {steps}")
    if spacing not in DDIM_SPACINGS:
        raise ValueError(f"DDIM spacing must be one of {DDIM_SPACINGS}, got {spacing!r}")
    if spacing == "uniform":
        return [int(round(i * num_steps / steps)) for i in range(steps)][::-1]  # t = 0 included
    top = (0.8 * num_steps) ** 0.5
    ts: list[int] = []
    for i in range(steps):
        t = int(round((i * top / max(steps - 1, 1)) ** 2))
        ts.append(max(t, ts[-1] + 1) if ts else t)
    return ts[::-1]
