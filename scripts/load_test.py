"""Bounded local load test of the app's /drift_frame endpoint: C concurrent gradio_client clients on loopback,
N requests each (and a wall-clock cap), latency p50/p95/max and errors written as JSON.

    python scripts/load_test.py --tiny                                  # tiny random weights (CI-sized)
    python scripts/load_test.py --drift weights/drift-cifar10 --ddpm weights/ddpm-cifar10 [--device cuda]

The app runs in its own process (`python app.py`), as a user would start it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from screenshot_app import ROOT, free_port, tiny_weights, wait_http  # scripts/ is sys.path[0] when run as a script

MAX_CLIENTS, MAX_REQUESTS, MAX_SECONDS = 64, 50, 900


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--drift", default="weights/drift-cifar10")
    p.add_argument("--ddpm", default="weights/ddpm-cifar10")
    p.add_argument("--tiny", action="store_true", help="tiny random weights made in a temp dir")
    p.add_argument("--device", default="auto")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=5, help="requests per client")
    p.add_argument("--grid", type=int, default=4)
    p.add_argument("--max-seconds", type=float, default=300.0, help="stop sending new requests after this long")
    p.add_argument("--concurrency", type=int, default=None, help="app --concurrency (default: the app's)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "app_load_test.json"))
    a = p.parse_args(argv)
    if not (1 <= a.clients <= MAX_CLIENTS and 1 <= a.requests <= MAX_REQUESTS and 0 < a.max_seconds <= MAX_SECONDS):
        raise SystemExit(f"bounds: clients <= {MAX_CLIENTS}, requests <= {MAX_REQUESTS}, max-seconds <= {MAX_SECONDS}")

    from gradio_client import Client

    tmp = Path(tempfile.mkdtemp(prefix="driftin-load-"))
    drift, ddpm = tiny_weights(tmp) if a.tiny else (a.drift, a.ddpm)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, str(ROOT / "app.py"), "--drift", drift, "--ddpm", ddpm, "--port", str(port), "--device", a.device]
    if a.concurrency:
        cmd += ["--concurrency", str(a.concurrency)]
    app = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    status_lines: list[str] = []
    threading.Thread(target=lambda: status_lines.extend(app.stdout), daemon=True).start()
    try:
        wait_http(url, 180, app)
        lat: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        t_end = time.perf_counter() + a.max_seconds
        barrier = threading.Barrier(a.clients)

        def client_loop(k: int) -> None:
            try:
                c = Client(url, verbose=False)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(f"client {k} connect: {type(e).__name__}: {e}")
                barrier.abort()
                return
            try:
                barrier.wait(120)  # all clients connected, then fire together
            except threading.BrokenBarrierError:
                pass
            for i in range(a.requests):
                if time.perf_counter() > t_end:
                    break
                t0 = time.perf_counter()
                try:
                    c.predict(seed=k * 1000 + i, random_seed=False, grid=a.grid, class_name="mixed",
                              guidance=1.0, api_name="/drift_frame")
                    with lock:
                        lat.append(time.perf_counter() - t0)
                except Exception as e:  # noqa: BLE001 - counted and reported
                    with lock:
                        errors.append(f"{type(e).__name__}: {str(e)[:200]}")

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(a.max_seconds + 300)
        wall = time.perf_counter() - t0
    finally:
        app.terminate()
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            app.kill()

    import gradio
    import torch

    x = np.array(lat) if lat else np.array([np.nan])
    status = [ln.strip() for ln in status_lines if ln.strip().startswith(("Device", "- drift", "- ddpm"))]
    result = {
        "endpoint": "/drift_frame",
        "weights": "tiny random weights (preset 'tiny', untrained; measures the serving path, not a real model)"
                   if a.tiny else f"drift={a.drift}, ddpm={a.ddpm}",
        "app_status": status,
        "clients": a.clients,
        "requests_per_client": a.requests,
        "grid": a.grid,
        "max_seconds": a.max_seconds,
        "requests_ok": len(lat),
        "errors": len(errors),
        "error_samples": errors[:5],
        "latency_s": {"p50": round(float(np.percentile(x, 50)), 4), "p95": round(float(np.percentile(x, 95)), 4),
                      "max": round(float(np.max(x)), 4), "mean": round(float(np.mean(x)), 4)},
        "throughput_rps": round(len(lat) / wall, 3),
        "wall_s": round(wall, 2),
        "app_queue": {"default_concurrency_limit": a.concurrency or "app default (2 CPU / 4 GPU)", "max_size": 64,
                      "model_calls": "serialised per device by a fair lock"},
        "machine": {"cpus": os.cpu_count(), "loadavg_1m_after": round(os.getloadavg()[0], 2), "python": platform.python_version(),
                    "torch": torch.__version__, "gradio": gradio.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    out = Path(a.out)
    runs = {}
    if out.exists():
        try:
            prev = json.loads(out.read_text())
            runs = prev.get("runs", {}) if isinstance(prev, dict) else {}
        except json.JSONDecodeError:
            runs = {}
    runs["tiny" if a.tiny else "real"] = result
    out.write_text(json.dumps({"runs": runs}, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
