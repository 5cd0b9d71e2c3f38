"""driftin.live: slerp, meters, grids / frame compositing, validation, clips (no UI, no model)."""
import threading

from pathlib import Path

import numpy as np
import pytest
import torch

from driftin import live


def test_slerp_endpoints_exact_and_norm_preserved():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, 32, 32, generator=g), torch.randn(4, 3, 32, 32, generator=g)
    assert torch.equal(live.slerp(a, b, 0.0), a) and torch.equal(live.slerp(a, b, 1.0), b)
    na = a.flatten(1).norm(dim=1)
    for t in (0.1, 0.5, 0.9):
        z = live.slerp(a, b, t)
        assert z.shape == a.shape and z.dtype == a.dtype
        torch.testing.assert_close(z.flatten(1).norm(dim=1), na, rtol=0.03, atol=0)  # |a| ~ |b| for N(0, I)
    lerp = 0.5 * (a + b)  # linear interpolation would shrink the noise norm by ~1/sqrt(2)
    assert (lerp.flatten(1).norm(dim=1) / na).max() < 0.8
    # parallel vectors fall back to lerp instead of dividing by sin(0)
    torch.testing.assert_close(live.slerp(a, 2 * a, 0.5), 1.5 * a)
    with pytest.raises(ValueError):
        live.slerp(a, b[:2], 0.5)


def test_latent_walk_is_continuous_and_passes_keypoints():
    w = live.LatentWalk(n=2, seed=7, frames=8)
    torch.testing.assert_close(w.noise_at(0), w.keypoint(0))
    torch.testing.assert_close(w.noise_at(8), w.keypoint(1))
    steps = [(w.noise_at(i + 1) - w.noise_at(i)).norm() for i in range(16)]
    jump = (w.keypoint(1) - w.keypoint(0)).norm()
    assert max(steps) < jump / 4  # small steps, no jumps at segment boundaries


def test_rate_meter_and_work_meter():
    m = live.RateMeter(window=10.0)
    assert m.rate == 0.0
    for i in range(11):
        m.tick(now=100.0 + i * 0.1)  # 10 frames/s
    assert m.rate == pytest.approx(10.0)
    m2 = live.RateMeter(window=1.0)
    for i in range(50):
        m2.tick(now=i * 0.5)  # old ticks slide out of the window
    assert m2.rate == pytest.approx(2.0) and len(m2.times) <= 3
    w = live.WorkMeter(window=4)
    for d in (1.0, 1.0, 0.02, 0.02, 0.02, 0.02):
        w.add(d)
    assert w.per_second == pytest.approx(50.0) and w.count == 6


def test_fair_lock_serves_in_order():
    lock, order = live.FairLock(), []
    lock.acquire()
    threads = []
    for i in range(4):
        t = threading.Thread(target=lambda i=i: (lock.acquire(), order.append(i), lock.release()))
        t.start()
        threads.append(t)
        while lock._next != i + 2:  # wait until thread i holds its ticket
            pass
    lock.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3]


def test_grid_layout_and_nearest_upscale():
    imgs = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    imgs[1] = 255
    imgs[2, 0, 0, 0] = 7
    g = live.make_grid(imgs, scale=4, pad=2)
    assert g.shape == (2 * 128 + 2, 2 * 128 + 2, 3) and g.dtype == np.uint8
    assert g.shape[0] == live.grid_side(4)
    assert (g[:128, 130:] == 255).all() and (g[:128, :128] == 0).all()  # tile 1 top right, tile 0 top left
    assert (g[130:134, :4, 0] == 7).all() and g[130, 4, 0] == 0  # pixel (0,0) of tile 2 became a 4x4 block
    assert (g[128:130] == 255).all()  # padding
    assert live.make_grid(imgs[:1], scale=1, pad=0).shape == (32, 32, 3)
    assert live.make_grid(torch.zeros(9, 3, 32, 32, dtype=torch.uint8), scale=2).shape[0] == live.grid_side(9, 2)
    with pytest.raises(ValueError):
        live.make_grid(torch.zeros(2, 3, 32, 32))  # float, not uint8


