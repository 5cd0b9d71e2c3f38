"""Multi-resolution feature groups (the paper's appendix): from each feature map, per-location
vectors, the global mean and std, and mean/std patch statistics; plus raw-input features.

Every group is one row of the drift field's batch dimension L, with its own feature scale and its
own drift normalisation (unless the objective shares them per map), so groups of one map share a
width C and go through the field in one call.

Options (DriftConfig): patch_stats "grid" (mean/std over a 2x2 and a 4x4 grid of regions: 4 + 16
vectors per stat) or "patches" (the paper: one mean/std vector for every 2x2 and every 4x4 patch,
H/2*W/2 + H/4*W/4 per stat); max_locations (per-location vectors average-pooled to at most that many
per side, 0 = every location); pixel_mode "patches" (48-d 4x4 pixel patches through map_groups) or
"energy" (the paper: the input itself as one vector, plus the per-channel mean of x^2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PATCH_STATS = ("grid", "patches")
PIXEL_MODES = ("patches", "energy")


def _rows(m: torch.Tensor) -> torch.Tensor:
    return m.flatten(2).transpose(1, 2)  # [B, C, h, w] -> [B, h*w, C]


def _regions_mean(t: torch.Tensor, k: int) -> torch.Tensor:
    """Means over a k x k grid of regions, [B, C, k, k]. Where k divides the map the regions are plain
    (h/k x w/k) patches: avg_pool2d, whose backward inductor fuses (adaptive pooling's backward is an eager
    kernel inside the compiled step, ~2.5% of the drift step's device time on the H200)."""
    h, w = t.shape[-2:]
    if h % k == 0 and w % k == 0:
        return F.avg_pool2d(t, (h // k, w // k))
    return F.adaptive_avg_pool2d(t, k)


def map_groups(fmap: torch.Tensor, max_locations: int = 8, grids: tuple[int, ...] = (2, 4),
               patch_stats: str = "grid") -> torch.Tensor:
    """[B, C, H, W] -> [B, L, C]: per-location vectors (average-pooled to at most max_locations^2;
    0 = no pooling), global mean and std, then patch mean/std for each size k in grids: "grid" = over a
    k x k grid of regions (when k < H), "patches" = over every k x k patch (when k < H)."""
    if patch_stats not in PATCH_STATS:
        raise ValueError(f"patch_stats must be one of {PATCH_STATS}, got {patch_stats!r}")
    b, c, h, w = fmap.shape
    fmap = fmap.float()
    side = min(h, max_locations) if max_locations else h
    loc = _regions_mean(fmap, side) if side < h else fmap
    parts = [_rows(loc)]  # [B, side*side, C]
    var = fmap.var(dim=(2, 3), unbiased=False)
    parts += [fmap.mean(dim=(2, 3))[:, None], (var + 1e-6).sqrt()[:, None]]
    for g in grids:
        if g < h:
            if patch_stats == "grid":
                pool = lambda t: _regions_mean(t, g)  # noqa: E731 - g x g regions
            else:
                pool = lambda t: F.avg_pool2d(t, g)  # noqa: E731 - every g x g patch
            m = pool(fmap)
            v = (pool(fmap.square()) - m.square()).clamp(min=0)
            parts += [_rows(m), _rows((v + 1e-6).sqrt())]
    return torch.cat(parts, dim=1)


def pixel_map(x: torch.Tensor, patch: int = 4) -> torch.Tensor:
    """Raw pixels as a feature map of patch vectors: [B, 3, 32, 32] -> [B, 48, 8, 8]."""
    return F.pixel_unshuffle(x, patch)


def input_groups(x: torch.Tensor) -> list[torch.Tensor]:
    """The paper's raw features: the whole input as one vector [B, 1, 3*H*W] (the plain drift loss on
    the input) and its per-channel energy, the mean of x^2 over locations [B, 1, 3]."""
    x = x.float()
    return [x.flatten(1)[:, None], x.square().mean((2, 3))[:, None]]


def feature_groups(maps: list[torch.Tensor], x: torch.Tensor | None, max_locations: int = 8,
                   patch_stats: str = "grid", pixel_mode: str = "patches") -> list[torch.Tensor]:
    """One [B, L_j, C_j] tensor per encoder map, plus the raw-input groups when x is given."""
    if pixel_mode not in PIXEL_MODES:
        raise ValueError(f"pixel_mode must be one of {PIXEL_MODES}, got {pixel_mode!r}")
    groups = [map_groups(m, max_locations, patch_stats=patch_stats) for m in maps]
    if x is not None:
        if pixel_mode == "patches":
            groups.append(map_groups(pixel_map(x), max_locations, patch_stats=patch_stats))
        else:
            groups += input_groups(x)
    return groups
