"""Image compositing for the demo: uint8 grids, titled side-by-side panels, GIF and MP4 clips."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .settings import PAD, TILE_SCALE

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