def test_side_by_side_and_clip_frame():
    left = np.zeros((50, 40, 3), np.uint8)
    right = np.full((30, 20, 3), 9, np.uint8)
    out = live.side_by_side(left, right, ("drift", "ddpm"), gap=8, bar=22)
    assert out.shape == (22 + 50, 40 + 8 + 20, 3)
    assert (out[22:72, :40] == 0).all() and (out[22:52, 48:] == 9).all()
    assert (out[:22] != 255).any()  # title text drawn
    assert live.side_by_side(left, right).shape == (50, 68, 3)  # no titles, no bar
    x = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    f = live.LiveFrame(x, None, "", "", "Drift", "DDPM", ddpm_latest=x)
    clip = live.clip_frame(f)
    side = live.grid_side(4, live.gif_scale(4))
    assert clip.shape == (22 + side, 2 * side + 8, 3)
    assert live.clip_frame(f, walk=True).shape == (22 + side, side, 3)


def test_validate_bounds_and_messages():
    s = live.validate(seed=3, random_seed=False, grid="9", steps=50.0, class_name="cat", guidance=2)
    assert (s.seed, s.grid, s.steps, s.label, s.guidance) == (3, 9, 50, 3, 2.0)
    assert live.validate(class_name="unconditional").label is None
    bad = [dict(grid=1000), dict(grid=5), dict(steps=10_000), dict(steps=0), dict(steps=2.5), dict(guidance=100),
           dict(guidance=float("nan")), dict(class_name="dragon"), dict(seed=-5), dict(seed="x"), dict(view="z")]
    for kw in bad:
        with pytest.raises(ValueError, match=r"grid|steps|guidance|class|seed|view"):
            live.validate(**kw)
    with pytest.raises(ValueError):
        live.validate_record(60)
    assert live.validate_record(2) == 2.0


def test_each_panel_has_its_own_guidance():
    # drift scores best unguided; the DDIM panel defaults to the shipped DDPM's best DDIM-50 FID-50k setting
    from driftin.modelcard import best_default_sampler, load_eval

    best = best_default_sampler(load_eval(Path(__file__).parents[1] / "weights" / "ddpm-cifar10"), drift=False)
    assert (live.DDIM_GUIDANCE, live.DDIM_GUIDANCE_INTERVAL) == (best["guidance"], best.get("guidance_interval"))
    for s in (live.Settings(), live.validate()):
        assert (s.guidance, s.ddim_guidance, s.ddim_guidance_interval) == (1.0, best["guidance"], best.get("guidance_interval"))
    s = live.validate(0, True, 4, 25, "cat", 2.0, "x0", "3.5")  # positional: the DDIM guidance comes last
    assert (s.guidance, s.ddim_guidance) == (2.0, 3.5)
    for bad in (0.5, 5.5, float("inf"), None, True, "x"):
        with pytest.raises(ValueError, match="DDIM guidance"):
            live.validate(ddim_guidance=bad)
        with pytest.raises(ValueError, match="drift guidance"):
            live.validate(guidance=bad)


def test_frame_seeds():
    fixed = live.Settings(seed=5, random_seed=False, grid=4)
    assert live.frame_seeds(fixed, 100, 0) == live.frame_seeds(fixed, 100, 9) == [5, 6, 7, 8]
    rnd = live.Settings(seed=5, random_seed=True, grid=4)
    assert live.frame_seeds(rnd, 100, 1) == [104, 105, 106, 107]


