"""driftin live demo (the Gradio view): one-step drift vs. DDPM/DDIM, same UNet, same noise, CIFAR-10 32x32.

    driftin app [--drift FOLDER_OR_REPO] [--ddpm FOLDER_OR_REPO] [--host 127.0.0.1 --port 7860] [--device auto]
    python app.py ...            # the same, from a checkout or a Hugging Face Space

Weights: a local folder, a name under $DRIFTIN_WEIGHTS / ./weights / the checkout's weights/, or a Hub repo id
(env DRIFTIN_DRIFT / DRIFTIN_DDPM). The app starts without them and says what is missing or corrupt.
Logic lives in the driftin/demo/ package, the view in driftin/demo/view/ (sessions, streams, endpoints, page,
demo_app); this module is its command line. API (gradio_client): /drift_frame,
/ddim, /record_gif.
"""
from __future__ import annotations

import argparse
import logging
import os

import gradio as gr

from .demo.view.demo_app import DEFAULT_DDPM, DEFAULT_DRIFT, DemoApp
from .demo.view.page import LAUNCH_KW
from .paths import default_weights


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
