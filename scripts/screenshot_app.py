"""Screenshot of the running app: starts `app.py --autostart`, opens it in headless Chromium (DevTools protocol),
waits until both live panels stream and show their FPS figures, and saves a PNG.

    python scripts/screenshot_app.py [--drift weights/drift-cifar10 --ddpm weights/ddpm-cifar10] [--out assets/app_screenshot.png]
    python scripts/screenshot_app.py --ddpm-min-step 22    # shoot when the DDIM sample is nearly done
    python scripts/screenshot_app.py --tiny    # tiny random weights (pipeline check; the images are noise)

Needs: chromium (Debian: apt-get install -y chromium) and websocket-client (pip install websocket-client).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", "--mute-audio"]

# Ready when both stats lines carry measured numbers (not the "press Start" / "waiting" placeholders)
# and both panels hold an image.
READY_JS = r"""
(() => {
  const t = id => (document.querySelector('#' + id) || {}).innerText || '';
  const img = id => !!document.querySelector('#' + id + ' img');
  const d = t('drift-stats'), p = t('ddpm-stats');
  const num = (s, re) => { const m = s.match(re); return m ? parseFloat(m[1]) : 0; };
  const b = t('drift-panel').match(/browser: ([\d.]+)/);
  return JSON.stringify({drift: d, ddpm: p, browser: b ? parseFloat(b[1]) : 0, imgs: img('drift-panel') && img('ddpm-panel'),
    ok: (b ? parseFloat(b[1]) : 0) > 0 && img('drift-panel') && img('ddpm-panel') && num(d, /model ([\d.]+) frames\/s/) > 0 &&
        num(d, /UI ([\d.]+) frames\/s/) > 0 && num(p, /model ([\d.]+) steps\/s/) > 0 && num(p, /UI ([\d.]+) frames\/s/) > 0});
})()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process exited with {proc.returncode} before {url} came up")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not come up in {timeout:.0f} s")


TINY = """
import sys, torch
from pathlib import Path
from driftin.config import preset
from driftin.hub import save_pretrained
from driftin.unet import UNet
folder = Path(sys.argv[1])
torch.manual_seed(0)
save_pretrained(UNet(preset("tiny", num_classes=10, zero_init_out=False, guidance_input=True)), folder / "drift", {"objective": "drift"})
save_pretrained(UNet(preset("tiny", num_classes=10, zero_init_out=False)), folder / "ddpm", {"objective": "ddpm"})
"""


def tiny_weights(folder: Path) -> tuple[str, str]:
    """Tiny random weights, made by a child Python in the checkout (so driftin imports from there, installed or not)."""
    subprocess.run([sys.executable, "-c", TINY, str(folder)], cwd=ROOT, check=True)
    return str(folder / "drift"), str(folder / "ddpm")


class CDP:
    """Just enough of the Chrome DevTools protocol: send a command, wait for its reply."""

    def __init__(self, ws_url: str):
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.i = 0

    def __call__(self, method: str, **params):
        self.i += 1
        self.ws.send(json.dumps({"id": self.i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, js: str):
        return self("Runtime.evaluate", expression=js, returnByValue=True)["result"].get("value")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--drift", default="weights/drift-cifar10")
    p.add_argument("--ddpm", default="weights/ddpm-cifar10")
    p.add_argument("--tiny", action="store_true", help="use tiny random weights made in a temp dir")
    p.add_argument("--out", default=str(ROOT / "assets" / "app_screenshot.png"))
    p.add_argument("--device", default="auto")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1150)
    p.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the live panels")
    p.add_argument("--settle", type=float, default=4.0, help="seconds of streaming before the shot")
    p.add_argument("--ddpm-min-step", type=int, default=0,
                   help="after settling, wait (up to --timeout) until the DDPM panel shows DDIM step >= this one, "
                        "so its x0 prediction is near-final (0: don't wait)")
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    a = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="driftin-shot-"))
    drift, ddpm = tiny_weights(tmp) if a.tiny else (a.drift, a.ddpm)
    port, dport = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "GRADIO_ANALYTICS_ENABLED": "False"}
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--drift", drift, "--ddpm", ddpm, "--port", str(port),
                            "--host", "127.0.0.1", "--device", a.device, "--autostart"], cwd=ROOT, env=env)
    chrome = None
    try:
        wait_http(url, 180, app)
        chrome = subprocess.Popen([a.chromium, *CHROME_FLAGS, f"--user-data-dir={tmp / 'chrome'}",
                                   f"--remote-debugging-port={dport}", f"--window-size={a.width},{a.height}", "about:blank"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{dport}/json/version", 60, chrome)
        with urllib.request.urlopen(f"http://127.0.0.1:{dport}/json/list") as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        cdp = CDP(page["webSocketDebuggerUrl"])
        cdp("Emulation.setDeviceMetricsOverride", width=a.width, height=a.height, deviceScaleFactor=1, mobile=False)
        cdp("Page.enable")
        cdp("Page.navigate", url=url)
        t0, state = time.time(), {}
        while time.time() - t0 < a.timeout:
            state = json.loads(cdp.eval(READY_JS) or "{}")
            if state.get("ok"):
                break
            time.sleep(1.0)
        else:
            raise SystemExit(f"the live panels did not show FPS figures in {a.timeout:.0f} s; last state: {state}")
        time.sleep(a.settle)
        state = json.loads(cdp.eval(READY_JS) or "{}")
        t1 = time.time()
        while a.ddpm_min_step > 0 and time.time() - t1 < a.timeout:
            m = re.search(r"step (\d+)/(\d+)", state.get("ddpm", ""))
            if m and int(m.group(1)) >= min(a.ddpm_min_step, int(m.group(2))):
                break
            time.sleep(0.2)
            state = json.loads(cdp.eval(READY_JS) or "{}")
        else:
            if a.ddpm_min_step > 0:
                raise SystemExit(f"the DDPM panel did not reach step {a.ddpm_min_step} in {a.timeout:.0f} s; last state: {state}")
        png = base64.b64decode(cdp("Page.captureScreenshot", format="png")["data"])
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_bytes(png)
        print(f"saved {a.out} ({len(png) / 1e3:.0f} kB) after {time.time() - t0:.0f} s")
        record = {"command": "python scripts/screenshot_app.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "drift_weights": a.drift, "ddpm_weights": a.ddpm,
                  "drift_status": state.get("drift", ""), "ddpm_status": state.get("ddpm", ""),
                  "browser_drift_fps": state.get("browser")}
        Path(a.out).with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")  # the numbers the README quotes
        print("drift:", state.get("drift", "").replace("\n", " "))
        print("ddpm: ", state.get("ddpm", "").replace("\n", " "))
        print("browser-measured drift panel:", state.get("browser"), "frames/s")
        return 0
    finally:
        for proc in (chrome, app):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
