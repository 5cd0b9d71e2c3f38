"""Frozen dataclass configs and named presets. Configs are data: saved as JSON next to weights."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the one UNet that serves DDPM (noise prediction) and drift (noise -> image)."""

    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    num_heads: int = 4
    dropout: float = 0.0
    image_size: int = 32
    in_channels: int = 3
    num_classes: int = 0  # 0: unconditional; else labels 0..K-1 and K = "no label" (CFG)
    guidance_input: bool = False  # drift: the CFG scale alpha is an input of the generator
    zero_init_out: bool = True  # DDPM convention; drift must not (all samples identical at init)
    # drift (paper): style_tokens random indices into a style_codebook-entry learned codebook, summed into
    # the conditioning; 0 = off. A model with styles needs forward(..., style=...) (see UNet.random_style).
    style_tokens: int = 0
    style_codebook: int = 64

    def __post_init__(self):
        # JSON gives lists; keep tuples so configs stay hashable and compare equal.
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        object.__setattr__(self, "attn_resolutions", tuple(self.attn_resolutions))
        if self.style_tokens < 0 or (self.style_tokens and self.style_codebook < 1):
            raise ValueError(f"style_tokens {self.style_tokens} / style_codebook {self.style_codebook} must be >= 0 / >= 1")
        if self.image_size % (2 ** (len(self.channel_mult) - 1)):
            raise ValueError(f"image_size {self.image_size} is not divisible by 2^(levels-1)")


PRESETS: dict[str, UNetConfig] = {
    "tiny": UNetConfig(base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), num_heads=2),
    "small": UNetConfig(base_channels=64),
    "base": UNetConfig(base_channels=128),
    # the small preset with the paper's random style embeddings (drift ablation; a plain --preset choice)
    "small-style": UNetConfig(base_channels=64, style_tokens=32, style_codebook=64),
    "large": UNetConfig(base_channels=256, num_res_blocks=3, attn_resolutions=(16, 8), num_heads=8),
}


def preset(name: str, **overrides) -> UNetConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, d: dict):
    """Build a config from a dict, naming unknown keys instead of failing with a TypeError."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {unknown}")
    return cls(**d)


def save_json(cfg, path: str | Path, **extra) -> None:
    Path(path).write_text(json.dumps({**to_dict(cfg), **extra}, indent=2) + "\n")


def diff_keys(a, b) -> list[str]:
    """Names of the fields where two configs of the same class differ."""
    return [f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]


__all__ = ["UNetConfig", "PRESETS", "preset", "to_dict", "from_dict", "save_json", "diff_keys", "field"]
