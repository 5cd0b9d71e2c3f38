"""The page: layout and components, the CSS and browser-FPS script, and the wiring of events to a DemoApp's handlers."""
from __future__ import annotations

import gradio as gr

from driftin import demo
from driftin.demo import (CLASS_CHOICES, DDIM_GUIDANCE, DDIM_GUIDANCE_INTERVAL, GRID_SIZES, GUIDANCE_RANGE, MAX_STEPS, MIXED,
                          RECORD_MAX_SECONDS, RECORD_MIN_SECONDS, guided_at)

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


def build_page(app, autostart: bool = False, concurrency: int | None = None, queue_size: int = 64,
               max_live: int | None = None) -> gr.Blocks:
    """The Blocks of `app` (a DemoApp: its device, status and default class, its handlers as the events)."""
    gpu = app.device.type == "cuda"
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
        gr.Markdown(app.status_markdown(), elem_id="status",
                    elem_classes=["weights-missing"] if app.missing else None)
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
            klass = gr.Dropdown(classes, value=app.default_class, label="Class", elem_id="class")
        with gr.Row():
            steps = gr.Slider(1, MAX_STEPS, value=25, step=1, label="DDIM steps")
            # one guidance per panel: the two models score best at different scales
            drift_guidance = gr.Slider(*GUIDANCE_RANGE, value=1.0, step=0.1, label="Drift guidance",
                                       info="1 = unguided, drift's best FID", elem_id="drift-guidance")
            ddim_guidance = gr.Slider(*GUIDANCE_RANGE, value=DDIM_GUIDANCE, step=0.1, label="DDIM guidance",
                                      info=f"{DDIM_GUIDANCE:g} = the DDPM's best DDIM-50 FID" + guided_at(DDIM_GUIDANCE_INTERVAL),
                                      elem_id="ddim-guidance")
            lo_hi = DDIM_GUIDANCE_INTERVAL or (0, 0)
            ddim_interval = gr.Checkbox(value=True, label=f"Guide DDIM only at t {lo_hi[0]}-{lo_hi[1]}",
                                        info="on: the best FID; off: guidance at every step", elem_id="ddim-interval",
                                        visible=DDIM_GUIDANCE_INTERVAL is not None)
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

        controls = [seed, random_seed, grid, steps, klass, drift_guidance, view, ddim_guidance, ddim_interval]
        # raw inputs (preprocess=False): the handlers check every value themselves, so a bad request gets one
        # clear message and one log line (component checks would round 1.5 to 2, or log a traceback)
        raw = dict(preprocess=False)
        live_kw = dict(concurrency_limit=max_live, concurrency_id="live", show_progress="hidden", **raw)
        live_ev = start.click(app.live, controls, [drift_img, drift_md, ddpm_img, ddpm_md], api_name="live",
                              api_visibility="undocumented", **live_kw)
        walk_ev = walk_start.click(app.walk, [seed, random_seed, grid, klass, drift_guidance, walk_frames],
                                   [walk_img, walk_md], api_name="latent_walk", api_visibility="undocumented", **live_kw)
        # Stop lets the live stream end by itself (DDPM finishes its sample), then cancels what is left (a stream
        # still queued, or one past the timeout); the walk is cut at once
        stop.click(app.stop_live, None, None, api_visibility="private", queue=False).then(
            None, None, None, cancels=[live_ev], api_visibility="private", queue=False)
        walk_stop.click(app.stop_walk, None, None, cancels=[walk_ev], api_visibility="private", queue=False)
        for c in controls:
            c.change(app.update, controls, None, api_visibility="private", queue=False, show_progress="hidden", **raw)
        # API parameters keep their order (new ones go last); /ddim's `guidance` is the DDIM slider
        one_drift.click(app.drift_frame, [seed, random_seed, grid, klass, drift_guidance], drift_img,
                        api_name="drift_frame", **raw)
        one_ddim.click(app.ddim, [seed, random_seed, grid, steps, klass, ddim_guidance, ddim_interval], ddpm_img,
                       api_name="ddim", show_progress="minimal", **raw)
        rec_btn.click(app.record_gif, [rec_secs, seed, random_seed, grid, steps, klass, drift_guidance, rec_what,
                                       ddim_guidance, ddim_interval],
                      [gif_file, mp4_state], api_name="record_gif", concurrency_id="record", concurrency_limit=2, **raw
                      ).then(lambda g, m: (m, g), [gif_file, mp4_state], [mp4_file, gif_preview],
                             api_visibility="private", queue=False)
        if autostart:
            blocks.load(app.live, controls, [drift_img, drift_md, ddpm_img, ddpm_md], api_visibility="private", **live_kw)
        blocks.unload(app.on_unload)
    blocks.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    return blocks
