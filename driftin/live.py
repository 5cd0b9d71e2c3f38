"""Live-demo logic behind the Gradio view (driftin/app.py), free of any UI code.

Drift (one forward pass) and DDPM (DDIM steps) rendered side by side from the same seeds, with the
model's own speed (GPU-synchronised wall time of the forward work only) measured apart from the rate
at which frames reach the UI; slerp latent walks; grids, side-by-side frames, GIF/MP4 clips.
"""
from __future__ import annotations

import collections
import math
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .data import CIFAR10_CLASSES
from .generate import generate, make_noise

# Server-side bounds (the UI sliders use the same numbers, but requests are checked here too).
GRID_SIZES = (1, 4, 9, 16)
MAX_STEPS = 100
GUIDANCE_RANGE = (1.0, 5.0)
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


class Stopped(Exception):
    """Raised inside a DDIM callback to abandon a sample when the live session ends."""


# ----------------------------------------------------------------------------------------------
# validation


@dataclass(frozen=True)
class Settings:
    seed: int = 0
    random_seed: bool = True
    grid: int = 4
    steps: int = 25
    label: int | str | None = None  # CIFAR-10 class index, None = unconditional, MIXED = a class per tile
    guidance: float = 1.0
    view: str = "x0"


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
    if s in CIFAR10_CLASSES:
        return CIFAR10_CLASSES.index(s)
    if s.isdigit() and int(s) < len(CIFAR10_CLASSES):
        return int(s)
    raise ValueError(f"unknown class {name!r}; choose one of {', '.join(CLASS_CHOICES)}")


def validate(seed=0, random_seed=True, grid=4, steps=25, class_name=UNCONDITIONAL, guidance=1.0, view="x0") -> Settings:
    """Settings from raw request values; ValueError with a clear message when anything is out of bounds."""
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
        guidance=_number("guidance scale", guidance, *GUIDANCE_RANGE, integer=False),
        view=view,
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


# ----------------------------------------------------------------------------------------------
# meters


