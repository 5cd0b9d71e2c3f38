"""Default file locations that work both from a source checkout and from an installed package.

An installed package lives in site-packages, so nothing may be looked up relative to this file
unless it is a checkout. The rules:

- project root: the checkout holding this package (it has pyproject.toml next to driftin/), else the CWD.
- weights `<name>` (e.g. drift-cifar10): $DRIFTIN_WEIGHTS/<name>, ./weights/<name>, <checkout>/weights/<name>.
- CIFAR-10 tarballs: $DRIFTIN_DATA, ./data/cifar10, ../shared/data/cifar10 (relative to the CWD and the checkout).
- cache: $DRIFTIN_CACHE, else <checkout>/.cache in a checkout, else the user cache dir (~/.cache/driftin).
"""
from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def checkout_root() -> Path | None:
    """The source checkout this package is imported from, or None for an installed package."""
    root = _PKG.parent
    return root if (root / "pyproject.toml").is_file() and (root / "driftin" / "__init__.py").is_file() else None


def project_root() -> Path:
    """Where repository-relative defaults (benchmarks/, weights/, runs/) go: the checkout, else the CWD."""
    return checkout_root() or Path.cwd()


def _unique(paths) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p is not None and p not in out:
            out.append(p)
    return out


def weights_candidates(name: str) -> list[Path]:
    """Folders where the weights folder `name` is looked for, in order."""
    env = os.environ.get("DRIFTIN_WEIGHTS")
    root = checkout_root()
    return _unique([Path(env) / name if env else None, Path("weights") / name,
                    (root / "weights" / name) if root else None])


def find_weights(name: str) -> Path | None:
    """The first existing folder among weights_candidates(name), or None."""
    found = next((p for p in weights_candidates(name) if p.is_dir()), None)
    return found.resolve() if found is not None else None  # absolute: a later chdir must not lose it


def default_weights(name: str) -> str:
    """The default weights source for `name`: the first folder that exists, else `weights/<name>` (so
    messages name the conventional place)."""
    found = find_weights(name)
    return str(found) if found is not None else f"weights/{name}"


def data_candidates() -> list[Path]:
    env = os.environ.get("DRIFTIN_DATA")
    bases = _unique([Path.cwd(), checkout_root()])
    out = [Path(env)] if env else []
    for b in bases:
        out += [b / "data" / "cifar10", b.parent / "shared" / "data" / "cifar10"]
    return _unique(out)


def cache_dir() -> Path:
    env = os.environ.get("DRIFTIN_CACHE")
    if env:
        d = Path(env)
    elif checkout_root() is not None:
        d = checkout_root() / ".cache"
    else:
        d = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "driftin"
    d.mkdir(parents=True, exist_ok=True)
    return d
