"""driftin live demo (the Gradio view): one-step drift vs. DDPM/DDIM, same UNet, same noise, CIFAR-10 32x32.

    driftin app [--drift FOLDER_OR_REPO] [--ddpm FOLDER_OR_REPO] [--host 127.0.0.1 --port 7860] [--device auto]
    python app.py ...            # the same, from a checkout or a Hugging Face Space

Weights: a local folder, a name under $DRIFTIN_WEIGHTS / ./weights / the checkout's weights/, or a Hub repo id
(env DRIFTIN_DRIFT / DRIFTIN_DDPM). The app starts without them and says what is missing or corrupt.
Logic lives in the driftin/demo/ package; this module is the view. API (gradio_client): /drift_frame, /ddim, /record_gif.
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field

import gradio as gr
import torch

from . import demo
from .fast import FastOptions
from .generate import resolve_device
from .demo import (CLASS_CHOICES, GRID_SIZES, GUIDANCE_RANGE, MAX_STEPS, MIXED, RECORD_MAX_SECONDS, RECORD_MIN_SECONDS,
                   UNCONDITIONAL)
from .paths import default_weights

log = logging.getLogger("driftin.app")

DEFAULT_DRIFT = "drift-cifar10"  # names: looked up in $DRIFTIN_WEIGHTS, ./weights, the checkout's weights/
DEFAULT_DDPM = "ddpm-cifar10"
CLASS_LABELS = {MIXED: "mixed (a class per tile)"}

CSS = """
#drift-panel img, #ddpm-panel img, #walk-panel img, #gif-preview img { image-rendering: pixelated; }
.weights-missing { border-left: 4px solid #d33; padding-left: 8px; }
.browser-fps { position: absolute; right: 8px; bottom: 6px; z-index: 10; font: 12px monospace;
               background: rgba(255, 255, 255, 0.85); color: #222; padding: 1px 5px; border-radius: 3px; }
"""

# The frame rate the browser actually shows: counts image changes per panel (frames delivered and displayed).
HEAD = """<script>
(() => {
  const ids = ["drift-panel", "ddpm-panel", "walk-panel"], st = {};
  function poll() {
    const now = performance.now();
    for (const id of ids) {
      const el = document.getElementById(id), img = el && el.querySelector("img");
      if (!img) continue;
      const s = st[id] || (st[id] = {src: null, t: []});
      if (img.src !== s.src) { s.src = img.src; s.t.push(now); }
      s.t = s.t.filter(x => now - x < 3000);
      let tag = el.querySelector(".browser-fps");
      if (!tag) { tag = document.createElement("div"); tag.className = "browser-fps"; el.appendChild(tag); }
      const n = s.t.length, fps = n > 1 && now - s.t[n - 1] < 2000 ? (n - 1) * 1000 / (s.t[n - 1] - s.t[0]) : 0;
      tag.textContent = "browser: " + fps.toFixed(1) + " frames/s";
    }
    requestAnimationFrame(poll);
  }
  requestAnimationFrame(poll);
})();
</script>"""
LAUNCH_KW = {"css": CSS, "head": HEAD}


def grid_radio(**kw) -> gr.Radio:
    """The grid-size radio, documented as the integer the server takes (gr.Radio documents choices as strings, and
    gradio_client renders any enum as a Literal of strings: '4'). An instance override rather than a subclass,
    since Gradio writes a .pyi stub next to the module of every component subclass."""
    radio = gr.Radio(list(GRID_SIZES), **kw)
    radio.api_info = lambda: {"type": "integer", "title": "Grid",
                              "description": f"images per grid, one of {', '.join(map(str, GRID_SIZES))}"}
    return radio


def rejected(where: str, msg: str) -> gr.Error:
    """A bad request: one log line (no traceback) and a clear message for the user."""
    log.warning("rejected %s: %s", where, msg)
    return gr.Error(msg, print_exception=False)


@dataclass
class Session:
    settings: demo.Settings
    stop: threading.Event = field(default_factory=threading.Event)  # end now (tab closed, new stream)
    finish: threading.Event = field(default_factory=threading.Event)  # Stop button: let the DDPM sample finish
    recorder: demo.Recorder | None = None


def _key(request) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


class DemoApp:
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

    # ---- helpers
    @staticmethod
    def settings(seed, random_seed, grid, steps, class_name, guidance, view="x0", where="request") -> demo.Settings:
        try:
            return demo.validate(seed, random_seed, grid, steps, class_name, guidance, view)
        except ValueError as e:
            raise rejected(where, str(e)) from None

    def _session(self, request: gr.Request | None, kind: str, s: demo.Settings) -> Session:
        key = (_key(request), kind)
        with self._lock:
            old = self.sessions.get(key)
            if old is not None:
                old.stop.set()  # one stream of a kind per browser session
            sess = self.sessions[key] = Session(s)
        return sess

    def _end(self, request, kind: str, sess: Session) -> None:
        sess.stop.set()
        key = (_key(request), kind)
        with self._lock:
            if self.sessions.get(key) is sess:
                del self.sessions[key]

    def _check(self, kind: str, s: demo.Settings, where: str = "request") -> None:
        try:
            self.engine.require(kind)
            self.engine.check(kind, s)
        except ValueError as e:
            raise rejected(where, str(e)) from None

    # ---- streams
    def live(self, seed, random_seed, grid, steps, class_name, guidance, view, request: gr.Request = None):
        """Live side-by-side stream: yields (drift grid, drift stats, DDPM grid, DDPM stats)."""
        s = self.settings(seed, random_seed, grid, steps, class_name, guidance, view, where="/live")
        sess = self._session(request, "live", s)
        try:
            frames = demo.live_frames(self.engine, lambda: sess.settings, sess.stop, self.max_fps, self.max_live_seconds,
                                      finish=sess.finish)
            for f in frames:
                if sess.recorder is not None:
                    sess.recorder.offer(f)
                yield (demo.make_grid(f.drift) if f.drift is not None else gr.skip(), f.drift_stats,
                       demo.make_grid(f.ddpm) if f.ddpm is not None else gr.skip(), f.ddpm_stats)
        except ValueError as e:
            raise rejected("/live", str(e)) from None
        finally:
            self._end(request, "live", sess)

    def walk(self, seed, random_seed, grid, class_name, guidance, frames_per_segment, request: gr.Request = None):
        """Latent walk stream: yields (drift grid, stats)."""
        s = self.settings(seed, random_seed, grid, 1, class_name, guidance, where="/latent_walk")
        try:
            n = demo.validate_walk(frames_per_segment)
        except ValueError as e:
            raise rejected("/latent_walk", str(e)) from None
        self._check("drift", s, "/latent_walk")
        sess = self._session(request, "walk", s)
        try:
            for f in demo.walk_frames(self.engine, lambda: sess.settings, n, sess.stop, 30.0, self.max_live_seconds):
                if sess.recorder is not None:
                    sess.recorder.offer(f, walk=True)
                yield demo.make_grid(f.drift), f.drift_stats
        finally:
            self._end(request, "walk", sess)

    def update(self, seed, random_seed, grid, steps, class_name, guidance, view, request: gr.Request = None):
        """Controls changed: running streams of this browser session pick the new settings up."""
        key = _key(request)
        running = [self.sessions.get((key, k)) for k in ("live", "walk")]
        if any(running):
            s = self.settings(seed, random_seed, grid, steps, class_name, guidance, view, where="controls")
            for sess in running:
                if sess is not None:
                    try:
                        for kind in ("drift", "ddpm"):
                            if (self.engine.drift if kind == "drift" else self.engine.ddpm).ok:
                                self.engine.check(kind, s)
                    except ValueError as e:
                        raise rejected("controls", str(e)) from None
                    sess.settings = s

    def stop(self, request: gr.Request = None, kinds=("live", "walk")):
        key = _key(request)
        for kind in kinds:
            sess = self.sessions.get((key, kind))
            if sess is not None:
                sess.stop.set()

    def stop_live(self, request: gr.Request = None, timeout: float = 120.0):
        """The Stop button: drift stops at once; the DDPM sample in progress finishes and stays on screen.
        Returns once the stream has ended by itself (or after `timeout`); the page then cancels whatever is left,
        e.g. a stream still waiting in the queue."""
        sess = self.sessions.get((_key(request), "live"))
        if sess is None:
            return
        sess.finish.set()
        deadline = time.perf_counter() + timeout
        while not sess.stop.wait(0.05) and time.perf_counter() < deadline:
            pass

    def stop_walk(self, request: gr.Request = None):
        self.stop(request, ("walk",))

    # ---- one-shot endpoints (named API)
    def drift_frame(self, seed=0, random_seed=False, grid=4, class_name=MIXED, guidance=1.0):
        """One drift grid (one forward pass). Returns an image: ceil(sqrt(grid)) tiles of 128 px a side, 2 px apart."""
        s = self.settings(seed, random_seed, grid, 1, class_name, guidance, where="/drift_frame")
        self._check("drift", s, "/drift_frame")
        seeds = demo.frame_seeds(s, random.randrange(demo.MAX_SEED), 0)
        x, _ = self.engine.drift_images(seeds, s)
        return demo.make_grid(x)

    def ddim(self, seed=0, random_seed=False, grid=4, steps=25, class_name=MIXED, guidance=1.0,
             progress=gr.Progress()):
        """One DDPM sample by DDIM with `steps` steps, streamed: the x0 prediction after each step (at most
        max_fps a second), then the final grid (same layout as /drift_frame; the API's result)."""
        s = self.settings(seed, random_seed, grid, steps, class_name, guidance, where="/ddim")
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
                   guidance=1.0, what="side-by-side", request: gr.Request = None):
        """Record a clip of at least `seconds` (1-10 s); a side-by-side clip goes on until the DDPM sample in
        progress has finished (<= 60 s more), so it ends on DDIM's result. If this browser session is streaming,
        the running stream is recorded; otherwise a fresh one is run. Returns the GIF's path (the MP4, when made,
        goes to a State)."""
        try:
            secs = demo.validate_record(seconds)
        except ValueError as e:
            raise rejected("/record_gif", str(e)) from None
        if what not in ("side-by-side", "latent walk"):
            raise rejected("/record_gif", f"what must be 'side-by-side' or 'latent walk', got {what!r}")
        s = self.settings(seed, random_seed, grid, steps, class_name, guidance, where="/record_gif")
        kind = "walk" if what == "latent walk" else "live"
        wait_ddpm = kind == "live" and self.engine.ddpm.ok
        running = self.sessions.get((_key(request), kind))
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
            try:
                gif, mp4, _ = demo.record(frames, secs, stop, walk=kind == "walk", wait_ddpm=wait_ddpm)
            except ValueError as e:
                raise rejected("/record_gif", str(e)) from None
        return str(gif), (str(mp4) if mp4 else None)

    def on_unload(self, request: gr.Request = None):
        self.stop(request)

    # ---- the page
    def build(self, autostart: bool = False, concurrency: int | None = None, queue_size: int = 64,
              max_live: int | None = None) -> gr.Blocks:
        gpu = self.device.type == "cuda"
        concurrency = concurrency or (4 if gpu else 2)
        max_live = max_live or (8 if gpu else 2)
        default_grid = 16 if gpu else 4
        classes = [(CLASS_LABELS.get(c, c), c) for c in CLASS_CHOICES]
        with gr.Blocks(title="driftin: drift vs. diffusion, live", delete_cache=(120, 300)) as blocks:
            gr.Markdown("# driftin — one-step drifting vs. DDPM, live\n"
                        "Same UNet, same noise (same seeds), CIFAR-10 32×32. **Drift** makes a new image in one forward "
                        "pass, so it streams continuously; **DDPM** denoises step by step (DDIM) — watch its steps. "
                        "*Model* speed is the synchronised wall time of the forward passes only; *UI* is the rate frames "
                        "are delivered to this page (server side; the *browser* badge counts the frames this tab displays).")
            gr.Markdown(self.status_markdown(), elem_id="status",
                        elem_classes=["weights-missing"] if self.missing else None)
            with gr.Row():
                with gr.Column():
                    drift_img = gr.Image(label="Drift · 1 step", type="numpy", format="png", interactive=False,
                                         elem_id="drift-panel", height=420, buttons=["download"])
                    drift_md = gr.Markdown("**Drift** — press Start", elem_id="drift-stats")
                with gr.Column():
                    ddpm_img = gr.Image(label="DDPM · DDIM steps", type="numpy", format="png", interactive=False,
                                        elem_id="ddpm-panel", height=420, buttons=["download"])
                    ddpm_md = gr.Markdown("**DDPM** — press Start", elem_id="ddpm-stats")
            with gr.Row():
                start = gr.Button("▶ Start", variant="primary", elem_id="start")
                stop = gr.Button("■ Stop", variant="stop", elem_id="stop")
                one_drift = gr.Button("One drift frame", elem_id="one-drift")
                one_ddim = gr.Button("One DDIM sample", elem_id="one-ddim")
            with gr.Row():
                seed = gr.Number(value=0, label="Seed", precision=0, minimum=0, maximum=demo.MAX_SEED, elem_id="seed")
                random_seed = gr.Checkbox(value=True, label="Random seeds (new noise every frame)")
                grid = grid_radio(value=default_grid, label="Batch grid size", elem_id="grid")
                klass = gr.Dropdown(classes, value=self.default_class, label="Class", elem_id="class")
            with gr.Row():
                steps = gr.Slider(1, MAX_STEPS, value=25, step=1, label="DDIM steps")
                guidance = gr.Slider(*GUIDANCE_RANGE, value=1.0, step=0.1, label="Guidance scale")
                view = gr.Radio([("x0 prediction", "x0"), ("x_t (noisy state)", "xt")], value="x0", label="DDPM panel shows")
            with gr.Tab("Record GIF"):
                with gr.Row():
                    rec_secs = gr.Slider(RECORD_MIN_SECONDS, RECORD_MAX_SECONDS, value=3, step=0.5, elem_id="rec-secs",
                                         label="Length (s), at least; side by side runs on until the DDPM sample is done")
                    rec_what = gr.Radio(["side-by-side", "latent walk"], value="side-by-side", label="Record")
                    rec_btn = gr.Button("● Record", elem_id="record")
                with gr.Row():
                    gif_file = gr.File(label="GIF", elem_id="gif-file", interactive=False)
                    mp4_file = gr.File(label="MP4" + ("" if demo.mp4_available() else " (needs imageio-ffmpeg)"), interactive=False)
                    gif_preview = gr.Image(label="preview", type="filepath", interactive=False, elem_id="gif-preview")
                mp4_state = gr.State(None)
            with gr.Tab("Latent walk"):
                gr.Markdown("Slerp between noise vectors; drift renders every point in one forward pass, so the walk plays "
                            "as fast as this device runs the model (at most 30 frames/s; the line under the panel shows the "
                            "measured rate). A diffusion model would need every DDIM step for each frame.")
                with gr.Row():
                    walk_frames = gr.Slider(*demo.WALK_FRAMES_RANGE, value=24, step=1, label="Frames per segment")
                    walk_start = gr.Button("▶ Walk", variant="primary")
                    walk_stop = gr.Button("■ Stop", variant="stop")
                walk_img = gr.Image(label="Latent walk (drift)", type="numpy", format="png", interactive=False,
                                    elem_id="walk-panel", height=420)
                walk_md = gr.Markdown("")

            controls = [seed, random_seed, grid, steps, klass, guidance, view]
            # raw inputs (preprocess=False): the handlers check every value themselves, so a bad request gets one
            # clear message and one log line (component checks would round 1.5 to 2, or log a traceback)
            raw = dict(preprocess=False)
            live_kw = dict(concurrency_limit=max_live, concurrency_id="live", show_progress="hidden", **raw)
            live_ev = start.click(self.live, controls, [drift_img, drift_md, ddpm_img, ddpm_md], api_name="live",
                                  api_visibility="undocumented", **live_kw)
            walk_ev = walk_start.click(self.walk, [seed, random_seed, grid, klass, guidance, walk_frames],
                                       [walk_img, walk_md], api_name="latent_walk", api_visibility="undocumented", **live_kw)
            # Stop lets the live stream end by itself (DDPM finishes its sample), then cancels what is left (a stream
            # still queued, or one past the timeout); the walk is cut at once
            stop.click(self.stop_live, None, None, api_visibility="private", queue=False).then(
                None, None, None, cancels=[live_ev], api_visibility="private", queue=False)
            walk_stop.click(self.stop_walk, None, None, cancels=[walk_ev], api_visibility="private", queue=False)
            for c in controls:
                c.change(self.update, controls, None, api_visibility="private", queue=False, show_progress="hidden", **raw)
            one_drift.click(self.drift_frame, [seed, random_seed, grid, klass, guidance], drift_img, api_name="drift_frame", **raw)
            one_ddim.click(self.ddim, [seed, random_seed, grid, steps, klass, guidance], ddpm_img, api_name="ddim",
                           show_progress="minimal", **raw)
            rec_btn.click(self.record_gif, [rec_secs, seed, random_seed, grid, steps, klass, guidance, rec_what],
                          [gif_file, mp4_state], api_name="record_gif", concurrency_id="record", concurrency_limit=2, **raw
                          ).then(lambda g, m: (m, g), [gif_file, mp4_state], [mp4_file, gif_preview],
                                 api_visibility="private", queue=False)
            if autostart:
                blocks.load(self.live, controls, [drift_img, drift_md, ddpm_img, ddpm_md], api_visibility="private", **live_kw)
            blocks.unload(self.on_unload)
        blocks.queue(default_concurrency_limit=concurrency, max_size=queue_size)
        return blocks


def build_app(drift: str = DEFAULT_DRIFT, ddpm: str = DEFAULT_DDPM, device: str = "auto", autostart: bool = False,
              **kw) -> tuple[gr.Blocks, DemoApp]:
    build_kw = {k: kw.pop(k) for k in ("concurrency", "queue_size", "max_live") if k in kw}
    app = DemoApp(drift, ddpm, device, **kw)
    return app.build(autostart, **build_kw), app


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--drift", default=os.environ.get("DRIFTIN_DRIFT") or default_weights(DEFAULT_DRIFT),
                   help="drift weights: folder, name under $DRIFTIN_WEIGHTS / ./weights, or Hub repo id (env DRIFTIN_DRIFT)")
    p.add_argument("--ddpm", default=os.environ.get("DRIFTIN_DDPM") or default_weights(DEFAULT_DDPM),
                   help="DDPM weights: folder, name or Hub repo id (env DRIFTIN_DDPM)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--device", default="auto", help="auto (CUDA, else Apple MPS, else CPU) | cpu | cuda | cuda:N | mps")
    p.add_argument("--autostart", action="store_true", help="start the live panels when the page loads")
    p.add_argument("--max-live-seconds", type=float, default=600.0, help="a live stream ends after this long")
    p.add_argument("--max-fps", type=float, default=24.0, help="cap on frames sent to the page per second")
    p.add_argument("--concurrency", type=int, default=None, help="default concurrency limit (2 on CPU, 4 on GPU)")
    p.add_argument("--max-live", type=int, default=None, help="live streams at once (2 on CPU, 8 on GPU)")
    p.add_argument("--queue-size", type=int, default=64)
    return p


def main(argv=None) -> None:
    a = parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        blocks, app = build_app(a.drift, a.ddpm, a.device, a.autostart, max_live_seconds=a.max_live_seconds,
                              max_fps=a.max_fps, concurrency=a.concurrency, max_live=a.max_live, queue_size=a.queue_size)
    except ValueError as e:  # e.g. --device cuda without CUDA
        raise SystemExit(f"driftin app: error: {e}") from None
    print(app.status_markdown().replace("**", ""), flush=True)
    blocks.launch(server_name=a.host, server_port=a.port, show_error=True, **LAUNCH_KW)


if __name__ == "__main__":
    main()
