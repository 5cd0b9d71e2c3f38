"""Request settings of the live demo and their server-side validation (the UI sliders use the same bounds)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..data import CIFAR10_CLASSES, class_index

# Server-side bounds (the UI sliders use the same numbers, but requests are checked here too).
GRID_SIZES = (1, 4, 9, 16)
MAX_STEPS = 100
GUIDANCE_RANGE = (1.0, 5.0)
# The DDIM panel's default guidance: the shipped DDPM's best DDIM-50 FID-50k, 5.82 at guidance 2 applied only at
# t 80-580 (6.19 at 1.5 on every step, 8.53 unguided; weights/ddpm-cifar10/eval.json, "ddim_steps50_g2_i80-580").
# Drift keeps its own, 1.0: guiding it scored worse on every encoder so far (block 9: 10.22 at 1.25 vs 9.74 at 1).
DDIM_GUIDANCE = 2.0
# The DDIM panel's guided timesteps (generate()'s guidance_interval, at any step count; None = every step).
# scripts/land_sweep.py says when a sweep's best setting changes either value.
DDIM_GUIDANCE_INTERVAL: tuple[int, int] | None = (80, 580)
MAX_SEED = 2**31 - 1
RECORD_MIN_SECONDS = 1.0
RECORD_MAX_SECONDS = 10.0
RECORD_HARD_LIMIT = 60.0  # a clip may run this much past its length to show the DDPM sample finish
RECORD_MAX_FRAMES = 120
RECORD_MAX_FPS = 12.0
WALK_FRAMES_RANGE = (4, 240)
UNCONDITIONAL = "unconditional"
MIXED = "mixed"  # a CIFAR-10 class per tile (tile with seed s gets class s % 10): the default, as it shows the models best
CLASS_CHOICES = (MIXED, UNCONDITIONAL, *CIFAR10_CLASSES)
VIEWS = ("x0", "xt")  # DDIM panel: predicted clean image, or the noisy state x_t
TILE_SCALE = 4  # API/UI grids: every 32 px image is upscaled 4x (nearest) -> 128 px tiles
PAD = 2  # px between tiles


def guided_at(interval: tuple[int, int] | None) -> str:
    """How a label says where DDIM guidance applies: "" for every step, else " (guided at t LO-HI)"."""
    return "" if interval is None else " (guided at t {}-{})".format(*interval)


@dataclass(frozen=True)
class Settings:
    seed: int = 0
    random_seed: bool = True
    grid: int = 4
    steps: int = 25
    label: int | str | None = None  # CIFAR-10 class index, None = unconditional, MIXED = a class per tile
    guidance: float = 1.0  # the drift panel's (its guidance input; 1 = unguided)
    view: str = "x0"
    ddim_guidance: float = DDIM_GUIDANCE  # the DDIM panel's classifier-free guidance
    ddim_guidance_interval: tuple[int, int] | None = DDIM_GUIDANCE_INTERVAL  # its guided timesteps (None: every step)


def _number(name: str, v, lo: float, hi: float, integer: bool) -> float | int:
    if isinstance(v, bool) or v is None or (isinstance(v, str) and not v.strip()):
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {v!r}") from None
    if not math.isfinite(f) or not lo <= f <= hi:
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}], got {v!r}")
    if integer:
        if f != int(f):
            raise ValueError(f"{name} must be a whole number, got {v!r}")
        return int(f)
    return f


def parse_class(name) -> int | str | None:
    """'unconditional' / None -> None; 'mixed' -> MIXED; a CIFAR-10 class name (or its index 0..9) -> its index."""
    if name is None:
        return None
    s = str(name).strip().lower()
    if s in ("", UNCONDITIONAL, "none"):
        return None
    if s in (MIXED, "all"):
        return MIXED
    if (index := class_index(s)) is not None:
        return index
    raise ValueError(f"unknown class {name!r}; choose one of {', '.join(CLASS_CHOICES)}")


def validate(seed=0, random_seed=True, grid=4, steps=25, class_name=UNCONDITIONAL, guidance=1.0, view="x0",
             ddim_guidance=DDIM_GUIDANCE, ddim_interval=True) -> Settings:
    """Settings from raw request values; ValueError with a clear message when anything is out of bounds.
    guidance is the drift panel's, ddim_guidance the DDIM panel's; ddim_interval: DDIM guides only in
    DDIM_GUIDANCE_INTERVAL (True) or at every step (False). New parameters go last: positional callers keep working."""
    grid_n = _number("grid size", grid, 1, max(GRID_SIZES), integer=True)
    if grid_n not in GRID_SIZES:
        raise ValueError(f"grid size must be one of {GRID_SIZES}, got {grid!r}")
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    return Settings(
        seed=_number("seed", seed, 0, MAX_SEED, integer=True),
        random_seed=_flag("random seed", random_seed),
        grid=grid_n,
        steps=_number("DDIM steps", steps, 1, MAX_STEPS, integer=True),
        label=parse_class(class_name),
        guidance=_number("drift guidance scale", guidance, *GUIDANCE_RANGE, integer=False),
        view=view,
        ddim_guidance=_number("DDIM guidance scale", ddim_guidance, *GUIDANCE_RANGE, integer=False),
        ddim_guidance_interval=DDIM_GUIDANCE_INTERVAL if _flag("DDIM guidance interval", ddim_interval) else None,
    )


def _flag(name: str, v) -> bool:
    # a checkbox sends true/false; "yes", 1 or None are mistakes, not truthy values
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    raise ValueError(f"{name} must be true or false, got {v!r}")


def validate_record(seconds) -> float:
    return _number("recording length (s)", seconds, RECORD_MIN_SECONDS, RECORD_MAX_SECONDS, integer=False)


def validate_walk(frames_per_segment) -> int:
    return _number("frames per walk segment", frames_per_segment, *WALK_FRAMES_RANGE, integer=True)
