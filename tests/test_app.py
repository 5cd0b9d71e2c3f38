"""The Gradio app end to end on CPU: launched on loopback with tiny random weights, driven by gradio_client
(and, for what the API cannot reach - control changes of a running stream, the Stop button - through the
app's handlers with a fake browser session)."""
import logging
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import torch

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.filterwarnings("ignore:.*:DeprecationWarning", "ignore::FutureWarning", "ignore:.*copy keyword.*",
                                        "ignore:.*no_silent_downcasting.*")

from driftin import live  # noqa: E402
from driftin.app import build_app  # noqa: E402

OK = dict(seed=0, random_seed=False, grid=4, class_name="cat", guidance=1.0)


def save_tiny(folder, num_classes=10):
    from driftin.config import preset
    from driftin.hub import save_pretrained
    from driftin.unet import UNet

    torch.manual_seed(0)
    save_pretrained(UNet(preset("tiny", num_classes=num_classes, zero_init_out=False, guidance_input=True)),
                    folder / "drift", {"objective": "drift"})
    save_pretrained(UNet(preset("tiny", num_classes=num_classes, zero_init_out=False)), folder / "ddpm", {"objective": "ddpm"})
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def served(weights):
    demo, app = build_app(str(weights / "drift"), str(weights / "ddpm"), "cpu", max_fps=50.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield client, app, demo
    demo.close()


class FakeRequest:
    """What the handlers read from gr.Request: the browser session."""

    def __init__(self, name):
        self.session_hash = name


def image_shape(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size[1], im.size[0], len(im.getbands())


def read_png(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_generation_endpoints_return_grids(served):
    client, _, _ = served
    for n in (1, 16):
        path = client.predict(seed=0, random_seed=False, grid=n, class_name="cat", guidance=2.0, api_name="/drift_frame")
        assert image_shape(path) == (live.grid_side(n), live.grid_side(n), 3)  # k tiles of 32*4 px, 2 px apart
    assert live.grid_side(1) == 128 and live.grid_side(16) == 4 * 128 + 3 * 2
    path = client.predict(seed=1, random_seed=False, grid=4, steps=3, class_name="unconditional", guidance=1.0, api_name="/ddim")
    assert image_shape(path) == (258, 258, 3)


def test_api_documents_what_the_server_accepts(served):
    client, _, _ = served
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = {p["parameter_name"]: p for p in info["/drift_frame"]["parameters"]}
    assert params["grid"]["python_type"]["type"] == "int"  # not Literal['1', '4', ...]
    assert params["seed"]["python_type"]["type"] == "int"
    assert params["class_name"]["parameter_default"] == live.MIXED  # the default shows the model at its best
    assert "unconditional" in params["class_name"]["python_type"]["type"]  # one choice away
    # the documented type works, and so does a numeric string
    a = read_png(client.predict(**{**OK, "grid": 9}, api_name="/drift_frame"))
    b = read_png(client.predict(**{**OK, "grid": "9"}, api_name="/drift_frame"))
    assert a.shape == (live.grid_side(9),) * 2 + (3,) and np.array_equal(a, b)
    from pathlib import Path

    assert not list(Path(live.__file__).parent.rglob("*.pyi"))  # no Gradio stub files written into the package


def test_default_class_is_one_per_tile(served, weights):
    from driftin.generate import generate
    from driftin.hub import load_pretrained

    client, app, _ = served
    assert app.default_class == live.MIXED
    got = read_png(client.predict(seed=20, random_seed=False, grid=4, class_name="mixed", guidance=1.0, api_name="/drift_frame"))
    net = load_pretrained(weights / "drift")
    want = live.make_grid(generate(net, seeds=[20, 21, 22, 23], method="drift", class_labels=[0, 1, 2, 3], output="uint8"))
    assert np.array_equal(got, want)  # tile i: seed 20 + i, class (20 + i) % 10
    one_class = read_png(client.predict(seed=20, random_seed=False, grid=4, class_name="airplane", guidance=1.0,
                                        api_name="/drift_frame"))
    assert not np.array_equal(got, one_class)


def test_unconditional_models_default_to_unconditional(tmp_path):
    w = save_tiny(tmp_path, num_classes=0)
    _, app = build_app(str(w / "drift"), str(w / "ddpm"), "cpu")
    assert app.default_class == live.UNCONDITIONAL


def test_bad_inputs_are_one_line_errors(served, caplog, capfd):
    client, app, _ = served
    caplog.set_level(logging.WARNING, logger="driftin.app")
    bad_drift = [dict(grid=1000), dict(grid=5), dict(guidance=100.0), dict(class_name="dragon"), dict(seed=1.5),
                 dict(seed=-1), dict(random_seed="yes")]
    for bad in bad_drift:
        with pytest.raises(Exception, match=r"(?i)grid|guidance|class|seed"):
            client.predict(**{**OK, **bad}, api_name="/drift_frame")
    with pytest.raises(Exception, match=r"steps"):
        client.predict(**OK, steps=10_000, api_name="/ddim")
    with pytest.raises(Exception, match=r"DDIM guidance"):
        client.predict(**{**OK, "guidance": 100.0}, api_name="/ddim")
    with pytest.raises(Exception, match=r"length"):
        client.predict(seconds=600, api_name="/record_gif")
    with pytest.raises(Exception, match=r"length"):
        client.predict(seconds=live.RECORD_MIN_SECONDS - 0.5, api_name="/record_gif")
    rejected = [r for r in caplog.records if r.name == "driftin.app" and "rejected" in r.getMessage()]
    assert len(rejected) == len(bad_drift) + 4  # exactly one log line per rejected request
    assert all(r.exc_info is None for r in rejected)
    assert "Traceback" not in capfd.readouterr().err
    # the handlers check on their own too (a request can bypass the components' limits)
    for kw, msg in ((dict(grid=5), "grid"), (dict(seed=2.5), "whole number"), (dict(random_seed="yes"), "true or false")):
        with pytest.raises(gr.Error, match=msg):
            app.drift_frame(**{**OK, **kw})
    with pytest.raises(gr.Error, match="steps"):
        next(app.ddim(steps=10_000))
    with pytest.raises(gr.Error, match="length"):
        app.record_gif(seconds=11)
    with pytest.raises(gr.Error, match="DDIM guidance"):
        app.record_gif(seconds=1, ddim_guidance=6)
    with pytest.raises(gr.Error, match="drift guidance"):
        app.record_gif(seconds=1, guidance=0.5)
    with pytest.raises(gr.Error, match="frames per walk segment"):
        next(app.walk(**OK, frames_per_segment=0))


def test_each_panel_has_its_own_guidance_slider(served):
    """Drift's slider feeds the drift endpoints, DDIM's (and its interval checkbox) the DDIM ones, both the live stream
    and the recorder; the named API keeps its parameter order (new parameters go last)."""
    client, _, demo = served
    comps = {c["props"].get("elem_id"): c for c in demo.config["components"] if "props" in c}
    drift, ddim, iv = comps["drift-guidance"], comps["ddim-guidance"], comps["ddim-interval"]
    assert iv["props"]["value"] is True and iv["props"]["visible"] == (live.DDIM_GUIDANCE_INTERVAL is not None)
    for c, label, value in ((drift, "Drift guidance", 1.0), (ddim, "DDIM guidance", live.DDIM_GUIDANCE)):
        p = c["props"]
        assert (p["label"], p["value"], (p["minimum"], p["maximum"])) == (label, value, live.GUIDANCE_RANGE)
    inputs = {d["api_name"]: d["inputs"] for d in demo.config["dependencies"]}
    for api, want in (("drift_frame", {drift["id"]}), ("latent_walk", {drift["id"]}), ("ddim", {ddim["id"]}),
                      ("live", {drift["id"], ddim["id"]}), ("update", {drift["id"], ddim["id"]}),
                      ("record_gif", {drift["id"], ddim["id"]})):
        assert {drift["id"], ddim["id"]} & set(inputs[api]) == want, api
        assert (iv["id"] in inputs[api]) == (ddim["id"] in want), api  # the interval goes where DDIM's guidance goes
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = {api: [(p["parameter_name"], p["parameter_default"]) for p in info[api]["parameters"]]
              for api in ("/ddim", "/record_gif")}
    assert params["/ddim"][-2:] == [("guidance", live.DDIM_GUIDANCE), ("ddim_interval", True)]  # /ddim's guidance is DDIM's
    assert [name for name, _ in params["/record_gif"]] == ["seconds", "seed", "random_seed", "grid", "steps",
                                                           "class_name", "guidance", "what", "ddim_guidance",
                                                           "ddim_interval"]
    assert params["/record_gif"][-2:] == [("ddim_guidance", live.DDIM_GUIDANCE), ("ddim_interval", True)]


def test_live_stream_takes_both_guidances(served):
    _, app, _ = served
    req = FakeRequest("guidance")
    controls = dict(seed=0, random_seed=True, grid=1, steps=2, class_name="cat", guidance=1.2, view="x0",
                    ddim_guidance=2.5)
    outs, done = [], threading.Event()
    threading.Thread(target=consume, args=(app.live(**controls, request=req), outs, done), daemon=True).start()
    wait_for(lambda: len(outs) >= 1)
    sess = app.sessions[(req.session_hash, "live")]
    assert (sess.settings.guidance, sess.settings.ddim_guidance) == (1.2, 2.5)
    app.update(**{**controls, "ddim_guidance": 3.0}, request=req)  # moving one slider leaves the other alone
    assert (sess.settings.guidance, sess.settings.ddim_guidance) == (1.2, 3.0)
    assert sess.settings.ddim_guidance_interval == live.DDIM_GUIDANCE_INTERVAL
    app.update(**{**controls, "ddim_guidance": 3.0, "ddim_interval": False}, request=req)  # the checkbox: every step
    assert (sess.settings.ddim_guidance, sess.settings.ddim_guidance_interval) == (3.0, None)
    app.stop(req)
    assert done.wait(30)


def test_record_length_slider_matches_the_server(served):
    _, _, demo = served
    slider = next(c for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "rec-secs")["props"]
    assert slider["minimum"] == live.RECORD_MIN_SECONDS and slider["maximum"] == live.RECORD_MAX_SECONDS
    assert live.validate_record(slider["minimum"]) == slider["minimum"]
    with pytest.raises(ValueError, match=f"{live.RECORD_MIN_SECONDS:g}"):
        live.validate_record(slider["minimum"] - 0.5)
    assert "video rate" not in str(demo.config)  # the walk runs as fast as the device allows, and says so


def test_ddim_streams_its_steps(served):
    client, app, _ = served
    job = client.submit(seed=5, random_seed=False, grid=16, steps=30, class_name="mixed", guidance=2.0, api_name="/ddim")
    final = read_png(job.result())
    outs = job.outputs()
    assert len(outs) >= 3  # intermediate x0 predictions, then the result
    s = live.validate(5, False, 16, 30, "mixed", ddim_guidance=2.0)  # /ddim's `guidance` is the DDIM guidance
    want = live.make_grid(app.engine.ddim_images(live.frame_seeds(s, 0, 0), s))
    assert np.array_equal(final, want) and np.array_equal(read_png(outs[-1]), want)
    assert not np.array_equal(read_png(outs[0]), want)  # the first frame is an early step


def test_the_ddim_panel_guides_at_its_interval(served):
    """Settings.ddim_guidance_interval (the app's DDIM_GUIDANCE_INTERVAL; None: every step) reaches generate()."""
    import dataclasses

    from driftin.generate import generate

    _, app, _ = served
    s = live.validate(5, False, 4, 4, "mixed", ddim_guidance=3.0)
    assert s.ddim_guidance_interval == live.DDIM_GUIDANCE_INTERVAL
    every = live.validate(5, False, 4, 4, "mixed", ddim_guidance=3.0, ddim_interval=False)  # the page's checkbox off
    assert every.ddim_guidance_interval is None
    with pytest.raises(ValueError, match="DDIM guidance interval must be true or false"):
        live.validate(ddim_interval="yes")
    seeds = live.frame_seeds(s, 0, 0)
    limited = dataclasses.replace(s, ddim_guidance_interval=(300, 600))
    want = generate(app.engine.require("ddpm"), seeds=seeds, method="ddim", steps=4, class_labels=live.tile_labels(s, seeds),
                    guidance=3.0, guidance_interval=(300, 600), output="uint8")
    got = app.engine.ddim_images(seeds, limited)
    assert torch.equal(got, want) and not torch.equal(got, app.engine.ddim_images(seeds, s))
    # /ddim with the checkbox off guides every step
    final = list(app.ddim(5, False, 4, 4, "mixed", 3.0, ddim_interval=False))[-1]  # the grid as an array
    assert np.array_equal(final, live.make_grid(app.engine.ddim_images(seeds, every)))
    assert not np.array_equal(final, live.make_grid(app.engine.ddim_images(seeds, s)))


def test_record_gif_is_multiframe(served):
    from PIL import Image

    client, _, _ = served
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


def wait_for(cond, timeout=60.0):
    t0 = time.time()
    while not cond():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.02)


def consume(gen, outs, done):
    try:
        for out in gen:
            outs.append(out)
    finally:
        done.set()


def test_record_while_live_with_grid_change(served):
    """Record GIF during a live view whose grid goes 4 -> 9 (used to fail in np.stack)."""
    from PIL import Image

    _, app, _ = served
    req = FakeRequest("grid-change")
    controls = dict(seed=0, random_seed=True, grid=4, steps=40, class_name="mixed", guidance=1.0, view="x0")
    outs, done = [], threading.Event()
    threading.Thread(target=consume, args=(app.live(**controls, request=req), outs, done), daemon=True).start()
    wait_for(lambda: len(outs) >= 2)
    result = {}
    rec = threading.Thread(target=lambda: result.update(out=app.record_gif(
        1.0, 0, True, 4, 40, "mixed", 1.0, "side-by-side", request=req)), daemon=True)
    rec.start()
    time.sleep(0.4)
    app.update(**{**controls, "grid": 9}, request=req)
    rec.join(120)
    app.stop(req)
    assert done.wait(30)
    gif, _ = result["out"]
    with Image.open(gif) as im:
        assert im.n_frames > 1
    assert any(isinstance(o[0], np.ndarray) and o[0].shape[0] == live.grid_side(9) for o in outs)  # the change applied


def test_stop_ends_on_a_finished_ddpm_sample(served):
    _, app, _ = served
    req = FakeRequest("stop")
    steps = 40
    outs, done = [], threading.Event()
    gen = app.live(0, True, 4, steps, "mixed", 1.0, "xt", request=req)  # x_t view: mid-sample frames are noisy
    threading.Thread(target=consume, args=(gen, outs, done), daemon=True).start()
    wait_for(lambda: any(f"step 2/{steps}" in o[3] for o in list(outs)))
    app.stop_live(req)
    assert done.wait(120)
    ddpm = [o for o in outs if isinstance(o[2], np.ndarray)]
    assert f"step {steps}/{steps}" in ddpm[-1][3]  # the last DDPM frame shown is the finished sample
    assert "stopped" in outs[-1][1]


def test_weights_problems_say_missing_or_corrupt(weights, tmp_path):
    broken = tmp_path / "drift"
    shutil.copytree(weights / "drift", broken)
    shard = next(broken.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:100])  # truncated download
    missing = tmp_path / "weights" / "ddpm-cifar10"
    demo, app = build_app(str(broken), str(missing), "cpu")
    assert isinstance(demo, gr.Blocks)
    status = app.status_markdown()
    assert "drift weights corrupt" in status and "ddpm weights missing" in status
    assert str(missing) in status and "<user>" not in status  # every suggested command runs as written
    assert "driftin train --config training/ddpm_cifar10.json" in status
    with pytest.raises(gr.Error, match="corrupt"):
        app.drift_frame()
