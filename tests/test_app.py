"""app.py end to end on CPU: launched on loopback with tiny random weights, driven by gradio_client."""
import importlib.util
import socket
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.filterwarnings("ignore:.*:DeprecationWarning", "ignore::FutureWarning", "ignore:.*copy keyword.*", "ignore:.*no_silent_downcasting.*")


def load_app_module():
    spec = importlib.util.spec_from_file_location("driftin_app", ROOT / "app.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["driftin_app"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def appmod():
    return load_app_module()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from driftin.config import preset
    from driftin.hub import save_pretrained
    from driftin.unet import UNet

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    save_pretrained(UNet(preset("tiny", num_classes=10, zero_init_out=False, guidance_input=True)), root / "drift", {"objective": "drift"})
    save_pretrained(UNet(preset("tiny", num_classes=10, zero_init_out=False)), root / "ddpm", {"objective": "ddpm"})
    return root


@pytest.fixture(scope="module")
def served(appmod, weights):
    demo, app = appmod.build_app(str(weights / "drift"), str(weights / "ddpm"), "cpu", max_fps=50.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield client, app
    demo.close()


def image_shape(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size[1], im.size[0], len(im.getbands())


def test_generation_endpoints_return_grids(served):
    from driftin.live import grid_side

    client, _ = served
    for n in (1, 16):
        path = client.predict(seed=0, random_seed=False, grid=n, class_name="cat", guidance=2.0, api_name="/drift_frame")
        assert image_shape(path) == (grid_side(n), grid_side(n), 3)  # k tiles of 32*4 px, 2 px apart
    assert grid_side(1) == 128 and grid_side(16) == 4 * 128 + 3 * 2
    path = client.predict(seed=1, random_seed=False, grid=4, steps=3, class_name="unconditional", guidance=1.0, api_name="/ddim")
    assert image_shape(path) == (258, 258, 3)


def test_bad_inputs_are_errors(served):
    client, app = served
    ok = dict(seed=0, random_seed=False, grid=4, class_name="unconditional", guidance=1.0)
    for bad in (dict(grid=1000), dict(guidance=100.0), dict(class_name="dragon")):
        with pytest.raises(Exception, match=r"(?i)grid|choices|guidance|maximum|class"):
            client.predict(**{**ok, **bad}, api_name="/drift_frame")
    with pytest.raises(Exception, match=r"(?i)steps|maximum"):
        client.predict(**ok, steps=10_000, api_name="/ddim")
    with pytest.raises(Exception, match=r"(?i)length|maximum"):
        client.predict(seconds=600, api_name="/record_gif")
    # the server checks on its own too (a request can bypass the components' limits)
    for kw, msg in ((dict(grid=1000), "grid"), (dict(guidance=100), "guidance"), (dict(class_name="dragon"), "class"),
                    (dict(grid=5), "grid"), (dict(seed=-1), "seed")):
        with pytest.raises(gr.Error, match=msg):
            app.drift_frame(**{**ok, **kw})
    with pytest.raises(gr.Error, match="steps"):
        app.ddim(steps=10_000)
    with pytest.raises(gr.Error, match="length"):
        app.record_gif(seconds=11)


def test_record_gif_is_multiframe(served):
    from PIL import Image

    client, _ = served
    path = client.predict(seconds=1.0, seed=0, random_seed=True, grid=1, steps=4, class_name="unconditional",
                          guidance=1.0, what="side-by-side", api_name="/record_gif")
    assert str(path).endswith(".gif")
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames > 1
        assert im.size[0] > 2 * 128  # two upscaled panels side by side
    path = client.predict(seconds=1.0, seed=3, random_seed=False, grid=4, class_name="cat", guidance=2.0,
                          what="latent walk", api_name="/record_gif")
    with Image.open(path) as im:
        assert im.n_frames > 1


def take(job, n: int) -> list:
    """The first n outputs of a streaming job, then cancel it."""
    outs = []
    for out in job:
        outs.append(out)
        if len(outs) >= n:
            break
    job.cancel()
    return outs


def test_latent_walk_stream(served):
    client, _ = served
    job = client.submit(0, False, 4, "unconditional", 1.0, 8, api_name="/latent_walk")
    outs = take(job, 3)
    assert "Latent walk" in outs[-1][1] and "frames/s" in outs[-1][1]


def test_live_stream_reports_model_and_ui_fps(served):
    client, _ = served
    job = client.submit(0, True, 1, 3, "unconditional", 1.0, "x0", api_name="/live")
    outs = take(job, 6)
    drift_stats, ddpm_stats = outs[-1][1], outs[-1][3]
    assert "model" in drift_stats and "frames/s" in drift_stats and "UI" in drift_stats
    assert "steps/s" in ddpm_stats or "waiting" in ddpm_stats


def test_missing_weights_app_builds_and_says_what_is_missing(appmod, tmp_path):
    missing = tmp_path / "weights" / "drift-cifar10"
    demo, app = appmod.build_app(str(missing), str(tmp_path / "weights" / "ddpm-cifar10"), "cpu")
    assert isinstance(demo, gr.Blocks)
    status = app.status_markdown()
    assert str(missing) in status and "hf download" in status and "ddpm-cifar10" in status
    with pytest.raises(gr.Error, match="drift-cifar10"):
        app.drift_frame()
