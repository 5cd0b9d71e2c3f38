"""The fast sampling path (driftin/fast.py) on CPU: API, path selection, and that the fast path's code
(static buffers, precomputed DDIM coefficients, unrolled loop, pre-drawn eta noise, per-step callback
replay) gives the eager images for the same seeds. CUDA graphs / compile are in test_fast_gpu.py."""
import dataclasses
import json
import warnings

import pytest
import torch

from driftin import fast
from driftin.config import preset
from driftin.generate import generate, make_noise
from driftin.unet import UNet

STATIC = fast.FastOptions(dtype="fp32", compile=False, graphs=False, channels_last=False)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {g: UNet(preset("tiny", num_classes=10, guidance_input=g, zero_init_out=False)).eval() for g in (False, True)}


@pytest.fixture(autouse=True)
def _fresh_cache():
    fast.clear_cache()
    yield
    fast.clear_cache()


def _inputs(seeds):
    return make_noise(seeds, (3, 32, 32)), torch.tensor([s % 10 for s in seeds])


def test_cpu_generate_fast_is_eager(nets):
    net = nets[False]
    for kw in (dict(method="drift"), dict(method="ddim", steps=3, class_labels=[1, 2], guidance=2.0, eta=0.5)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the fallback is silent
            a = generate(net, seeds=[3, 4], fast=True, **kw)
        assert fast.last_info["path"] == "eager" and "cpu" in fast.last_info["reason"]
        torch.testing.assert_close(a, generate(net, seeds=[3, 4], **kw), atol=0, rtol=0)


def test_options_disable_fast(nets, monkeypatch):
    monkeypatch.setenv("DRIFTIN_FAST", "0")  # the library itself ignores the environment; from_env() maps it
    noise, _ = _inputs([0])
    fast.fast_generate(nets[False], noise, "drift", 1, None, 1.0, 0.0, [0], None, options=fast.FastOptions.from_env())
    assert fast.last_info["path"] == "eager" and "disabled" in fast.last_info["reason"]


@pytest.mark.parametrize("guidance_input,labels,guidance", [(False, False, 1.0), (False, True, 1.0), (True, True, 2.5)])
def test_static_drift_matches_eager(nets, guidance_input, labels, guidance):
    net = nets[guidance_input]
    seeds = [3, 4, 5]
    noise, y = _inputs(seeds)
    y = y if labels else None
    s = fast.get_sampler(net, STATIC, "cpu")
    ref = fast.eager_generate(net, noise, "drift", 1, y, guidance, 0.0, seeds)
    for _ in range(2):  # second call: cached entry, static buffers refilled
        torch.testing.assert_close(s.generate(noise, "drift", 1, y, guidance, 0.0, seeds), ref, atol=1e-5, rtol=0)
    assert s.path == "static"


@pytest.mark.parametrize("eta", [0.0, 0.7])
@pytest.mark.parametrize("guidance,labels", [(1.0, False), (1.0, True), (3.0, True)])
def test_static_ddim_matches_eager(nets, eta, guidance, labels):
    net = nets[False]
    seeds = [7, 8]
    noise, y = _inputs(seeds)
    y = y if labels else None
    s = fast.get_sampler(net, STATIC, "cpu")
    fe, ff = [], []
    ref = fast.eager_generate(net, noise, "ddim", 4, y, guidance, eta, seeds,
                              callback=lambda i, x, x0: fe.append((i, x.clone(), x0.clone())))
    out = s.generate(noise, "ddim", 4, y, guidance, eta, seeds)  # whole loop
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    out_cb = s.generate(noise, "ddim", 4, y, guidance, eta, seeds,  # per-step replay, every frame
                        callback=lambda i, x, x0: ff.append((i, x.clone(), x0.clone())))
    torch.testing.assert_close(out_cb, ref, atol=1e-4, rtol=0)
    assert [f[0] for f in ff] == [f[0] for f in fe] == [0, 1, 2, 3]
    for (_, xa, x0a), (_, xb, x0b) in zip(ff, fe):
        torch.testing.assert_close(xa, xb, atol=1e-4, rtol=0)
        torch.testing.assert_close(x0a, x0b, atol=1e-4, rtol=0)
    # a different guidance value reuses the entry (the scale is a static input), and still matches
    if y is not None:
        n_graphs = fast.cache_info()["graphs"]
        ref2 = fast.eager_generate(net, noise, "ddim", 4, y, guidance + 1.0, eta, seeds)
        torch.testing.assert_close(s.generate(noise, "ddim", 4, y, guidance + 1.0, eta, seeds), ref2, atol=1e-4, rtol=0)
        assert fast.cache_info()["graphs"] == n_graphs + (guidance == 1.0)  # 1.0 -> 2.0 switches CFG on


def test_static_ddim_follows_the_spacing(nets):
    """The spacing reaches the captured sampler (its own entry: other timesteps and coefficients) and generate()."""
    from driftin.generate import generate

    net = nets[False]
    seeds = [3, 4]
    noise, y = _inputs(seeds)
    s = fast.get_sampler(net, STATIC, "cpu")
    ref = fast.eager_generate(net, noise, "ddim", 4, y, 2.0, 0.0, seeds, spacing="quadratic")
    torch.testing.assert_close(s.generate(noise, "ddim", 4, y, 2.0, 0.0, seeds, spacing="quadratic"), ref, atol=1e-4, rtol=0)
    uniform = s.generate(noise, "ddim", 4, y, 2.0, 0.0, seeds)
    assert not torch.allclose(uniform, ref, atol=1e-3)
    out = generate(net, seeds=seeds, method="ddim", steps=4, class_labels=y, guidance=2.0, spacing="quadratic")
    torch.testing.assert_close(out, ref.clamp(-1, 1).add(1).div(2), atol=1e-4, rtol=0)
    # generate(fast=True) where the captured path does not run (CPU: the eager fallback) keeps the spacing too
    torch.testing.assert_close(generate(net, seeds=seeds, method="ddim", steps=4, class_labels=y, guidance=2.0,
                                        spacing="quadratic", fast=True), out, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="spacing"):
        generate(net, seeds=seeds, method="ddim", steps=4, spacing="log")


def test_static_ddim_follows_the_guidance_interval(nets):
    """Each step's CFG scale sits in its own static scalar: the interval reaches the unrolled loop and the per-step
    callback replay, and a new interval on the same entry refills them (no stale scale from the last call)."""
    net = nets[False]
    seeds = [3, 4]
    noise, y = _inputs(seeds)
    s = fast.get_sampler(net, STATIC, "cpu")
    for interval in ((300, 600), (0, 400), None):
        ref = fast.eager_generate(net, noise, "ddim", 4, y, 2.0, 0.0, seeds, guidance_interval=interval)
        got = s.generate(noise, "ddim", 4, y, 2.0, 0.0, seeds, guidance_interval=interval)
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
        frames = []
        stepped = s.generate(noise, "ddim", 4, y, 2.0, 0.0, seeds, callback=lambda i, x, x0: frames.append(i),
                             guidance_interval=interval)
        torch.testing.assert_close(stepped, ref, atol=1e-4, rtol=0)
        assert frames == [0, 1, 2, 3]
    assert not torch.allclose(fast.eager_generate(net, noise, "ddim", 4, y, 2.0, 0.0, seeds, guidance_interval=(300, 600)),
                              ref, atol=1e-3)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_static_ddim_runs_the_doubled_batch_only_inside_the_interval(nets, eta):
    """Steps outside the guidance interval are plain conditional steps (as in the eager path), in the unrolled loop and
    in the per-step replay: batch n there, 2n only at the guided steps; an interval holding no step, or guidance 1,
    is no guidance. With eta > 0 both kinds of step add the same pre-drawn noise."""
    net = nets[False]
    seeds = [3, 4]
    noise, y = _inputs(seeds)
    s = fast.get_sampler(net, STATIC, "cpu")
    calls = []
    hook = s.model.register_forward_pre_hook(lambda m, args: calls.append((args[0].shape[0], int(args[1][0]))))
    plain = [(2, t) for t in (750, 500, 250, 0)]  # DDIM-4 visits t = 750, 500, 250, 0
    try:
        for callback in (None, lambda i, x, x0: None):
            for guidance, interval, want in ((2.0, (300, 600), [(2, 750), (4, 500), (2, 250), (2, 0)]),
                                             (2.0, (0, 999), [(4, t) for _, t in plain]),
                                             (2.0, (501, 749), plain), (1.0, (300, 600), plain)):
                calls.clear()
                got = s.generate(noise, "ddim", 4, y, guidance, eta, seeds, callback=callback, guidance_interval=interval)
                assert calls == want, (guidance, interval, callback)
                ref = fast.eager_generate(net, noise, "ddim", 4, y, guidance, eta, seeds, guidance_interval=interval)
                torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
    finally:
        hook.remove()


def test_per_step_replay_draws_the_eta_noise_once_per_request(nets, monkeypatch):
    """A request mixing guided and plain steps replays two entries; only one holds the eta noise it adds, so the
    seeds' noise is drawn once (it was drawn into both), and the images stay the eager ones."""
    from driftin.fast import sampler as fast_sampler
    draws = []
    real = fast_sampler.predraw_noise
    monkeypatch.setattr(fast_sampler, "predraw_noise", lambda *a, **k: draws.append(a) or real(*a, **k))
    net = nets[False]
    s = fast.get_sampler(net, STATIC, "cpu")
    # a fresh pair of entries, the same entries with other seeds, then a plain request (guidance 1) whose one entry is
    # the plain entry the mixed requests left holding stale noise
    for seeds, guidance in (([3, 4], 2.0), ([5, 6], 2.0), ([7, 8], 1.0)):
        noise, y = _inputs(seeds)
        draws.clear()
        got = s.generate(noise, "ddim", 4, y, guidance, 1.0, seeds, callback=lambda i, x, x0: None,
                         guidance_interval=(300, 600))
        assert len(draws) == 1
        torch.testing.assert_close(got, fast.eager_generate(net, noise, "ddim", 4, y, guidance, 1.0, seeds,
                                                            guidance_interval=(300, 600)), atol=1e-4, rtol=0)


def test_inference_mode_callers(nets):
    """Static buffers made under torch.inference_mode() stay usable outside it, and vice versa."""
    net = nets[False]
    s = fast.get_sampler(net, STATIC, "cpu")
    noise, y = _inputs([1, 2])
    with torch.inference_mode():
        a = s.generate(noise, "ddim", 2, y, 2.0, 0.0, [1, 2])
    b = s.generate(noise, "ddim", 2, y, 2.0, 0.0, [1, 2])
    with torch.inference_mode():
        c = s.generate(noise.clone(), "ddim", 2, y, 2.0, 0.0, [1, 2])
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(c, b, atol=0, rtol=0)


def test_ddim_coefficients_match_schedule():
    from driftin.diffusion import alphas_cumprod, ddim_timesteps

    ts, c, sig = fast.ddim_coefficients(10, 1.0)
    abar = alphas_cumprod()
    assert list(ts) == ddim_timesteps(10) and c.shape == (10, 8) and c.dtype == torch.float32
    torch.testing.assert_close(c[:, 0] ** 2, abar[list(ts)].float(), rtol=1e-5, atol=0)
    assert c[-1, 2] == 1 and sig[-1] == 0.0 and all(s > 0 for s in sig[:-1])
    assert fast.ddim_coefficients(10, 0.0)[2] == (0.0,) * 10


def test_cache_is_bounded(nets, monkeypatch):
    monkeypatch.setenv("DRIFTIN_FAST_CACHE", "3")
    s = fast.get_sampler(nets[False], dataclasses.replace(STATIC, max_graphs=fast.FastOptions.from_env().max_graphs), "cpu")
    for bs in (1, 2, 3, 4, 5):
        seeds = list(range(bs))
        s.generate(_inputs(seeds)[0], "drift", 1, None, 1.0, 0.0, seeds)
    info = fast.cache_info()
    assert info["graphs"] == 3 and [k[1] for k in info["keys"]] == [3, 4, 5]  # least recently used dropped
    for i in range(6):  # model copies are bounded too
        fast.get_sampler(nets[False], fast.FastOptions(dtype="fp32", compile=False, graphs=False, mode="default",
                                                       channels_last=bool(i % 2), dynamic=i < 3), "cpu")
    assert fast.cache_info()["samplers"] <= fast.MAX_SAMPLERS


def test_weight_change_refreshes_copy():
    torch.manual_seed(1)
    net = UNet(preset("tiny", zero_init_out=False)).eval()
    s = fast.get_sampler(net, STATIC, "cpu")
    noise, _ = _inputs([0, 1])
    a = s.generate(noise, "drift", 1, None, 1.0, 0.0, [0, 1])
    assert s.fused_emb
    with torch.no_grad():
        net.out.bias.add_(0.5)  # in-place, like an optimizer step or load_state_dict
    b = s.generate(noise, "drift", 1, None, 1.0, 0.0, [0, 1])
    assert fast.get_sampler(net, STATIC, "cpu") is s  # same copy, refreshed in place
    torch.testing.assert_close(b, fast.eager_generate(net, noise, "drift"), atol=1e-5, rtol=0)
    torch.testing.assert_close(b - a, torch.full_like(a, 0.5), atol=1e-5, rtol=0)
    with torch.no_grad():  # an AdaGN projection: the fused copy of it is refreshed too
        net.mid1.emb.weight.mul_(3.0).add_(0.05)
    c = s.generate(noise, "drift", 1, None, 1.0, 0.0, [0, 1])
    torch.testing.assert_close(c, fast.eager_generate(net, noise, "drift"), atol=1e-5, rtol=0)
    assert not torch.allclose(b, c)


def test_unfused_copy_matches_fused():
    torch.manual_seed(2)
    net = UNet(preset("tiny", num_classes=10, zero_init_out=False)).eval()
    noise, y = _inputs([4, 5])
    outs = []
    for fuse in (True, False):
        s = fast.get_sampler(net, fast.FastOptions(dtype="fp32", compile=False, graphs=False, fuse_emb=fuse), "cpu")
        assert s.fused_emb is fuse
        outs.append(s.generate(noise, "ddim", 3, y, 2.0, 0.0, [4, 5]))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=0)
    assert not hasattr(net, "_emb_w") and "forward" not in vars(net.mid1)  # the original is untouched


