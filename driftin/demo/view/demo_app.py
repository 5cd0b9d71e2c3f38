"""DemoApp: the two models (loaded into a timed demo.Engine, their status for the page) joined with the handlers
of streams.py and endpoints.py and the page of page.py."""
from __future__ import annotations

import os
import threading

import gradio as gr
import torch

from driftin import demo
from driftin.demo import MIXED, UNCONDITIONAL
from driftin.fast import FastOptions
from driftin.generate import resolve_device
from .endpoints import EndpointHandlers
from .page import build_page
from .sessions import Session
from .streams import StreamHandlers

DEFAULT_DRIFT = "drift-cifar10"  # names: looked up in $DRIFTIN_WEIGHTS, ./weights, the checkout's weights/
DEFAULT_DDPM = "ddpm-cifar10"


class DemoApp(StreamHandlers, EndpointHandlers):
    """Models + per-browser-session stream state; the Gradio handlers are its methods."""

    def __init__(self, drift: str = DEFAULT_DRIFT, ddpm: str = DEFAULT_DDPM, device: str = "auto",
                 max_live_seconds: float = 600.0, max_fps: float = 24.0):
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
        fast = FastOptions.from_env() if self.device.type == "cuda" else None  # the app is a CLI: it reads DRIFTIN_*
        self.engine = demo.Engine(demo.load_slot("drift", drift, self.device), demo.load_slot("ddpm", ddpm, self.device), self.device,
                                  fast=fast)
        self.max_live_seconds, self.max_fps = max_live_seconds, max_fps
        self.sessions: dict[tuple[str, str], Session] = {}
        self._lock = threading.Lock()

    # ---- status
    def status_markdown(self) -> str:
        lines = []
        for slot in (self.engine.drift, self.engine.ddpm):
            if slot.ok:
                cfg, meta = slot.model.config, slot.model.meta
                n_params = sum(p.numel() for p in slot.model.parameters()) / 1e6
                cond = f"{cfg.num_classes} classes" if cfg.num_classes else "unconditional"
                lines.append(f"- **{slot.kind}**: `{slot.source}` — objective `{meta.get('objective')}`, "
                             f"{n_params:.1f}M params, {cond}" + (", guidance input" if cfg.guidance_input else ""))
            else:
                lines.append(f"- ⚠️ **{slot.kind} weights {slot.problem or 'missing'}** — {slot.error}")
        fast = "fast path on" if self.engine.fast else "eager"
        return f"**Device**: `{self.device}` ({fast})\n\n" + "\n".join(lines)

    @property
    def missing(self) -> bool:
        return not (self.engine.drift.ok and self.engine.ddpm.ok)

    @property
    def default_class(self) -> str:
        """A class per tile when every loaded model is conditional (drift's unconditional samples are weak)."""
        slots = [s for s in (self.engine.drift, self.engine.ddpm) if s.ok]
        return MIXED if slots and all(s.model.config.num_classes for s in slots) else UNCONDITIONAL

    # ---- the page
    def build(self, autostart: bool = False, concurrency: int | None = None, queue_size: int = 64,
              max_live: int | None = None) -> gr.Blocks:
        return build_page(self, autostart, concurrency, queue_size, max_live)
