"""generate(): the one sampling API used by the CLI, the app, evaluation and benchmarks."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .diffusion import ddim_sample, unwrap

METHODS = ("drift", "ddim")


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


def labels_tensor(class_labels, n: int, num_classes: int, device) -> torch.Tensor | None:
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
    fast: bool = False,
) -> torch.Tensor:
    """Images [n, 3, H, W]: float in [0, 1] (output="float") or uint8 (output="uint8").

    method: "drift" (one forward pass from noise) or "ddim" (steps denoising steps); default from
    the model's meta["objective"]. guidance: CFG scale (1 = none) – for DDIM it mixes conditional
    and unconditional noise predictions, for drift it is the generator's alpha input.
    fast=True uses the compiled / CUDA-graph path where available (same images up to bf16).
    """
    net = unwrap(model)
    cfg = net.config
    method = method or getattr(net, "meta", {}).get("objective", "drift")
    method = "ddim" if method == "ddpm" else method
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if output not in ("float", "uint8"):
        raise ValueError(f"output must be 'float' or 'uint8', got {output!r}")
    if not (0.0 <= guidance <= 20.0):
        raise ValueError(f"guidance must be in [0, 20], got {guidance}")
    seeds = seed_list(n, seeds)
    device = torch.device(device) if device is not None else next(net.parameters()).device
    noise = make_noise(seeds, (cfg.in_channels, cfg.image_size, cfg.image_size), device)
    y = labels_tensor(class_labels, len(seeds), cfg.num_classes, device)

    if fast:
        from .fast import fast_generate  # compiled / CUDA-graph path; falls back to eager itself

        x = fast_generate(net, noise, method, steps, y, guidance, eta, seeds, callback)
    elif method == "drift":
        alpha = torch.full((len(seeds),), float(guidance), device=device) if cfg.guidance_input else None
        if guidance != 1.0 and not cfg.guidance_input:
            raise ValueError("this drift model has no guidance input; use guidance=1")
        x = net(noise, None, y, alpha).float()
    else:
        x = ddim_sample(eps_fn(net, y, guidance), noise, steps, eta, step_noise(seeds, noise), callback)
    x = x.clamp(-1, 1).add(1).div(2)
    return x.mul(255).round().to(torch.uint8) if output == "uint8" else x


def eps_fn(net, y, guidance: float):
    """Noise predictor with classifier-free guidance: eps_u + g (eps_c - eps_u), one batched call."""
    if y is None or guidance == 1.0:
        return lambda x, t: net(x, t, y)
    null = torch.full_like(y, net.config.num_classes)

    def guided(x, t):
        e_c, e_u = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        return e_u + guidance * (e_c - e_u)

    return guided


def step_noise(seeds: Sequence[int], like: torch.Tensor):
    """Fresh per-sample noise for DDIM with eta > 0, continuing each sample's own generator."""
    gens = [torch.Generator().manual_seed(s + 1_000_003) for s in seeds]
    return lambda i: torch.stack([torch.randn(like.shape[1:], generator=g) for g in gens]).to(like.device)