def test_options_from_env(monkeypatch):
    o = fast.FastOptions.from_env()
    assert o == fast.FastOptions() and o.compile and o.graphs and o.use_channels_last and o.dtype == "bf16"
    monkeypatch.setenv("DRIFTIN_COMPILE", "0")
    monkeypatch.setenv("DRIFTIN_COMPILE_MODE", "max-autotune")
    monkeypatch.setenv("DRIFTIN_COMPILE_DYNAMIC", "0")
    o = fast.FastOptions.from_env()
    assert not o.compile and not o.use_channels_last and o.mode == "max-autotune-no-cudagraphs" and o.dynamic is False
    monkeypatch.setenv("DRIFTIN_FAST_DTYPE", "fp64")
    with pytest.raises(ValueError, match="dtype"):
        fast.FastOptions.from_env()


def test_fast_argument_errors(nets):
    s = fast.get_sampler(nets[False], STATIC, "cpu")
    noise, y = _inputs([0])
    with pytest.raises(ValueError, match="no guidance input"):
        s.generate(noise, "drift", 1, y, 2.0, 0.0, [0])
    with pytest.raises(ValueError, match="no guidance input"):
        generate(nets[False], 1, 0, method="drift", guidance=2.0, fast=True)
    with pytest.raises(ValueError, match="DDIM steps"):
        s.generate(noise, "ddim", 0, None, 1.0, 0.0, [0])


