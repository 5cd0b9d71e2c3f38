"""FastOptions: how the fast path builds its model copy (dtype, layout, compile, CUDA graphs, fusion).

The library never reads the environment: generate(fast=True) means FastOptions(), and callers pass their own.
FastOptions.from_env() maps the DRIFTIN_* variables onto the options for the command-line entry points
(driftin.sample, driftin.eval, the app, the benchmarks):

  DRIFTIN_FAST=0              always use the eager path (enabled=False)
  DRIFTIN_COMPILE=0           no torch.compile: CUDA graphs of the eager bf16 model
  DRIFTIN_COMPILE_MODE        "default" (default) | "max-autotune-no-cudagraphs" ("max-autotune" is
                              taken as the no-cudagraphs variant: the graphs here are our own)
  DRIFTIN_COMPILE_DYNAMIC     unset: torch's automatic dynamic batch | 0: one compile per batch size | 1
  DRIFTIN_COMPILE_BACKEND     torch.compile backend (default "inductor")
  DRIFTIN_CUDA_GRAPHS=0       compiled model, no CUDA graphs
  DRIFTIN_CHANNELS_LAST       1 | 0 (default: on when compiling)
  DRIFTIN_FAST_DTYPE          bf16 (default) | fp16 | fp32
  DRIFTIN_FREEZE=1            inductor freezing (weights become constants; weight changes recompile)
  DRIFTIN_FUSE_EMB=0          keep one small GEMM per residual block for the AdaGN scale/shift (by
                              default the copy computes all of them with one GEMM after embed())
  DRIFTIN_FAST_CACHE          max captured graphs kept (default 32, least recently used dropped)
  DRIFTIN_FAST_STRICT=1       raise build failures instead of falling back to eager
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_MODES = {"default": None, "max-autotune": "max-autotune-no-cudagraphs",
          "max-autotune-no-cudagraphs": "max-autotune-no-cudagraphs"}


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _flag(name: str, default: bool) -> bool:
    v = _env(name).lower()
    return default if v == "" else v not in ("0", "false", "no", "off")


def _int(name: str, default: int) -> int:
    try:
        return int(_env(name, str(default)) or default)
    except ValueError:
        return default


@dataclass(frozen=True)
class FastOptions:
    dtype: str = "bf16"  # "bf16" | "fp16" | "fp32"
    channels_last: bool | None = None  # None: on when compiling
    compile: bool = True
    mode: str = "default"  # "default" | "max-autotune-no-cudagraphs"
    dynamic: bool | None = None  # torch.compile(dynamic=...)
    backend: str = "inductor"
    graphs: bool = True  # CUDA graphs (CUDA only)
    freezing: bool = False
    fuse_emb: bool = True  # one GEMM for all AdaGN projections (on the private copy; self-checked)
    enabled: bool = True  # False: generate(fast=...) runs the eager path
    strict: bool = False  # raise build failures instead of falling back to eager
    max_graphs: int = 32  # captured graphs kept across samplers (least recently used dropped)

    def __post_init__(self):
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.mode not in _MODES:
            raise ValueError(f"compile mode must be one of {sorted(_MODES)}, got {self.mode!r}")
        object.__setattr__(self, "mode", "default" if _MODES[self.mode] is None else _MODES[self.mode])
        object.__setattr__(self, "max_graphs", max(1, int(self.max_graphs)))

    @classmethod
    def from_env(cls) -> "FastOptions":
        dyn = _env("DRIFTIN_COMPILE_DYNAMIC").lower()
        cl = _env("DRIFTIN_CHANNELS_LAST").lower()
        return cls(
            dtype=_env("DRIFTIN_FAST_DTYPE", "bf16") or "bf16",
            channels_last=None if cl in ("", "auto") else cl not in ("0", "false", "no", "off"),
            compile=_flag("DRIFTIN_COMPILE", True),
            mode=_env("DRIFTIN_COMPILE_MODE", "default") or "default",
            dynamic=None if dyn in ("", "auto") else dyn not in ("0", "false", "no", "off"),
            backend=_env("DRIFTIN_COMPILE_BACKEND", "inductor") or "inductor",
            graphs=_flag("DRIFTIN_CUDA_GRAPHS", True),
            freezing=_flag("DRIFTIN_FREEZE", False),
            fuse_emb=_flag("DRIFTIN_FUSE_EMB", True),
            enabled=_flag("DRIFTIN_FAST", True),
            strict=_flag("DRIFTIN_FAST_STRICT", False),
            max_graphs=_int("DRIFTIN_FAST_CACHE", 32),
        )

    @property
    def use_channels_last(self) -> bool:
        return self.compile if self.channels_last is None else self.channels_last
