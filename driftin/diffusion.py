"""DDPM schedule (linear betas, T=1000), the noise-prediction loss, and the DDIM sampler."""
from __future__ import annotations

from typing import Callable

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


def ddim_timesteps(steps: int, num_steps: int = T) -> list[int]:
    if not 1 <= steps <= num_steps:
        raise ValueError(f"DDIM steps must be in [1, {num_steps}], got {steps}")
    return [int(round(i * num_steps / steps)) for i in range(steps)][::-1]  # uniform spacing, t = 0 included


@torch.no_grad()
def ddim_sample(
    eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    steps: int = 50,
    eta: float = 0.0,
    step_noise: Callable[[int], torch.Tensor] | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """DDIM (Song et al.) from x_T = noise to x_0.

    eps_fn(x_t, t) predicts the noise (classifier-free guidance lives in eps_fn);
    step_noise(i) gives the fresh noise for step i when eta > 0 (so callers control seeds);
    callback(i, x_t, x0_pred) sees every intermediate frame.
    """
    abar = alphas_cumprod().to(noise.device)
    ts = ddim_timesteps(steps)
    x = noise.float()
    for i, t in enumerate(ts):
        a_t = abar[t].float()
        a_prev = abar[ts[i + 1]].float() if i + 1 < len(ts) else torch.tensor(1.0, device=x.device)
        eps = eps_fn(x, torch.full((x.shape[0],), t, device=x.device)).float()
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()  # keep eps consistent with the clipped x0
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0 and i + 1 < len(ts):
            x = x + sigma * step_noise(i)
        if callback is not None:
            callback(i, x, x0)
    return x
