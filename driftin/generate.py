"""generate(): the one sampling API used by the CLI, the app, evaluation and benchmarks."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .diffusion import DDIM_SPACINGS, unwrap
from .fast import FastOptions, fast_generate
from .sampling import (check_guidance_interval, eager_sample, eps_fn, labels_tensor, make_noise,  # noqa: F401 (re-exported)
                       seed_list, step_noise, style_for_seeds)

METHODS = ("drift", "ddim")


@torch.no_grad()
def generate(
    model,
    n: int | None = None,
    seeds: int | Sequence[int] = 0,
    method: str | None = None,
    steps: int = 50,
    class_labels=None,
    guidance: float = 1.0,
    eta: float = 0.0,
    output: str = "float",
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    device=None,
    fast: "bool | FastOptions" = False,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    spacing: str = "uniform",
    guidance_interval: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Images [n, 3, H, W]: float in [0, 1] (output="float") or uint8 (output="uint8").

    method: "drift" (one forward pass from noise) or "ddim" (steps denoising steps); default from
    the model's meta["objective"]. guidance: CFG scale (1 = none) – for DDIM it mixes conditional
    and unconditional noise predictions, for drift it is the generator's alpha input.
    fast=True uses the compiled / CUDA-graph path where available (same images up to bf16) with the default
    driftin.fast.FastOptions; pass a FastOptions to choose dtype, compile mode, graphs etc.

    Where the starting noise comes from (one of):
    - seeds (default): sample i from its own generator seeded with seeds[i] (batch- and device-independent);
    - noise: the latents x_T themselves, [n, C, H, W] (latent walks, interpolation, your own sampler);
    - generator: a torch.Generator the whole batch is drawn from (torch-style reproducibility; n needed).
    DDIM with eta > 0 draws its per-step noise from the generator when one is given, else from the seeds.
    spacing: which `steps` of the 1,000 DDIM visits, "uniform" or "quadratic" (the DDIM paper's CIFAR-10 choice).
    guidance_interval: (lo, hi) DDPM timesteps; DDIM then guides only the steps with lo <= t <= hi and takes the
    conditional prediction elsewhere (Kynkäänniemi et al. 2024). None: every step.
    """
    net = unwrap(model)
    cfg = net.config
    method = method or getattr(net, "meta", {}).get("objective", "drift")
    method = "ddim" if method == "ddpm" else method
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if spacing not in DDIM_SPACINGS:
        raise ValueError(f"spacing must be one of {DDIM_SPACINGS}, got {spacing!r}")
    if output not in ("float", "uint8"):
        raise ValueError(f"output must be 'float' or 'uint8', got {output!r}")
    if not (0.0 <= guidance <= 20.0):
        raise ValueError(f"guidance must be in [0, 20], got {guidance}")
    guidance_interval = check_guidance_interval(guidance_interval, method)
    device = torch.device(device) if device is not None else next(net.parameters()).device
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    step = None  # DDIM eta > 0 noise: from the seeds unless a generator is given
    if noise is not None and generator is not None:
        raise ValueError("give noise or generator, not both")
    if noise is not None:
        if noise.ndim != 4 or tuple(noise.shape[1:]) != shape:
            raise ValueError(f"noise must be [n, {shape[0]}, {shape[1]}, {shape[2]}], got {tuple(noise.shape)}")
        if n is not None and n != noise.shape[0]:
            raise ValueError(f"n={n} but noise holds {noise.shape[0]} samples")
        noise = noise.to(device, torch.float32)
        seeds = seed_list(noise.shape[0], seeds)
    elif generator is not None:
        if n is None:
            raise ValueError("give n with a generator")
        noise = torch.randn((n, *shape), generator=generator, device=generator.device).to(device)
        seeds = seed_list(n, 0)
        step = lambda i: torch.randn(noise.shape, generator=generator, device=generator.device).to(device)  # noqa: E731
        if eta != 0:
            fast = False  # the fast path pre-draws eta noise from seeds; keep the generator's stream
    else:
        seeds = seed_list(n, seeds)
        noise = make_noise(seeds, shape, device)
    y = labels_tensor(class_labels, len(seeds), cfg.num_classes, device)
    style = None
    if getattr(cfg, "style_tokens", 0):  # random style embeddings: drawn like the noise (per seed, or from generator)
        style = net.random_style(len(seeds), generator) if generator is not None else style_for_seeds(net, seeds)
        fast = False  # the captured graphs take no style input

    if fast:  # compiled / CUDA-graph path; falls back to eager itself
        options = fast if isinstance(fast, FastOptions) else None
        x = fast_generate(net, noise, method, steps, y, guidance, eta, seeds, callback, options=options, spacing=spacing,
                          guidance_interval=guidance_interval)
    else:
        noise_fn = (step or step_noise(seeds, noise)) if method == "ddim" else None
        x = eager_sample(net, noise, method, steps, y, guidance, eta, noise_fn, callback, style, spacing, guidance_interval)
    x = x.clamp(-1, 1).add(1).div(2)
    return x.mul(255).round().to(torch.uint8) if output == "uint8" else x


def resolve_device(name: str | None = "auto") -> torch.device:
    """'auto' -> CUDA, else Apple MPS, else CPU; an explicit device is checked to exist (ValueError)."""
    name = name or "auto"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name}: CUDA is not available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name}: Apple MPS is not available here")
    return dev
