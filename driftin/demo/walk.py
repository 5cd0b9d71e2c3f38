"""Latent walks: slerp between per-tile noise keypoints drawn from seeds."""
from __future__ import annotations

import torch

from ..sampling import make_noise

def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dot_threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation between noise batches a, b [n, ...] (per sample, flattened); t in [0, 1].
    Exact endpoints; keeps the norm of Gaussian noise (so every frame is a typical noise sample)."""
    if a.shape != b.shape:
        raise ValueError(f"slerp of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    t = float(t)
    if t <= 0.0:
        return a.clone()
    if t >= 1.0:
        return b.clone()
    fa, fb = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    omega = cos.clamp(-1, 1).acos()
    so = omega.sin()
    lerp = cos.abs() > dot_threshold
    wa = torch.where(lerp, 1 - t, ((1 - t) * omega).sin() / so.clamp_min(1e-12))
    wb = torch.where(lerp, torch.full_like(omega, t), (t * omega).sin() / so.clamp_min(1e-12))
    out = wa[:, None] * fa + wb[:, None] * fb
    return out.reshape(a.shape).to(a.dtype)


class LatentWalk:
    """Per-tile noise keypoints (from seeds) visited in turn by slerp, `frames` frames per segment."""

    def __init__(self, n: int, seed: int, frames: int, shape=(3, 32, 32), device=None):
        self.n, self.seed, self.frames, self.shape, self.device = n, seed, frames, shape, device
        self.i = 0
        self._cache: dict[int, torch.Tensor] = {}

    def keypoint(self, k: int) -> torch.Tensor:
        if k not in self._cache:
            self._cache = {j: v for j, v in self._cache.items() if j >= k - 1}
            seeds = [(self.seed + (k * self.n) + j) % (2**63) for j in range(self.n)]
            self._cache[k] = make_noise(seeds, self.shape, self.device)
        return self._cache[k]

    def noise_at(self, i: int) -> torch.Tensor:
        k, j = divmod(i, self.frames)
        return slerp(self.keypoint(k), self.keypoint(k + 1), j / self.frames)

    def __next__(self) -> torch.Tensor:
        z = self.noise_at(self.i)
        self.i += 1
        return z