class RateMeter:
    """Events per second over a sliding time window (e.g. frames handed to the UI)."""

    def __init__(self, window: float = 2.0, clock: Callable[[], float] = time.perf_counter):
        self.window, self.clock = window, clock
        self.times: collections.deque[float] = collections.deque()
        self.count = 0

    def tick(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.times.append(now)
        self.count += 1
        while len(self.times) > 2 and now - self.times[0] > self.window:
            self.times.popleft()

    @property
    def rate(self) -> float:
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


class WorkMeter:
    """Throughput of timed work: durations of the last `window` calls (frames / second of model time)."""

    def __init__(self, window: int = 30):
        self.durations: collections.deque[float] = collections.deque(maxlen=window)
        self.total, self.count = 0.0, 0

    def add(self, seconds: float) -> None:
        self.durations.append(max(float(seconds), 1e-9))
        self.total += seconds
        self.count += 1

    @property
    def mean(self) -> float:
        return sum(self.durations) / len(self.durations) if self.durations else 0.0

    @property
    def per_second(self) -> float:
        m = self.mean
        return 1.0 / m if m > 0 else 0.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FairLock:
    """FIFO lock: one model call at a time per device, served in arrival order (threading.Lock is not fair,
    so a busy drift loop could starve the DDIM thread). Serialising also makes the timings honest."""

    def __init__(self):
        self._cond = threading.Condition()
        self._next = self._serving = 0

    def acquire(self) -> None:
        with self._cond:
            ticket = self._next
            self._next += 1
            while ticket != self._serving:
                self._cond.wait()

    def release(self) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


# ----------------------------------------------------------------------------------------------
# images


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model space -> uint8 on the CPU (same rounding as generate)."""
    return x.float().clamp(-1, 1).add(1).div(2).mul(255).round().to(torch.uint8).cpu()


def grid_side(n: int, scale: int = TILE_SCALE, pad: int = PAD, size: int = 32) -> int:
    k = math.ceil(math.sqrt(n))
    return k * size * scale + (k - 1) * pad


def make_grid(images, scale: int = TILE_SCALE, pad: int = PAD, pad_value: int = 255) -> np.ndarray:
    """uint8 images [n, 3, h, w] (tensor or array) -> one HxWx3 uint8 square grid, each image upscaled
    `scale`x with nearest neighbour; side = k*h*scale + (k-1)*pad with k = ceil(sqrt(n))."""
    a = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.ndim != 4 or a.shape[1] not in (1, 3) or a.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [n, 3, h, w], got {a.dtype} {a.shape}")
    n, c, h, w = a.shape
    a = a.transpose(0, 2, 3, 1).repeat(scale, 1).repeat(scale, 2)
    if c == 1:
        a = a.repeat(3, 3)
    k = math.ceil(math.sqrt(n))
    th, tw = h * scale, w * scale
    out = np.full((k * th + (k - 1) * pad, k * tw + (k - 1) * pad, 3), pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, k)
        out[r * (th + pad): r * (th + pad) + th, q * (tw + pad): q * (tw + pad) + tw] = a[i]
    return out


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def side_by_side(left: np.ndarray, right: np.ndarray, titles: tuple[str, str] = ("", ""), gap: int = 8,
                 bar: int = 22, bg: int = 255) -> np.ndarray:
    """Two HxWx3 panels next to each other (top-aligned) with a title bar above each."""
    from PIL import Image, ImageDraw

    h = max(left.shape[0], right.shape[0])
    w = left.shape[1] + gap + right.shape[1]
    top = bar if any(titles) else 0
    out = np.full((top + h, w, 3), bg, np.uint8)
    out[top: top + left.shape[0], : left.shape[1]] = left
    x1 = left.shape[1] + gap
    out[top: top + right.shape[0], x1: x1 + right.shape[1]] = right
    if top:
        img = Image.fromarray(out)
        draw, font = ImageDraw.Draw(img), _font()
        for x, t in ((0, titles[0]), (x1, titles[1])):
            draw.text((x + 3, 3), t, fill=(20, 20, 20), font=font)
        out = np.asarray(img)
    return out


def gif_scale(n: int) -> int:
    """Upscale factor for clips: panels of about 200-260 px whatever the grid size."""
    return {1: 8, 2: 4}.get(math.ceil(math.sqrt(n)), 2)


def same_size(frames: list[np.ndarray], bg: int = 255) -> list[np.ndarray]:
    """Frames on one canvas (the largest height and width), top-left aligned: a clip may span a grid change
    (4 -> 9 tiles changes the panel size), and GIF/MP4 frames must all have one size."""
    h = max(f.shape[0] for f in frames)
    w = max(f.shape[1] for f in frames)
    return [f if f.shape[:2] == (h, w) else np.pad(f, ((0, h - f.shape[0]), (0, w - f.shape[1]), (0, 0)), constant_values=bg)
            for f in frames]


def write_gif(frames: list[np.ndarray], path: str | Path, durations: list[float] | float) -> Path:
    """Looping GIF; durations in seconds (one per frame, or one for all)."""
    import imageio.v3 as iio

    if len(frames) < 1:
        raise ValueError("no frames to write")
    d = [durations] * len(frames) if isinstance(durations, (int, float)) else list(durations)
    ms = [max(20, int(round(s * 1000))) for s in d]  # GIF delays have 10 ms resolution; browsers floor at 20
    iio.imwrite(path, np.stack(same_size(frames)), extension=".gif", duration=ms, loop=0)
    return Path(path)


def mp4_available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def write_mp4(frames: list[np.ndarray], path: str | Path, fps: float) -> Path:
    import imageio.v2 as iio2

    frames = same_size(frames)
    h, w = frames[0].shape[:2]
    H, W = -(-h // 16) * 16, -(-w // 16) * 16  # H.264 wants even sides; 16 avoids imageio's resize
    with iio2.get_writer(str(path), fps=max(1.0, fps), codec="libx264", quality=8, macro_block_size=16,
                         ffmpeg_log_level="error", pixelformat="yuv420p") as wr:
        for f in frames:
            wr.append_data(np.pad(f, ((0, H - h), (0, W - w), (0, 0)), constant_values=255))
    return Path(path)


# ----------------------------------------------------------------------------------------------
# latent walk


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dot_threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation between noise batches a, b [n, ...] (per sample, flattened); t in [0, 1].
    Exact endpoints; keeps the norm of Gaussian noise (so every frame is a typical noise sample)."""
    if a.shape != b.shape:
        raise ValueError(f"slerp of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    t = float(t)
    if t <= 0.0:
        return a.clone()
    if t >= 1.0:
        return b.clone()
    fa, fb = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    omega = cos.clamp(-1, 1).acos()
    so = omega.sin()
    lerp = cos.abs() > dot_threshold
    wa = torch.where(lerp, 1 - t, ((1 - t) * omega).sin() / so.clamp_min(1e-12))
    wb = torch.where(lerp, torch.full_like(omega, t), (t * omega).sin() / so.clamp_min(1e-12))
    out = wa[:, None] * fa + wb[:, None] * fb
    return out.reshape(a.shape).to(a.dtype)


class LatentWalk:
    """Per-tile noise keypoints (from seeds) visited in turn by slerp, `frames` frames per segment."""

    def __init__(self, n: int, seed: int, frames: int, shape=(3, 32, 32), device=None):
        self.n, self.seed, self.frames, self.shape, self.device = n, seed, frames, shape, device
        self.i = 0
        self._cache: dict[int, torch.Tensor] = {}

    def keypoint(self, k: int) -> torch.Tensor:
        if k not in self._cache:
            self._cache = {j: v for j, v in self._cache.items() if j >= k - 1}
            seeds = [(self.seed + (k * self.n) + j) % (2**63) for j in range(self.n)]
            self._cache[k] = make_noise(seeds, self.shape, self.device)
        return self._cache[k]

    def noise_at(self, i: int) -> torch.Tensor:
        k, j = divmod(i, self.frames)
        return slerp(self.keypoint(k), self.keypoint(k + 1), j / self.frames)

    def __next__(self) -> torch.Tensor:
        z = self.noise_at(self.i)
        self.i += 1
        return z


# ----------------------------------------------------------------------------------------------
# models


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
    from .hub import looks_local
    from .paths import checkout_root

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
    from .hub import WeightsCorrupt, WeightsError, load_pretrained

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
    def require(self, kind: str) -> torch.nn.Module:
        slot = self.drift if kind == "drift" else self.ddpm
        if not slot.ok:
            raise ValueError(slot.error)
        return slot.model

    def check(self, kind: str, s: Settings) -> None:
        cfg = self.require(kind).config
        if s.label is not None and not cfg.num_classes:
            raise ValueError(f"the {kind} model is unconditional: choose class '{UNCONDITIONAL}'")

    def drift_guidance(self, s: Settings) -> float:
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
        model = self.require("drift")
        self.check("drift", s)
        with self.lock:
            sync(self.device)
            t0 = time.perf_counter()
            x = self._generate(model, seeds=seeds, method="drift", class_labels=tile_labels(s, seeds),
                               guidance=self.drift_guidance(s), output="uint8", device=self.device)
            sync(self.device)
            dt = time.perf_counter() - t0
            x = x.cpu()
        return x, dt

    def drift_from_noise(self, noise: torch.Tensor, s: Settings, labels=None) -> tuple[torch.Tensor, float]:
        """The drift generator on given noise (latent walks); labels: per-tile classes (default from s)."""
        model = self.require("drift")
        self.check("drift", s)
        if labels is None and s.label is not None:
            labels = tile_labels(s, list(range(noise.shape[0])))
        with self.lock:
            sync(self.device)
            t0 = time.perf_counter()
            x = self._generate(model, noise=noise, method="drift", class_labels=labels,
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
        model = self.require("ddpm")
        self.check("ddpm", s)
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
                               guidance=s.guidance, output="uint8", device=self.device, callback=callback).cpu()
        finally:
            self.lock.release()
        return x


def tile_labels(s: Settings, seeds: list[int]) -> int | list[int] | None:
    """Class labels for a frame: one class for all tiles, none, or (MIXED) class seed % 10 per tile, so a
    fixed seed keeps its class and both panels give a tile the same class."""
    if s.label == MIXED:
        return [seed % len(CIFAR10_CLASSES) for seed in seeds]
    return s.label


def frame_seeds(s: Settings, base: int, frame: int) -> list[int]:
    """Seeds of one frame: fixed seed -> the same every frame; else a fresh block per frame."""
    start = s.seed if not s.random_seed else base + frame * s.grid
    return [(start + i) % (2**63) for i in range(s.grid)]


def seed_label(seeds: list[int]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}"


# ----------------------------------------------------------------------------------------------
# the live side-by-side


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
    for kind in ("drift", "ddpm"):
        if (engine.drift if kind == "drift" else engine.ddpm).ok:
            engine.check(kind, s)
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


# ----------------------------------------------------------------------------------------------
# recording


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


__all__ = [
    "Settings", "validate", "validate_record", "validate_walk", "parse_class", "RateMeter", "WorkMeter", "FairLock",
    "make_grid", "grid_side", "side_by_side", "slerp", "LatentWalk", "Slot", "load_slot", "how_to_get", "Engine",
    "live_frames", "walk_frames", "Recorder", "record", "write_gif", "write_mp4", "clip_frame", "frame_seeds",
    "Stopped", "GRID_SIZES", "MAX_STEPS", "GUIDANCE_RANGE", "CLASS_CHOICES", "UNCONDITIONAL", "MIXED", "tile_labels",
    "same_size", "RECORD_MIN_SECONDS",
]