def test_dynamo_traces_step_functions(nets):
    """torch.compile (dynamo, backend 'eager': no codegen, CPU) traces the step functions without graph
    breaks, across batch sizes, and gives the eager result."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    opts = fast.FastOptions(dtype="fp32", compile=True, backend="eager", graphs=False, channels_last=False)
    net = nets[True]
    s = fast.get_sampler(net, opts, "cpu")
    for bs in (1, 3):
        seeds = list(range(bs))
        noise, y = _inputs(seeds)
        torch.testing.assert_close(s.generate(noise, "drift", 1, y, 2.0, 0.0, seeds),
                                   fast.eager_generate(net, noise, "drift", 1, y, 2.0, 0.0, seeds), atol=1e-5, rtol=0)
    seeds = [0, 1]
    noise, y = _inputs(seeds)
    torch.testing.assert_close(s.generate(noise, "ddim", 2, y, 2.0, 0.5, seeds),
                               fast.eager_generate(net, noise, "ddim", 2, y, 2.0, 0.5, seeds), atol=1e-4, rtol=0)
    assert s.compiled and s.compile_error is None and s.path == "compile"
    assert sum(counters["graph_break"].values()) == 0


def test_bench_quick(tmp_path):
    from driftin.bench import infer

    out = tmp_path / "infer.json"
    rc = infer.main(["--quick", "--device", "cpu", "--batch-sizes", "1", "2", "--ddim-steps", "2", "--cfg-steps", "2",
                     "--paths", "eager-fp32", "static-fp32", "fast", "--reps", "2", "--max-seconds", "0.05",
                     "--out", str(out), "--md", str(tmp_path / "t.md")])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["meta"]["timing"] == "perf_counter" and res["meta"]["torch"] == torch.__version__
    rows = res["rows"]
    assert len(rows) == 3 * 4 and all(r["status"] == "ok" and r["ms"] > 0 and r["img_s"] > 0 for r in rows)
    assert {r["exec_path"] for r in rows if r["path"] == "fast"} == {"eager"}  # CPU: fast_generate picks eager
    for r in rows:
        if r["path"] != "eager-fp32":
            assert r["max_abs_diff"] < 1e-4, r
    assert "| batch |" in (tmp_path / "t.md").read_text()


def test_bench_ok_row_and_targets():
    """The bench's one row lookup: the first "ok" row of (preset, path, kind, bs), and steps when given."""
    from driftin.bench.infer import check_targets
    from driftin.bench.infer_measure import ok_row

    def row(kind, bs, steps, status="ok", **kw):
        return {"preset": "base", "path": "fast", "kind": kind, "bs": bs, "steps": steps, "status": status, **kw}

    rows = [row("drift", 1, None, "error: x"), row("drift", 1, None, img_s=2000.0), row("drift", 256, None, img_s=100.0),
            row("ddim", 1, 25, ms=5.0), row("ddim", 1, 50, ms=20.0), {**row("ddim", 1, 50, ms=1.0), "path": "eager-fp32"}]
    assert ok_row(rows, "base", "fast", "drift", 1) is rows[1]
    assert ok_row(rows, "base", "fast", "ddim", 1) is rows[3] and ok_row(rows, "base", "fast", "ddim", 1, 50) is rows[4]
    assert ok_row(rows, "base", "fast", "ddim", 16, 50) is None and ok_row(rows, "small", "fast", "drift", 1) is None
    t = check_targets({"rows": rows})
    assert t["drift_bs1_img_s"] == {"goal": 1500.0, "value": 2000.0, "met": True}
    assert t["drift_bs256_img_s"]["met"] is False and t["ddim50_bs1_ms"] == {"goal": 25.0, "value": 20.0, "met": True}


def test_bench_timer_syncs_its_own_device(monkeypatch):
    """Timer.sync (and so wall, call, measure) waits for the device the timer was made for, not the current one."""
    from driftin.bench.timing import Timer

    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    out, ms = Timer("cuda:1").wall(lambda: 7)
    assert out == 7 and ms >= 0 and synced == [torch.device("cuda:1")] * 2
    synced.clear()
    Timer(torch.device("cpu")).wall(lambda: None)
    assert synced == []
