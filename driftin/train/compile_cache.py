"""Compiled code carried from one machine to the next: torch.compiler's portable cache artifacts.

A GPU lease starts on a fresh machine, so every block of a chain compiles its step again (~1 min for DDPM, ~2.5 min
for drift, counted in the block's minutes). With DRIFTIN_COMPILE_ARTIFACTS=PATH, train() loads PATH before its first
step (when the file exists) and writes this process's artifacts there when it ends: what the compile produced
(inductor's generated code and kernels, AOTAutograd graphs): 100-140 MB per chain arm on the H200, which xz packs
small enough to carry (scripts/gpu_lease.sh `cache`), unlike the whole inductor and triton cache folders (850 MB from
one lease). A changed graph, torch version or GPU simply misses and compiles as before.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from ..checkpoint import write_atomic

ENV = "DRIFTIN_COMPILE_ARTIFACTS"


def artifacts_path() -> Path | None:
    path = os.environ.get(ENV)
    return Path(path) if path else None


def load_artifacts(path: Path | None) -> bool:
    """Hand the artifacts in `path` to torch.compile's caches; False when there is no such file or it cannot be
    used (a cache must never stop a run: it then compiles as without one)."""
    if path is None or not path.is_file():
        return False
    try:
        torch.compiler.load_cache_artifacts(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - e.g. written by another torch version
        warnings.warn(f"compile artifacts {path} not used ({type(e).__name__}: {e}); compiling from scratch")
        return False
    return True


def save_artifacts(path: Path | None) -> int | None:
    """Write what this process compiled to `path` (atomically); its size, or None when nothing was compiled."""
    if path is None:
        return None
    try:
        got = torch.compiler.save_cache_artifacts()
    except Exception as e:  # noqa: BLE001 - the run's results matter, not its cache
        warnings.warn(f"compile artifacts not saved ({type(e).__name__}: {e})")
        return None
    if got is None:
        return None
    write_atomic(path, got[0])
    return len(got[0])
