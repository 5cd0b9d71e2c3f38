"""The fast path on CUDA: compiled + CUDA-graph drift and DDIM give the eager images (bf16 tolerance).

python -m pytest -q tests/test_fast_gpu.py      # skipped without CUDA; ~2-4 min on an H100 (compiles)

bf16 tolerance: the fast path's distance to the fp32 eager images may not exceed twice the distance of
plain eager bf16 (the same bf16 copy, no compile, no graphs) plus a small slack, in mean and in the
99.9th percentile of |diff| over pixels; paths that run the very same kernels must agree to ~1e-3."""
import warnings

import pytest
import torch

from driftin import fast
from driftin.config import preset
from driftin.generate import generate, make_noise
from driftin.unet import UNet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

STRICT = fast.FastOptions(strict=True)  # a build failure is an error here, not a silent eager run
EAGER_BF16 = fast.FastOptions(dtype="bf16", compile=False, graphs=False, channels_last=False, strict=True)


@pytest.fixture(autouse=True)
def _strict(monkeypatch):
    monkeypatch.setenv("DRIFTIN_FAST_STRICT", "1")  # a build failure is an error here, not a silent eager run
    for k in ("DRIFTIN_FAST", "DRIFTIN_COMPILE", "DRIFTIN_CUDA_GRAPHS", "DRIFTIN_FAST_DTYPE", "DRIFTIN_CHANNELS_LAST",
              "DRIFTIN_COMPILE_MODE", "DRIFTIN_COMPILE_DYNAMIC", "DRIFTIN_FAST_CACHE", "DRIFTIN_FREEZE"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    mk = lambda name, **kw: UNet(preset(name, num_classes=10, zero_init_out=False, **kw)).cuda().eval()  # noqa: E731
    return {"drift": mk("tiny", guidance_input=True), "ddim": mk("tiny"), "small": mk("small", guidance_input=True)}


def _inputs(seeds):
    return make_noise(seeds, (3, 32, 32), "cuda"), torch.tensor([s % 10 for s in seeds], device="cuda")


def _dist(a, b):
    d = (a.clamp(-1, 1) - b.clamp(-1, 1)).abs().flatten().float()
    return d.mean().item(), d.quantile(0.999).item() if d.numel() <= 16_000_000 else d.max().item()


def _check_bf16_tolerance(out, ref_fp32, ref_bf16, slack=(2e-3, 2e-2)):
    m, q = _dist(out, ref_fp32)
    mb, qb = _dist(ref_bf16, ref_fp32)
    assert torch.isfinite(out).all()
    assert m <= 2 * mb + slack[0], (m, mb)
    assert q <= 2 * qb + slack[1], (q, qb)


def _run(net, noise, method, steps, y, guidance, eta, seeds, callback=None, options=STRICT):
    return fast.fast_generate(net, noise, method, steps, y, guidance, eta, seeds, callback, options=options)


@pytest.mark.parametrize("which,bs,labels,guidance", [("drift", 1, True, 2.0), ("drift", 3, True, 1.0),
                                                      ("drift", 3, False, 3.0), ("small", 4, True, 2.0)])
def test_drift_fast_matches_eager(nets, which, bs, labels, guidance):
    net = nets[which]
    seeds = list(range(10, 10 + bs))
    noise, y = _inputs(seeds)
    y = y if labels else None
    out = _run(net, noise, "drift", 1, y, guidance, 0.0, seeds)
    assert fast.last_info["path"] == "cuda-graph+compile", fast.last_info
    assert out.dtype == torch.float32 and out.shape == noise.shape and out.is_contiguous()
    ref = fast.eager_generate(net, noise, "drift", 1, y, guidance, 0.0, seeds)
    ref_bf16 = _run(net, noise, "drift", 1, y, guidance, 0.0, seeds, options=EAGER_BF16)
    _check_bf16_tolerance(out, ref, ref_bf16)
    again = _run(net, noise, "drift", 1, y, guidance, 0.0, seeds)  # replay: same bits, and no aliasing
    other = _run(net, make_noise([s + 100 for s in seeds], (3, 32, 32), "cuda"), "drift", 1, y, guidance, 0.0, seeds)
    assert torch.equal(out, again) and not torch.equal(out, other)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_ddim_fast_matches_eager(nets, eta, guidance):
    net, steps = nets["ddim"], 8
    seeds = [5, 6]
    noise, y = _inputs(seeds)
    out = _run(net, noise, "ddim", steps, y, guidance, eta, seeds)
    assert fast.last_info["path"] == "cuda-graph+compile", fast.last_info
    ref = fast.eager_generate(net, noise, "ddim", steps, y, guidance, eta, seeds)
    ref_bf16 = _run(net, noise, "ddim", steps, y, guidance, eta, seeds, options=EAGER_BF16)
    _check_bf16_tolerance(out, ref, ref_bf16, slack=(5e-3, 5e-2))
    # with a callback: the single-step graph replayed per step, same kernels -> same result; no warnings
    frames = []
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out_cb = _run(net, noise, "ddim", steps, y, guidance, eta, seeds,
                      callback=lambda i, x, x0: frames.append((i, x.clone(), x0.clone())))
    assert not [x for x in w if "driftin" in str(x.filename)], [str(x.message) for x in w]
    assert [f[0] for f in frames] == list(range(steps))
    torch.testing.assert_close(out_cb, out, atol=1e-3, rtol=0)
    torch.testing.assert_close(frames[-1][1], out_cb, atol=0, rtol=0)
    # the eager callback sees the same frames (bf16 tolerance on the last x0)
    eager_frames = []
    fast.eager_generate(net, noise, "ddim", steps, y, guidance, eta, seeds,
                        callback=lambda i, x, x0: eager_frames.append(x0.clone()))
    assert (frames[-1][2] - eager_frames[-1]).abs().mean().item() < 0.05


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_fast_guidance_interval_matches_eager(nets, eta):
    """Guided (doubled batch) and plain steps mixed in one graph, and in the per-step replay's two graphs."""
    net, steps, iv = nets["ddim"], 8, (300, 600)  # DDIM-8 guides t = 500 and 375 only
    seeds = [5, 6]
    noise, y = _inputs(seeds)
    kw = dict(options=STRICT, guidance_interval=iv)
    out = fast.fast_generate(net, noise, "ddim", steps, y, 3.0, eta, seeds, **kw)
    assert fast.last_info["path"] == "cuda-graph+compile", fast.last_info
    ref = fast.eager_generate(net, noise, "ddim", steps, y, 3.0, eta, seeds, guidance_interval=iv)
    ref_bf16 = fast.fast_generate(net, noise, "ddim", steps, y, 3.0, eta, seeds, options=EAGER_BF16, guidance_interval=iv)
    _check_bf16_tolerance(out, ref, ref_bf16, slack=(5e-3, 5e-2))
    every = fast.fast_generate(net, noise, "ddim", steps, y, 3.0, eta, seeds, options=STRICT)
    assert (every - out).abs().mean().item() > 1e-3  # the interval changed the sample
    frames = []
    out_cb = fast.fast_generate(net, noise, "ddim", steps, y, 3.0, eta, seeds, lambda i, x, x0: frames.append(i), **kw)
    assert frames == list(range(steps))
    torch.testing.assert_close(out_cb, out, atol=1e-3, rtol=0)


def test_generate_api_fast(nets):
    net = nets["drift"]
    kw = dict(seeds=[1, 2, 3, 4], method="drift", class_labels=[0, 1, 2, 3], guidance=2.0)
    a, b = generate(net, fast=True, **kw), generate(net, **kw)
    assert a.shape == b.shape == (4, 3, 32, 32) and a.dtype == torch.float32
    assert (a - b).abs().mean().item() < 0.02
    u = generate(net, fast=True, output="uint8", **kw)
    assert u.dtype == torch.uint8
    d = generate(nets["ddim"], seeds=[1, 2], method="ddim", steps=5, class_labels=3, guidance=2.0, eta=0.5, fast=True)
    assert d.shape == (2, 3, 32, 32) and fast.last_info["path"] == "cuda-graph+compile"


def test_graphs_without_compile_match_eager_bf16(nets, monkeypatch):
    monkeypatch.setenv("DRIFTIN_COMPILE", "0")
    opts = fast.FastOptions.from_env()
    net = nets["ddim"]
    seeds = [0, 1, 2]
    noise, y = _inputs(seeds)
    for method, steps, g, eta in (("drift", 1, 1.0, 0.0), ("ddim", 6, 2.0, 0.5)):
        out = _run(net, noise, method, steps, y, g, eta, seeds, options=opts)
        assert fast.last_info["path"] == "cuda-graph"
        ref = _run(net, noise, method, steps, y, g, eta, seeds, options=EAGER_BF16)  # same ops, uncaptured
        m, q = _dist(out, ref)  # only cuDNN algorithm choices may differ
        assert m < 5e-3 and q < 5e-2, (method, m, q)


def test_weights_change_is_seen(nets):
    torch.manual_seed(3)
    net = UNet(preset("tiny", zero_init_out=False)).cuda().eval()
    noise, _ = _inputs([0, 1])
    a = _run(net, noise, "drift", 1, None, 1.0, 0.0, [0, 1])
    with torch.no_grad():
        net.out.bias.add_(0.25)
    b = _run(net, noise, "drift", 1, None, 1.0, 0.0, [0, 1])
    assert abs((b - a).mean().item() - 0.25) < 5e-3


def test_cache_bounded_on_gpu(nets, monkeypatch):
    monkeypatch.setenv("DRIFTIN_FAST_CACHE", "2")
    monkeypatch.setenv("DRIFTIN_COMPILE", "0")
    opts = fast.FastOptions.from_env()
    fast.clear_cache()
    for bs in (1, 2, 5, 7):
        seeds = list(range(bs))
        _run(nets["drift"], _inputs(seeds)[0], "drift", 1, None, 1.0, 0.0, seeds, options=opts)
    assert fast.cache_info()["graphs"] == 2
    fast.clear_cache()
