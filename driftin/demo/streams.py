"""The demo's streams: the live side-by-side (drift every frame, DDIM steps from a background worker) and
the drift latent walk, each a generator of LiveFrames paced for the UI."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .engine import Engine, Stopped
from .meters import RateMeter, WorkMeter
from .settings import MAX_SEED, Settings
from .walk import LatentWalk


def frame_seeds(s: Settings, base: int, frame: int) -> list[int]:
    """Seeds of one frame: fixed seed -> the same every frame; else a fresh block per frame."""
    start = s.seed if not s.random_seed else base + frame * s.grid
    return [(start + i) % (2**63) for i in range(s.grid)]


def seed_label(seeds: list[int]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}"


@dataclass
class LiveFrame:
    """One step of a stream; images are uint8 [n, 3, 32, 32] CPU tensors (make_grid turns them into pictures)."""

    drift: torch.Tensor | None  # the drift panel's images (None: no drift panel)
    ddpm: torch.Tensor | None  # new DDPM panel images, None when nothing changed since the last frame
    drift_stats: str
    ddpm_stats: str
    drift_title: str = ""
    ddpm_title: str = ""
    ddpm_latest: torch.Tensor | None = None  # the DDPM panel's current images (new or not), for clips
    ddpm_done: bool = False  # ddpm_latest is a finished sample (not an intermediate DDIM step)


class DDIMWorker(threading.Thread):
    """Runs DDIM samples back to back in the background, each from the drift panel's current seeds,
    publishing every denoising step; holds the finished sample for `hold` seconds."""

    def __init__(self, engine: Engine, get_settings: Callable[[], Settings], get_seeds: Callable[[Settings], list[int]],
                 stop: threading.Event, hold: float = 0.5):
        super().__init__(daemon=True)
        self.engine, self.get_settings, self.get_seeds, self.stop, self.hold = engine, get_settings, get_seeds, stop, hold
        self.meter, self.ui = WorkMeter(window=50), RateMeter()
        self._lock = threading.Lock()
        self.version = 0
        self.seen = -1  # the last version the stream took: a finished sample is held until it has been shown
        self.done = False  # the published images are a finished sample
        self.finish = threading.Event()  # graceful stop: finish the sample in progress, start no new one
        self.images: torch.Tensor | None = None
        self.title, self.info = "DDPM · DDIM", "**DDPM · DDIM** — waiting for the first step…"
        self.error: str | None = None
        self.samples = 0
        self.last_sample_s = 0.0
        self.heartbeat = time.perf_counter()  # the stream's last poll; a stream nobody reads stops the worker
        self.orphan_after = 15.0

    def orphaned(self) -> bool:
        return time.perf_counter() - self.heartbeat > self.orphan_after

    def _publish(self, images: torch.Tensor | None, title: str, info: str, done: bool = False) -> None:
        with self._lock:
            if images is not None:
                self.images = images
            self.title, self.info, self.done = title, info, done
            self.version += 1

    def snapshot(self) -> tuple[int, torch.Tensor | None, str, str, bool]:
        with self._lock:
            self.seen = self.version
            return self.version, self.images, self.title, self.info, self.done

    def idle(self) -> bool:
        """Not sampling: finished (graceful stop), stopped or failed."""
        return not self.is_alive()

    def stats(self, step: int, s: Settings, seeds: list[int]) -> str:
        sps = self.meter.per_second
        per_sample = s.steps / sps if sps else 0.0
        last = f"; last one {self.last_sample_s:.2f} s" if self.samples else ""
        return (f"**DDPM · DDIM {s.steps} steps** — model **{sps:.1f} steps/s** = "
                f"{(1 / per_sample if per_sample else 0):.2f} samples/s ({per_sample:.2f} s per {s.grid}-image sample{last}) "
                f"· UI **{self.ui.rate:.1f} frames/s** · step {step}/{s.steps} · {seed_label(seeds)}")

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                s = self.get_settings()
                seeds = self.get_seeds(s)
                total = [0.0]

                def on_step(i, x_t, x0, dt, s=s, seeds=seeds):
                    if self.orphaned():
                        self.stop.set()
                    self.meter.add(dt)
                    total[0] += dt
                    self._publish(x0 if s.view == "x0" else x_t, f"DDPM · DDIM step {i + 1}/{s.steps}",
                                  self.stats(i + 1, s, seeds))

                final = self.engine.ddim_images(seeds, s, on_step=on_step, stop=self.stop)
                self.samples += 1
                self.last_sample_s = total[0]
                self._publish(final, f"DDPM · DDIM {s.steps} steps, done", self.stats(s.steps, s, seeds), done=True)
                # hold the finished sample until the stream has shown it (a slow drift frame, e.g. grid 16 on a
                # CPU, could otherwise skip it), then `hold` seconds more
                with self._lock:
                    version = self.version
                while self.seen < version and not self.stop.is_set() and not self.orphaned():
                    self.stop.wait(0.02)
                if self.finish.is_set():
                    break
                self.stop.wait(self.hold)
                if self.orphaned() or self.finish.is_set():
                    break
        except Stopped:
            pass
        except Exception as e:  # noqa: BLE001 - reported by the stream instead of dying silently
            self.error = f"{type(e).__name__}: {e}"


def live_frames(engine: Engine, get_settings: Callable[[], Settings], stop: threading.Event,
                max_fps: float = 24.0, max_seconds: float = 600.0,
                finish: threading.Event | None = None) -> Iterator[LiveFrame]:
    """The live side-by-side: a new drift grid every frame (fresh seeds unless the seed is fixed) and the
    DDPM panel's DDIM steps as they happen (from the seeds the drift panel showed when the sample began).
    Paced to at most max_fps frames to the UI; ends after max_seconds or when `stop` is set.
    `finish` is the gentle stop (the Stop button): drift stops at once, the DDPM sample in progress runs to
    its end and its finished images are the last frame, so a stopped view never rests on a noisy step.
    A panel whose model is missing stays empty (its stats say why); with neither model, ValueError."""
    if not engine.drift.ok and not engine.ddpm.ok:
        raise ValueError(f"no model to run. {engine.drift.error} {engine.ddpm.error}")
    base = random.randrange(MAX_SEED)
    current: dict[str, list[int]] = {}
    lock = threading.Lock()

    def seeds_now(s: Settings) -> list[int]:
        with lock:
            cur = current.get("seeds")
        return cur if cur is not None and len(cur) == s.grid else frame_seeds(s, base, 0)

    s = get_settings()
    engine.check_loaded(s)
    worker = DDIMWorker(engine, get_settings, seeds_now, stop) if engine.ddpm.ok else None
    finish = finish or threading.Event()
    drift_meter, ui = WorkMeter(), RateMeter()
    seen, ddpm_latest, ddpm_done = -1, None, False
    dtitle, dinfo = "DDPM", f"**DDPM** — off: {engine.ddpm.error}"
    t_start = time.perf_counter()
    try:
        frame = 0
        while not stop.is_set() and time.perf_counter() - t_start < max_seconds:
            t_frame = time.perf_counter()
            finishing = finish.is_set()
            if finishing and (worker is None or worker.ident is None or worker.idle()):
                # nothing left to finish: a worker ends only after its finished sample was taken (and yielded)
                yield LiveFrame(None, None, "**Drift** — stopped", dinfo, "Drift · 1 step", dtitle, ddpm_latest, ddpm_done)
                break
            s = get_settings()
            seeds = frame_seeds(s, base, frame)
            if worker is not None:
                if finishing:
                    worker.finish.set()
                worker.heartbeat = time.perf_counter()
                if worker.ident is None:
                    with lock:
                        current["seeds"] = seeds
                    worker.start()
            x = None
            if engine.drift.ok and not finishing:
                with lock:
                    current["seeds"] = seeds
                x, dt = engine.drift_images(seeds, s)
                drift_meter.add(dt)
            new_ddpm = None
            if worker is not None:
                if worker.error:
                    raise RuntimeError(f"DDPM panel: {worker.error}")
                version, images, dtitle, dinfo, ddpm_done = worker.snapshot()
                if version != seen:
                    seen = version
                    if images is not None and images is not ddpm_latest:
                        new_ddpm = ddpm_latest = images
                        worker.ui.tick()
            ui.tick()
            if finishing:
                if new_ddpm is not None:
                    yield LiveFrame(None, new_ddpm, "**Drift** — stopped", dinfo, "Drift · 1 step", dtitle, ddpm_latest,
                                    ddpm_done)
                stop.wait(0.05)
                continue
            if x is not None:
                fps = drift_meter.per_second
                drift_stats = (f"**Drift · 1 step** — model **{fps:.1f} frames/s** ({1000 * drift_meter.mean:.1f} ms per "
                               f"{s.grid}-image frame = {fps * s.grid:.0f} images/s) · UI **{ui.rate:.1f} frames/s** · "
                               f"{seed_label(seeds)}")
            else:
                drift_stats = f"**Drift** — off: {engine.drift.error}"
            yield LiveFrame(x, new_ddpm, drift_stats, dinfo, "Drift · 1 step", dtitle, ddpm_latest, ddpm_done)
            frame += 1
            # without a drift model the loop only polls the DDPM worker: no need to spin faster than it
            wait = 1.0 / max_fps - (time.perf_counter() - t_frame)
            if wait > 0:
                stop.wait(wait)
    finally:
        stop.set()
        if worker is not None and worker.ident is not None:
            worker.join(timeout=15)


def walk_frames(engine: Engine, get_settings: Callable[[], Settings], frames_per_segment: int, stop: threading.Event,
                max_fps: float = 30.0, max_seconds: float = 600.0) -> Iterator[LiveFrame]:
    """Drift on a slerp walk through noise space: one forward pass per frame, paced to max_fps."""
    s = get_settings()
    engine.check("drift", s)
    seed = s.seed if not s.random_seed else random.randrange(MAX_SEED)
    walk = LatentWalk(s.grid, seed, frames_per_segment)
    meter, ui = WorkMeter(), RateMeter()
    t_start = time.perf_counter()
    while not stop.is_set() and time.perf_counter() - t_start < max_seconds:
        t_frame = time.perf_counter()
        s = get_settings()
        if s.grid != walk.n:
            walk = LatentWalk(s.grid, seed, frames_per_segment)
        x, dt = engine.drift_from_noise(next(walk), s)
        meter.add(dt)
        ui.tick()
        fps = meter.per_second
        k, j = divmod(walk.i - 1, frames_per_segment)
        stats = (f"**Latent walk (drift)** — model **{fps:.1f} frames/s** ({1000 * meter.mean:.1f} ms per frame) · "
                 f"UI **{ui.rate:.1f} frames/s** · segment {k}, frame {j + 1}/{frames_per_segment} · walk seed {seed}")
        yield LiveFrame(x, None, stats, "", f"Latent walk · segment {k}", "")
        wait = 1.0 / max_fps - (time.perf_counter() - t_frame)
        if wait > 0:
            stop.wait(wait)
