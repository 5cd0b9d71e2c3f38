"""The one-shot named API (gradio_client): /drift_frame, /ddim (streamed DDIM steps), /record_gif."""
from __future__ import annotations

import queue
import random
import threading
import time

import gradio as gr

from driftin import demo
from driftin.demo import MIXED
from .sessions import SessionHandlers, rejected, rejecting, session_key


class EndpointHandlers(SessionHandlers):
    """Expects, besides SessionHandlers' attributes, `max_fps`."""

    max_fps: float

    def drift_frame(self, seed=0, random_seed=False, grid=4, class_name=MIXED, guidance=1.0):
        """One drift grid (one forward pass). Returns an image: ceil(sqrt(grid)) tiles of 128 px a side, 2 px apart."""
        s = self.settings(seed, random_seed, grid, 1, class_name, guidance, where="/drift_frame")
        self._check("drift", s, "/drift_frame")
        seeds = demo.frame_seeds(s, random.randrange(demo.MAX_SEED), 0)
        x, _ = self.engine.drift_images(seeds, s)
        return demo.make_grid(x)

    def ddim(self, seed=0, random_seed=False, grid=4, steps=25, class_name=MIXED, guidance=demo.DDIM_GUIDANCE,
             ddim_interval=True, progress=gr.Progress()):
        """One DDPM sample by DDIM with `steps` steps, streamed: the x0 prediction after each step (at most
        max_fps a second), then the final grid (same layout as /drift_frame; the API's result). `guidance` is
        DDIM's (the page's DDIM guidance slider): the name predates drift's own slider and keeps callers working."""
        s = self.settings(seed, random_seed, grid, steps, class_name, ddim_guidance=guidance, ddim_interval=ddim_interval,
                          where="/ddim")
        self._check("ddpm", s, "/ddim")
        seeds = demo.frame_seeds(s, random.randrange(demo.MAX_SEED), 0)
        q: queue.Queue = queue.Queue()
        stop = threading.Event()

        def run():
            try:
                q.put(("done", self.engine.ddim_images(seeds, s, stop=stop,
                                                       on_step=lambda i, x_t, x0, dt: q.put(("step", i, x0)))))
            except demo.Stopped:
                q.put(("stopped", None))
            except Exception as e:  # noqa: BLE001 - re-raised in the handler's thread
                q.put(("error", e))

        threading.Thread(target=run, daemon=True, name="driftin-ddim").start()
        progress((0, s.steps), desc="DDIM", unit="steps")
        last = 0.0
        try:
            while True:
                item = q.get()
                if item[0] == "step":
                    i, x0 = item[1], item[2]
                    progress((i + 1, s.steps), desc="DDIM", unit="steps")
                    if q.empty() and time.perf_counter() - last >= 1.0 / self.max_fps:  # skip frames we're behind on
                        last = time.perf_counter()
                        yield demo.make_grid(x0)
                elif item[0] == "done":
                    yield demo.make_grid(item[1])
                    return
                elif item[0] == "error":
                    raise item[1]
                else:
                    return
        finally:
            stop.set()  # a closed request abandons the sample

    def record_gif(self, seconds=3.0, seed=0, random_seed=True, grid=4, steps=25, class_name=MIXED,
                   guidance=1.0, what="side-by-side", ddim_guidance=demo.DDIM_GUIDANCE, ddim_interval=True,
                   request: gr.Request = None):
        """Record a clip of at least `seconds` (1-10 s); a side-by-side clip goes on until the DDPM sample in
        progress has finished (<= 60 s more), so it ends on DDIM's result. If this browser session is streaming,
        the running stream is recorded; otherwise a fresh one is run. Returns the GIF's path (the MP4, when made,
        goes to a State). guidance is drift's, ddim_guidance DDIM's (last, so positional callers keep working)."""
        with rejecting("/record_gif"):
            secs = demo.validate_record(seconds)
        if what not in ("side-by-side", "latent walk"):
            raise rejected("/record_gif", f"what must be 'side-by-side' or 'latent walk', got {what!r}")
        s = self.settings(seed, random_seed, grid, steps, class_name, guidance, ddim_guidance=ddim_guidance,
                          ddim_interval=ddim_interval, where="/record_gif")
        kind = "walk" if what == "latent walk" else "live"
        wait_ddpm = kind == "live" and self.engine.ddpm.ok
        running = self.sessions.get((session_key(request), kind))
        if running is not None and not running.stop.is_set():
            rec = running.recorder = demo.Recorder(secs, wait_ddpm=wait_ddpm)
            deadline = time.perf_counter() + secs + demo.RECORD_HARD_LIMIT + 5
            while not rec.done.wait(0.2) and not running.stop.is_set() and time.perf_counter() < deadline:
                pass
            running.recorder = None
            if not rec.frames:
                raise rejected("/record_gif", "the running stream produced no frames to record")
            gif, mp4 = rec.write()
        else:
            if kind == "walk":
                self._check("drift", s, "/record_gif")
            stop = threading.Event()
            get = (lambda: s)
            limit = secs + demo.RECORD_HARD_LIMIT + 5
            frames = (demo.walk_frames(self.engine, get, 24, stop, 30.0, limit) if kind == "walk"
                      else demo.live_frames(self.engine, get, stop, self.max_fps, limit))
            with rejecting("/record_gif"):
                gif, mp4, _ = demo.record(frames, secs, stop, walk=kind == "walk", wait_ddpm=wait_ddpm)
        return str(gif), (str(mp4) if mp4 else None)