def test_gif_and_recorder(tmp_path):
    from PIL import Image

    frames = [np.full((20, 30, 3), 40 * i, np.uint8) for i in range(3)]
    p = live.write_gif(frames, tmp_path / "a.gif", 0.1)
    with Image.open(p) as im:
        assert im.n_frames == 3 and im.size == (30, 20)
    x = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    f = live.LiveFrame(x, None, "", "", "Drift", "DDPM", x)
    ticks = iter(np.arange(0, 100, 0.05))  # a frame every 50 ms; the recorder samples <= 12 per s
    rec = live.Recorder(seconds=1.0, clock=lambda: float(next(ticks)))
    while not rec.done.is_set():
        rec.offer(f)
    assert 10 <= len(rec.frames) <= 13 and rec.durations()[0] == pytest.approx(0.1)
    rec = live.Recorder(seconds=0.0, clock=lambda: float(next(ticks)))
    for i in range(10):
        rec.offer(live.LiveFrame(x + 20 * i, None, "", "", "Drift", "DDPM", x))  # distinct frames (GIF merges repeats)
    assert rec.done.is_set() and len(rec.frames) == 2  # min_frames even when the time is up at once
    gif, _ = rec.write(tmp_path, mp4=False)
    with Image.open(gif) as im:
        assert im.n_frames == 2


def test_validate_rejects_fractional_seed_and_non_bool_flag():
    with pytest.raises(ValueError, match="whole number"):
        live.validate(seed=1.5)
    for flag in ("yes", 1, None, "true"):
        with pytest.raises(ValueError, match="true or false"):
            live.validate(random_seed=flag)
    assert live.validate(seed=2.0, random_seed=np.bool_(False)).seed == 2
    assert live.validate(class_name="mixed").label == live.MIXED
    assert live.validate_record(live.RECORD_MIN_SECONDS) == live.RECORD_MIN_SECONDS
    with pytest.raises(ValueError):
        live.validate_record(live.RECORD_MIN_SECONDS - 0.1)


def test_tile_labels():
    mixed = live.Settings(label=live.MIXED)
    assert live.tile_labels(mixed, [8, 9, 10, 11]) == [8, 9, 0, 1]  # class = seed % 10: stable for a fixed seed
    assert live.tile_labels(live.Settings(label=3), [1, 2]) == 3
    assert live.tile_labels(live.Settings(label=None), [1, 2]) is None


def test_gif_of_frames_with_different_sizes(tmp_path):
    """A grid change while recording gives frames of two sizes: padded to one canvas, not an np.stack error."""
    from PIL import Image

    x4, x9 = torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.full((9, 3, 32, 32), 200, dtype=torch.uint8)
    frames = [live.clip_frame(live.LiveFrame(x, None, "", "", "Drift", "DDPM", x)) for x in (x4, x9, x4)]
    assert frames[0].shape != frames[1].shape
    p = live.write_gif(frames, tmp_path / "mixed.gif", 0.1)
    h, w = max(f.shape[0] for f in frames), max(f.shape[1] for f in frames)
    with Image.open(p) as im:
        assert im.n_frames == 3 and im.size == (w, h)
    same = live.same_size(frames)
    assert {f.shape for f in same} == {(h, w, 3)}
    assert np.array_equal(same[0], frames[0])  # 4 tiles at the clip scale make the larger panel: unchanged
    small = frames[1]
    assert np.array_equal(same[1][: small.shape[0], : small.shape[1]], small) and (same[1][small.shape[0]:] == 255).all()


def test_recorder_waits_for_the_ddpm_result_and_thins_frames():
    x = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    clock = iter(np.arange(0, 1000, 0.05))
    rec = live.Recorder(seconds=1.0, max_frames=20, wait_ddpm=True, clock=lambda: float(next(clock)))
    for i in range(100):  # 5 s of intermediate DDIM steps: past `seconds`, still recording
        rec.offer(live.LiveFrame(x + i, x + i, "", "", "Drift", "DDPM", x + i, ddpm_done=False))
    assert not rec.done.is_set() and len(rec.frames) <= 20  # thinned to fit, sampling rate halved
    assert rec.fps < live.RECORD_MAX_FPS
    d = rec.durations()
    assert sum(d[:-1]) == pytest.approx(rec.times[-1] - rec.times[0])  # delays stay real-time
    rec.offer(live.LiveFrame(x, x + 1, "", "", "Drift", "DDPM", x + 1, ddpm_done=True))
    assert rec.done.is_set() and rec.ddpm_finished  # ends on the finished sample
    # without wait_ddpm the length rules
    clock = iter(np.arange(0, 1000, 0.05))
    rec = live.Recorder(seconds=1.0, clock=lambda: float(next(clock)))
    while not rec.done.is_set():
        rec.offer(live.LiveFrame(x, x, "", "", "Drift", "DDPM", x, ddpm_done=False))
    assert not rec.ddpm_finished


