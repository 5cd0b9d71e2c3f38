"""The sampling math both paths share: per-seed noise, classifier-free guidance, the DDIM coefficient table
and update, and the eager samplers.

generate() (the API) and fast.py (compiled / CUDA-graph path) both build on this module, so a change to how
noise is drawn, how guidance mixes, or how DDIM steps is made once and the two paths cannot drift apart.
Depends only on the schedule in diffusion.py.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch

from .diffusion import T, alphas_cumprod, ddim_timesteps

# Offsets that give the DDIM eta noise and the style draws of sample i their own streams, apart from its x_T.
STEP_NOISE_OFFSET = 1_000_003
STYLE_OFFSET = 2_000_003


# ---------------------------------------------------------------------------------------------- noise
def seed_list(n: int | None, seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int):
        if n is None:
            raise ValueError("give n with a single seed, or a list of seeds")
        return list(range(seeds, seeds + n))
    seeds = [int(s) for s in seeds]
    if n is not None and n != len(seeds):
        raise ValueError(f"n={n} but {len(seeds)} seeds given")
    return seeds


def make_noise(seeds: Sequence[int], shape: tuple[int, ...], device=None) -> torch.Tensor:
    """Per-sample noise: sample i depends on seeds[i] alone (same image at any batch size or device)."""
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)


def step_noise(seeds: Sequence[int], like: torch.Tensor):
    """Fresh per-sample noise for DDIM with eta > 0, continuing each sample's own generator."""
    gens = [torch.Generator().manual_seed(s + STEP_NOISE_OFFSET) for s in seeds]
    return lambda i: torch.stack([torch.randn(like.shape[1:], generator=g) for g in gens]).to(like.device)


def predraw_noise(seeds: Sequence[int], steps: int, shape) -> torch.Tensor:
    """[steps-1, n, C, H, W]: all of step_noise's draws at once (the fast path keeps them in a static buffer)."""
    draw = step_noise(seeds, torch.empty(len(seeds), *shape))
    return torch.stack([draw(i) for i in range(steps - 1)])


def labels_tensor(class_labels, n: int, num_classes: int, device) -> torch.Tensor | None:
    """Class labels as a long tensor [n] (a single label is repeated), checked against num_classes."""
    if class_labels is None:
        return None
    if not num_classes:
        raise ValueError("class_labels given, but this model is unconditional (num_classes=0)")
    y = torch.as_tensor(class_labels, dtype=torch.long).flatten()
    y = y.expand(n) if y.numel() == 1 else y
    if y.numel() != n:
        raise ValueError(f"{y.numel()} class labels for {n} samples")
    if (y < 0).any() or (y >= num_classes).any():
        raise ValueError(f"class labels must be in [0, {num_classes - 1}]")
    return y.to(device)


def style_for_seeds(net, seeds: Sequence[int]) -> torch.Tensor:
    """Style indices [n, tokens] where row i depends on seeds[i] alone (its own generator, offset from the noise's)."""
    return torch.cat([net.random_style(1, torch.Generator().manual_seed(s + STYLE_OFFSET)) for s in seeds])


# ---------------------------------------------------------------------------------------------- guidance
def cfg_mix(e_cond: torch.Tensor, e_uncond: torch.Tensor, guidance) -> torch.Tensor:
    """Classifier-free guidance: eps_u + g (eps_c - eps_u) (g a float or a device scalar)."""
    return e_uncond + guidance * (e_cond - e_uncond)


