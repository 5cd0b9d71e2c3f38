"""The demo's models: loading them with a useful message when they are missing, and the Engine that runs
drift and DDIM through one fair lock, timing only the model's work."""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..data import CIFAR10_CLASSES
from ..generate import generate
from ..hub import WeightsCorrupt, WeightsError, load_pretrained, looks_local
from ..paths import checkout_root
from .images import to_uint8
from .meters import FairLock, sync
from .settings import MIXED, UNCONDITIONAL, Settings


class Stopped(Exception):
    """Raised inside a DDIM callback to abandon a sample when the live session ends."""


@dataclass
class Slot:
    """One model the app serves: where it comes from, and the model or why it is not there."""

    kind: str  # "drift" | "ddpm"
    source: str
    model: torch.nn.Module | None = None
    error: str | None = None
    problem: str | None = None  # "missing" | "corrupt" | "wrong model" when model is None

    @property
    def ok(self) -> bool:
        return self.model is not None


def _tracked(root: Path, rel: str) -> bool:
    """`rel` is tracked by the git checkout at root (so `git checkout` can restore it)."""
    import subprocess

    try:
        r = subprocess.run(["git", "-C", str(root), "ls-files", "--error-unmatch", rel], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def how_to_get(kind: str, source: str) -> str:
    """Ways to get working weights, each command runnable as written (no placeholders)."""
    name = f"{kind}-cifar10"
    ways = []
    root = checkout_root()
    shipped = root / "weights" / name if root else None
    if shipped is not None and _tracked(root, f"weights/{name}"):
        here = Path(source).expanduser()
        if not looks_local(source) or not here.exists() or here.resolve() == shipped.resolve():
            ways.append(f"restore the weights shipped with the repository: `git -C {root} checkout HEAD -- weights/{name}`")
    if not looks_local(source):
        ways.append(f"check the Hub repo id `{source}` (and your network / HF_TOKEN), then "
                    f"`hf download {source} --local-dir weights/{name}`")
    ways.append(f"point `--{kind}` (or env DRIFTIN_{kind.upper()}) at a weights folder or Hub repo id, or set "
                f"DRIFTIN_WEIGHTS to a folder that holds `{name}/`")
    ways.append(f"train them in a driftin checkout: `driftin train --config training/{kind}_cifar10.json` then "
                f"`driftin train export runs/{name} weights/{name}`")
    return "; ".join(ways)


def load_slot(kind: str, source: str, device: torch.device) -> Slot:
    try:
        model = load_pretrained(source, device=device)
    except WeightsCorrupt as e:
        return Slot(kind, source, problem="corrupt",
                    error=f"{kind} weights `{source}` are corrupt: {e}. To fix: {how_to_get(kind, source)}.")
    except WeightsError as e:  # missing folder, no weights file, Hub repo not reachable
        return Slot(kind, source, problem="missing",
                    error=f"{kind} weights `{source}` are missing: {e}. To get them: {how_to_get(kind, source)}.")
    objective = getattr(model, "meta", {}).get("objective", "?")
    want = "drift" if kind == "drift" else "ddpm"
    if objective != "?" and objective.replace("ddim", "ddpm") != want:  # no objective recorded: trust the flag
        return Slot(kind, source, problem="wrong model",
                    error=f"`{source}` holds a {objective!r} model, but the {kind} panel needs "
                          f"objective {want!r} (swap --drift / --ddpm?)")
    return Slot(kind, source, model=model)


class Engine:
    """Both models on one device; every forward pass goes through one fair lock and is timed with the
    device synchronised around it, so model speed excludes waiting, image encoding and the UI."""

    def __init__(self, drift: Slot, ddpm: Slot, device: torch.device, fast=None):
        # fast: None (on for CUDA), False, True (default FastOptions) or a FastOptions
        self.drift, self.ddpm, self.device = drift, ddpm, torch.device(device)
        self.fast = (self.device.type == "cuda") if fast is None else fast
        self.lock = FairLock()

    # ---- helpers
    def slot(self, kind: str) -> Slot:
        return self.drift if kind == "drift" else self.ddpm

    def require(self, kind: str) -> torch.nn.Module:
        slot = self.slot(kind)
        if not slot.ok:
            raise ValueError(slot.error)
        return slot.model

    def check(self, kind: str, s: Settings) -> torch.nn.Module:
        """The loaded model of this kind, if the settings suit it (ValueError saying why not)."""
        model = self.require(kind)
        if s.label is not None and not model.config.num_classes:
            raise ValueError(f"the {kind} model is unconditional: choose class '{UNCONDITIONAL}'")
        return model

    def check_loaded(self, s: Settings) -> None:
        """check() for every model that loaded (a stream shows the ones that did)."""
        for kind in ("drift", "ddpm"):
            if self.slot(kind).ok:
                self.check(kind, s)

    def drift_guidance(self, s: Settings) -> float:
        """The drift panel's guidance; a drift model without a guidance input is only ever unguided."""
        return s.guidance if self.require("drift").config.guidance_input else 1.0

    def _generate(self, model, **kw) -> torch.Tensor:
        if self.fast:
            try:
                return generate(model, fast=self.fast, **kw)
            except (ImportError, NotImplementedError):
                self.fast = False  # no fast path in this build: eager from now on
            except Stopped:
                raise
            except Exception as e:  # noqa: BLE001 - a demo keeps going on the eager path, and says so
                if isinstance(e, ValueError):
                    raise
                print(f"driftin.live: fast path failed ({type(e).__name__}: {e}); using eager", file=sys.stderr)
                self.fast = False
        return generate(model, fast=False, **kw)

    # ---- model calls
    def drift_images(self, seeds: list[int], s: Settings) -> tuple[torch.Tensor, float]:
        """uint8 [n, 3, 32, 32] on the CPU, and the model's seconds for the frame."""
        return self._timed_drift(self.check("drift", s), s, tile_labels(s, seeds), seeds=seeds)

    def drift_from_noise(self, noise: torch.Tensor, s: Settings) -> tuple[torch.Tensor, float]:
        """The drift generator on given noise (latent walks), per-tile classes from s."""
        return self._timed_drift(self.check("drift", s), s, tile_labels(s, list(range(noise.shape[0]))), noise=noise)

    def _timed_drift(self, model, s: Settings, labels, **source) -> tuple[torch.Tensor, float]:
        """One drift call from seeds= or noise=: uint8 images on the CPU and the model's seconds (device synced)."""
        with self.lock:
            sync(self.device)
            t0 = time.perf_counter()
            x = self._generate(model, **source, method="drift", class_labels=labels,
                               guidance=self.drift_guidance(s), output="uint8", device=self.device)
            sync(self.device)
            dt = time.perf_counter() - t0
            x = x.cpu()
        return x, dt

    def ddim_images(self, seeds: list[int], s: Settings,
                    on_step: Callable[[int, torch.Tensor, torch.Tensor, float], None] | None = None,
                    stop: threading.Event | None = None) -> torch.Tensor:
        """Final uint8 images; on_step(i, x_t, x0_pred, model_seconds_of_step_i) after every step (images as
        uint8 CPU tensors), run outside the lock. Raises Stopped when `stop` gets set."""
        model = self.check("ddpm", s)
        state = {"t0": 0.0}

        def callback(i, x_t, x0):
            sync(self.device)
            dt = time.perf_counter() - state["t0"]
            # copy out while holding the lock: no other thread's GPU work (or CUDA-graph capture) overlaps,
            # and graph output buffers are read before the next replay overwrites them
            x_t, x0 = to_uint8(x_t), to_uint8(x0)
            self.lock.release()
            try:
                if stop is not None and stop.is_set():
                    raise Stopped
                if on_step is not None:
                    on_step(i, x_t, x0, dt)
            finally:
                self.lock.acquire()
                sync(self.device)
                state["t0"] = time.perf_counter()

        self.lock.acquire()
        try:
            sync(self.device)
            state["t0"] = time.perf_counter()
            x = self._generate(model, seeds=seeds, method="ddim", steps=s.steps, class_labels=tile_labels(s, seeds),
                               guidance=s.ddim_guidance, guidance_interval=s.ddim_guidance_interval, output="uint8",
                               device=self.device, callback=callback).cpu()
        finally:
            self.lock.release()
        return x


def tile_labels(s: Settings, seeds: list[int]) -> int | list[int] | None:
    """Class labels for a frame: one class for all tiles, none, or (MIXED) class seed % 10 per tile, so a
    fixed seed keeps its class and both panels give a tile the same class."""
    if s.label == MIXED:
        return [seed % len(CIFAR10_CLASSES) for seed in seeds]
    return s.label