@pytest.fixture(scope="module")
def engine():
    from driftin.config import preset
    from driftin.unet import UNet

    torch.manual_seed(0)
    drift = UNet(preset("tiny", num_classes=10, zero_init_out=False, guidance_input=True)).eval()
    drift.meta = {"objective": "drift"}
    ddpm = UNet(preset("tiny", num_classes=10, zero_init_out=False)).eval()
    ddpm.meta = {"objective": "ddpm"}
    dev = torch.device("cpu")
    return live.Engine(live.Slot("drift", "mem", drift), live.Slot("ddpm", "mem", ddpm), dev)


def test_live_frames_finish_shows_the_final_ddpm_sample(engine):
    s = live.Settings(seed=0, random_seed=True, grid=4, steps=30, label=live.MIXED, view="xt")
    stop, finish = threading.Event(), threading.Event()
    frames = []
    for f in live.live_frames(engine, lambda: s, stop, max_fps=100.0, max_seconds=120.0, finish=finish):
        frames.append(f)
        if f.ddpm is not None and "step 2/" in f.ddpm_stats:
            finish.set()  # mid-sample
    ddpm = [f for f in frames if f.ddpm is not None]
    assert ddpm[-1].ddpm_done and "step 30/30" in ddpm[-1].ddpm_stats
    assert frames[-1].drift is None and "stopped" in frames[-1].drift_stats  # drift stopped at once
    assert stop.is_set()


def test_recording_a_fresh_stream_ends_on_the_ddpm_result(engine, tmp_path):
    s = live.Settings(seed=0, random_seed=True, grid=4, steps=40, label=3)
    stop = threading.Event()
    rec = live.Recorder(0.2, wait_ddpm=True)
    for f in live.live_frames(engine, lambda: s, stop, max_fps=50.0, max_seconds=120.0):
        rec.offer(f)
        if rec.done.is_set():
            break
    stop.set()
    assert rec.ddpm_finished  # the clip's last frame shows DDIM's finished sample


def test_engine_gives_each_model_its_own_guidance(engine):
    """Drift samples with the drift guidance, DDIM with the DDIM guidance: each matches a direct generate() call."""
    from driftin.generate import generate

    s = live.Settings(seed=3, random_seed=False, grid=4, steps=3, label=live.MIXED, guidance=2.0, ddim_guidance=3.0)
    seeds, labels = [3, 4, 5, 6], [3, 4, 5, 6]
    drift, _ = engine.drift_images(seeds, s)
    ddim = engine.ddim_images(seeds, s)

    def direct(kind, guidance, **kw):
        return generate(engine.slot(kind).model, seeds=seeds, class_labels=labels, guidance=guidance, output="uint8",
                        **kw)

    assert torch.equal(drift, direct("drift", 2.0, method="drift"))
    iv = dict(guidance_interval=s.ddim_guidance_interval)  # the app's default interval (None = every step)
    assert torch.equal(ddim, direct("ddpm", 3.0, method="ddim", steps=3, **iv))
    assert not torch.equal(ddim, direct("ddpm", 2.0, method="ddim", steps=3, **iv))  # not drift's guidance
    assert not torch.equal(drift, direct("drift", 3.0, method="drift"))  # nor DDIM's for drift


def test_walk_uses_per_tile_classes(engine):
    from driftin.generate import generate

    s = live.Settings(grid=4, label=live.MIXED)
    z = live.LatentWalk(4, 7, 8).noise_at(3)
    x, dt = engine.drift_from_noise(z, s)
    want = generate(engine.drift.model, noise=z, method="drift", class_labels=[0, 1, 2, 3], output="uint8")
    assert torch.equal(x, want) and dt > 0
