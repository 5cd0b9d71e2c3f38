"""The streaming handlers: the live side-by-side stream, the latent walk, control changes of a running stream, Stop."""
from __future__ import annotations


import gradio as gr

from driftin import demo
from .sessions import SessionHandlers, rejecting, session_key


class StreamHandlers(SessionHandlers):
    """Expects, besides SessionHandlers' attributes, `max_fps` and `max_live_seconds`."""

    max_fps: float
    max_live_seconds: float

    def live(self, seed, random_seed, grid, steps, class_name, guidance, view, ddim_guidance=demo.DDIM_GUIDANCE,
             ddim_interval=True, request: gr.Request = None):
        """Live side-by-side stream: yields (drift grid, drift stats, DDPM grid, DDPM stats)."""
        s = self.settings(seed, random_seed, grid, steps, class_name, guidance, view, ddim_guidance, ddim_interval,
                          where="/live")
        sess = self._session(request, "live", s)
        try:
            with rejecting("/live"):
                frames = demo.live_frames(self.engine, lambda: sess.settings, sess.stop, self.max_fps,
                                          self.max_live_seconds, finish=sess.finish)
                for f in frames:
                    if sess.recorder is not None:
                        sess.recorder.offer(f)
                    yield (demo.make_grid(f.drift) if f.drift is not None else gr.skip(), f.drift_stats,
                           demo.make_grid(f.ddpm) if f.ddpm is not None else gr.skip(), f.ddpm_stats)
        finally:
            self._end(request, "live", sess)

    def walk(self, seed, random_seed, grid, class_name, guidance, frames_per_segment, request: gr.Request = None):
        """Latent walk stream: yields (drift grid, stats)."""
        s = self.settings(seed, random_seed, grid, 1, class_name, guidance, where="/latent_walk")
        with rejecting("/latent_walk"):
            n = demo.validate_walk(frames_per_segment)
        self._check("drift", s, "/latent_walk")
        sess = self._session(request, "walk", s)
        try:
            for f in demo.walk_frames(self.engine, lambda: sess.settings, n, sess.stop, 30.0, self.max_live_seconds):
                if sess.recorder is not None:
                    sess.recorder.offer(f, walk=True)
                yield demo.make_grid(f.drift), f.drift_stats
        finally:
            self._end(request, "walk", sess)

    def update(self, seed, random_seed, grid, steps, class_name, guidance, view, ddim_guidance=demo.DDIM_GUIDANCE,
               ddim_interval=True, request: gr.Request = None):
        """Controls changed: running streams of this browser session pick the new settings up."""
        key = session_key(request)
        running = [self.sessions.get((key, k)) for k in ("live", "walk")]
        if any(running):
            s = self.settings(seed, random_seed, grid, steps, class_name, guidance, view, ddim_guidance, ddim_interval,
                              where="controls")
            with rejecting("controls"):  # the same settings for every running stream: checked once
                self.engine.check_loaded(s)
            for sess in running:
                if sess is not None:
                    sess.settings = s

    def stop(self, request: gr.Request = None, kinds=("live", "walk")):
        key = session_key(request)
        for kind in kinds:
            sess = self.sessions.get((key, kind))
            if sess is not None:
                sess.stop.set()

    def stop_live(self, request: gr.Request = None, timeout: float = 120.0):
        """The Stop button: drift stops at once; the DDPM sample in progress finishes and stays on screen.
        Returns once the stream has ended by itself (or after `timeout`); the page then cancels whatever is left,
        e.g. a stream still waiting in the queue."""
        sess = self.sessions.get((session_key(request), "live"))
        if sess is None:
            return
        sess.finish.set()
        sess.stop.wait(timeout)

    def stop_walk(self, request: gr.Request = None):
        self.stop(request, ("walk",))

    def on_unload(self, request: gr.Request = None):
        self.stop(request)