def check_guidance_interval(interval, method: str | None = None) -> tuple[int, int] | None:
    """None, or (lo, hi): the DDPM timesteps 0 <= lo <= hi <= 999 between which DDIM applies guidance. With the
    sampling method: refused for any but "ddim"."""
    if interval is None:
        return None
    if method is not None and method != "ddim":
        raise ValueError("guidance_interval is a DDIM setting (drift's guidance is one input of its single step)")
    try:
        if isinstance(interval, (str, bytes)) or any(int(v) != v for v in interval):
            raise TypeError
        lo, hi = (int(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(f"guidance_interval must be two integer timesteps (lo, hi), got {interval!r}") from None
    if not 0 <= lo <= hi <= T - 1:
        raise ValueError(f"guidance_interval must satisfy 0 <= lo <= hi <= {T - 1}, got ({lo}, {hi})")
    return lo, hi


def in_interval(t: int, interval: tuple[int, int] | None) -> bool:
    """Whether DDIM guides timestep t: every t without an interval, else lo <= t <= hi."""
    return interval is None or interval[0] <= t <= interval[1]


def guidance_at(t: int, guidance: float, interval: tuple[int, int] | None) -> float:
    """The CFG scale at timestep t: guidance inside the interval, 1 (the conditional prediction) outside it.
    Guidance only where the noise is neither high nor low (Kynkäänniemi et al. 2024, "Applying guidance in a
    limited interval") keeps the sample's layout and fine detail unguided, so a stronger scale costs less diversity."""
    return guidance if in_interval(t, interval) else 1.0


def eps_fn(net, y, guidance: float, interval: tuple[int, int] | None = None):
    """Noise predictor eps(x_t, t) with classifier-free guidance: conditional and null label in one batched call
    (only the conditional call at steps outside the guidance interval)."""
    if y is None or guidance == 1.0:
        return lambda x, t: net(x, t, y)
    null = torch.full_like(y, net.config.num_classes)

    def guided(x, t):
        # one timestep per call; reading it is a host sync, so only where an interval needs it (the reference path)
        g = guidance if interval is None else guidance_at(int(t[0]), guidance, interval)
        if g == 1.0:
            return net(x, t, y)
        e_c, e_u = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        return cfg_mix(e_c, e_u, g)

    return guided


# ---------------------------------------------------------------------------------------------- DDIM
@functools.lru_cache(maxsize=64)
def ddim_coefficients(steps: int, eta: float, spacing: str = "uniform"):
    """(ts, coefs [steps, 8] fp32, sigmas): per step [sqrt(a_t), sqrt(1-a_t), sqrt(a_prev), sqrt(1-a_prev-sigma^2),
    sigma, 0, 0, 0] (padded to 8 for aligned device copies); sigmas[i] is the float noise scale after step i
    (0 for the last step and for eta = 0). Computed once on the CPU, in fp32 from the fp64 schedule."""
    abar = alphas_cumprod()
    ts = ddim_timesteps(steps, spacing=spacing)
    rows, sigmas = [], []
    zero = torch.tensor(0.0)
    for i, t in enumerate(ts):
        a_t = abar[t].float()
        a_prev = abar[ts[i + 1]].float() if i + 1 < len(ts) else torch.tensor(1.0)
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
        rows.append(torch.stack([a_t.sqrt(), (1 - a_t).sqrt(), a_prev.sqrt(),
                                 (1 - a_prev - sigma**2).clamp(min=0).sqrt(), sigma, zero, zero, zero]))
        sigmas.append(float(sigma) if eta > 0 and i + 1 < len(ts) else 0.0)
    return tuple(ts), torch.stack(rows).float(), tuple(sigmas)


def ddim_update(x: torch.Tensor, eps: torch.Tensor, c, clip: bool = True):
    """One deterministic DDIM step with coefficient row c: (x_prev without the eta noise, x0 prediction)."""
    x0 = (x - c[1] * eps) / c[0]
    if clip:
        x0 = x0.clamp(-1, 1)
        eps = (x - c[0] * x0) / c[1]  # keep eps consistent with the clipped x0
    return c[2] * x0 + c[3] * eps, x0


@torch.no_grad()
def ddim_sample(
    eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    steps: int = 50,
    eta: float = 0.0,
    step_noise: Callable[[int], torch.Tensor] | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    clip: bool = True,
    spacing: str = "uniform",
) -> torch.Tensor:
    """DDIM (Song et al.) from x_T = noise to x_0.

    eps_fn(x_t, t) predicts the noise (classifier-free guidance lives in eps_fn);
    step_noise(i) gives the fresh noise for step i when eta > 0 (so callers control seeds);
    callback(i, x_t, x0_pred) sees every intermediate frame.
    """
    ts, coefs, _ = ddim_coefficients(steps, float(eta), spacing)
    coefs = coefs.to(noise.device)
    x = noise.float()
    for i, t in enumerate(ts):
        c = coefs[i]
        eps = eps_fn(x, torch.full((x.shape[0],), t, device=x.device)).float()
        x, x0 = ddim_update(x, eps, c, clip)
        if eta > 0 and i + 1 < len(ts):
            x = x + c[4] * step_noise(i)
        if callback is not None:
            callback(i, x, x0)
    return x


# ---------------------------------------------------------------------------------------------- eager sampling
def drift_alpha(net, n: int, guidance: float, device) -> torch.Tensor | None:
    """The drift generator's guidance input alpha [n], or None for a model without one (then guidance must be 1)."""
    if net.config.guidance_input:
        return torch.full((n,), float(guidance), device=device)
    if guidance != 1.0:
        raise ValueError("this drift model has no guidance input; use guidance=1")
    return None


def eager_sample(net, noise, method, steps=50, y=None, guidance=1.0, eta=0.0, noise_fn=None, callback=None,
                 style=None, spacing="uniform", guidance_interval=None) -> torch.Tensor:
    """The reference sampler: x [n, C, H, W] float32 in about [-1, 1] (not yet clamped). noise_fn(i) gives DDIM's
    eta > 0 noise for step i; style: the drift generator's style indices, if it takes them; spacing: DDIM's
    sub-sequence (diffusion.ddim_timesteps); guidance_interval: DDIM's guided timesteps (check_guidance_interval)."""
    if method == "drift":
        alpha = drift_alpha(net, noise.shape[0], guidance, noise.device)
        return net(noise, None, y, alpha, **({"style": style.to(noise.device)} if style is not None else {})).float()
    if style is not None:
        raise ValueError("DDIM sampling of a model with style embeddings is not supported (styles are a drift-generator input)")
    return ddim_sample(eps_fn(net, y, guidance, guidance_interval), noise, steps, eta, noise_fn, callback, spacing=spacing)
