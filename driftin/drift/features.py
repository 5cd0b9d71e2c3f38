"""Multi-resolution feature groups (the paper's appendix): from each feature map, per-location
vectors, the global mean and std, and mean/std over a 2x2 and a 4x4 grid of patches.

Every group is one row of the drift field's batch dimension L, with its own feature scale and its
own drift normalisation, so groups of one map share a width C and go through the field in one call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def map_groups(fmap: torch.Tensor, max_locations: int = 8, grids: tuple[int, ...] = (2, 4)) -> torch.Tensor:
    """[B, C, H, W] -> [B, L, C]: per-location vectors (average-pooled to at most max_locations^2),
    global mean and std, and patch mean/std on each grid that fits."""
    b, c, h, w = fmap.shape
    fmap = fmap.float()
    side = min(h, max_locations)
    loc = F.adaptive_avg_pool2d(fmap, side) if side < h else fmap
    parts = [loc.flatten(2).transpose(1, 2)]  # [B, side*side, C]
    var = fmap.var(dim=(2, 3), unbiased=False)
    parts += [fmap.mean(dim=(2, 3))[:, None], (var + 1e-6).sqrt()[:, None]]
    for g in grids:
        if g < h:
            m = F.adaptive_avg_pool2d(fmap, g)
            v = (F.adaptive_avg_pool2d(fmap.square(), g) - m.square()).clamp(min=0)
            parts += [m.flatten(2).transpose(1, 2), (v + 1e-6).sqrt().flatten(2).transpose(1, 2)]
    return torch.cat(parts, dim=1)


def pixel_map(x: torch.Tensor, patch: int = 4) -> torch.Tensor:
    """Raw pixels as a feature map of patch vectors: [B, 3, 32, 32] -> [B, 48, 8, 8]."""
    return F.pixel_unshuffle(x, patch)


def feature_groups(maps: list[torch.Tensor], x: torch.Tensor | None, max_locations: int = 8) -> list[torch.Tensor]:
    """One [B, L_j, C_j] tensor per encoder map, plus the raw-pixel groups when x is given."""
    groups = [map_groups(m, max_locations) for m in maps]
    if x is not None:
        groups.append(map_groups(pixel_map(x), max_locations))
    return groups
