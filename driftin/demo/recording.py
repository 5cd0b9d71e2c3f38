"""Recording a stream into a GIF (and an MP4 when imageio-ffmpeg is installed)."""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .images import grid_side, gif_scale, make_grid, mp4_available, side_by_side, write_gif, write_mp4
from .settings import RECORD_HARD_LIMIT, RECORD_MAX_FPS, RECORD_MAX_FRAMES
from .streams import LiveFrame

class Recorder:
    """Collects side-by-side frames from a running stream for `seconds` (sampled at most `fps` per second),
    then writes a GIF (+ MP4 when imageio-ffmpeg is there).

    wait_ddpm: past `seconds`, keep recording until the DDPM panel shows a finished sample (at most
    `hard_limit` seconds in all), so a short clip of a slow DDIM run still ends on its result. To stay within
    `max_frames`, a long recording drops every other frame and halves its sampling rate (delays stay real-time)."""

    def __init__(self, seconds: float, fps: float = RECORD_MAX_FPS, max_frames: int = RECORD_MAX_FRAMES,
                 min_frames: int = 2, hard_limit: float | None = None, clock: Callable[[], float] = time.perf_counter,
                 wait_ddpm: bool = False):
        self.clock = clock
        self.seconds, self.fps, self.max_frames, self.min_frames = seconds, min(fps, RECORD_MAX_FPS), max_frames, min_frames
        self.hard_limit = hard_limit if hard_limit is not None else seconds + RECORD_HARD_LIMIT
        self.wait_ddpm = wait_ddpm
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.t0: float | None = None
        self.done = threading.Event()
        self.ddpm_finished = False  # the last kept frame shows a finished DDPM sample

    def _thin(self) -> None:
        keep = list(range(0, len(self.frames), 2))
        if keep[-1] != len(self.frames) - 1:
            keep[-1] = len(self.frames) - 1  # the newest frame stays (it may be the finished sample)
        self.frames = [self.frames[i] for i in keep]
        self.times = [self.times[i] for i in keep]
        self.fps /= 2

    def offer(self, f: LiveFrame, walk: bool = False) -> None:
        if self.done.is_set():
            return
        now = self.clock()
        if self.t0 is None:
            self.t0 = now
        elapsed = now - self.t0
        finished = self.wait_ddpm and f.ddpm_done and f.ddpm is not None  # the frame that first shows the result
        if finished or not self.times or now - self.times[-1] >= 1.0 / self.fps - 1e-3:
            self.frames.append(clip_frame(f, walk))
            self.times.append(now)
            self.ddpm_finished = f.ddpm_done
            if len(self.frames) > self.max_frames:  # only when waiting for DDPM: the other case ends at max_frames
                self._thin()
        enough = len(self.frames) >= self.min_frames and elapsed >= self.seconds
        if enough and self.wait_ddpm and not self.ddpm_finished:
            enough = False
        full = len(self.frames) >= self.max_frames and not self.wait_ddpm  # (waiting thins out instead)
        if enough or full or elapsed >= self.hard_limit:
            self.done.set()

    def durations(self) -> list[float]:
        if len(self.times) < 2:
            return [1.0 / self.fps] * len(self.times)
        d = list(np.diff(self.times))
        return d + [d[-1]]

    def write(self, folder: str | Path | None = None, mp4: bool = True) -> tuple[Path, Path | None]:
        folder = Path(folder or tempfile.mkdtemp(prefix="driftin-clip-"))
        gif = write_gif(self.frames, folder / "driftin_live.gif", self.durations())
        video = None
        if mp4 and mp4_available():
            try:
                span = self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0
                fps = (len(self.times) - 1) / span if span > 0 else self.fps
                video = write_mp4(self.frames, folder / "driftin_live.mp4", fps)
            except Exception:  # noqa: BLE001 - the GIF is the product; MP4 is a bonus
                video = None
        return gif, video


def clip_frame(f: LiveFrame, walk: bool = False) -> np.ndarray:
    """A frame for clips: the panels' grids at the clip scale (gif_scale), titled, side by side."""
    ref = f.drift if f.drift is not None else f.ddpm_latest
    if ref is None:
        raise ValueError("empty frame")
    scale = gif_scale(ref.shape[0])
    blank = np.full((grid_side(ref.shape[0], scale),) * 2 + (3,), 235, np.uint8)
    left = make_grid(f.drift, scale) if f.drift is not None else blank
    if walk:
        return side_by_side(left, left[:, :0], (f.drift_title, ""), gap=0)
    right = make_grid(f.ddpm_latest, scale) if f.ddpm_latest is not None else blank
    return side_by_side(left, right, (f.drift_title, f.ddpm_title or "DDPM"))


def record(frames: Iterator[LiveFrame], seconds: float, stop: threading.Event, walk: bool = False,
           folder: str | Path | None = None, wait_ddpm: bool = False) -> tuple[Path, Path | None, int]:
    """Run a stream just for a clip: (gif path, mp4 path or None, frame count)."""
    rec = Recorder(seconds, wait_ddpm=wait_ddpm)
    try:
        for f in frames:
            rec.offer(f, walk)
            if rec.done.is_set():
                break
    finally:
        stop.set()
        close = getattr(frames, "close", None)
        if close:
            close()
    if not rec.frames:
        raise RuntimeError("the stream produced no frames")
    gif, mp4 = rec.write(folder)
    return gif, mp4, len(rec.frames)
