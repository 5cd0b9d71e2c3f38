"""GPU tests of the drift field: triton and lean against the reference (float32 tolerances).

python3 -m pytest -q tests/test_field_gpu.py        (skipped without CUDA)
"""
import pytest
import torch

from driftin.drift.field import drift_field, drift_loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# (L, N, P, M or None for self-negatives, U extra, C): non-multiples of every tile size, C not a
# power of two, C above the 128-wide channel tile, a single row, more rows than columns.
SHAPES = [
    (1, 1, 5, 4, 0, 3),
    (2, 37, 21, None, 9, 19),
    (3, 100, 70, 50, 0, 64),
    (2, 129, 200, None, 33, 130),
    (1, 300, 257, 100, 40, 768),
    (4, 513, 64, None, 0, 1000),
]


def _data(L, N, P, M, U, C, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda n: torch.randn(L, n, C, device="cuda", generator=g) / 1.4
    return r(N), r(P) + 0.2, (r(M) - 0.1 if M else None), (r(U) if U else None)


def _rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12)).item()


@pytest.fixture(autouse=True)
def fp32_matmul():
    # the reference must be true fp32 (torch may default cuBLAS to tf32 elsewhere)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("norm", ["both", "y", "none"])
def test_impls_match_reference(shape, norm):
    x, pos, neg, extra = _data(*shape)
    w = torch.linspace(0.5, 2.0, shape[0], device="cuda")
    kw = dict(extra_neg=extra, extra_weight=w, kernel_norm=norm)
    ref = drift_field(x.double(), pos.double(), None if neg is None else neg.double(), impl="reference",
                      **{**kw, "extra_neg": None if extra is None else extra.double()})
    for impl, extra_kw in (("lean", {"block": 64}), ("triton", {"precision": "tf32x3"}),
                           ("triton", {"precision": "ieee"})):
        got = drift_field(x, pos, neg, impl=impl, **kw, **extra_kw)
        assert got.shape == x.shape and got.dtype == torch.float32
        assert torch.isfinite(got).all()
        assert _rel(got, ref) < 2e-4, (impl, extra_kw, _rel(got, ref))


def test_triton_tf32_close():
    x, pos, neg, extra = _data(2, 257, 300, None, 20, 96)
    ref = drift_field(x, pos, None, extra_neg=extra, impl="reference")
    got = drift_field(x, pos, None, extra_neg=extra, impl="triton", precision="tf32")
    assert _rel(got, ref) < 5e-2  # tf32: ~1e-3 per product, amplified by small temperatures


def test_triton_many_temperatures_and_auto():
    x, pos, _, _ = _data(2, 200, 150, None, 0, 48)
    taus = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)  # two launches (4 + 2)
    ref = drift_field(x, pos, temperatures=taus, impl="reference")
    assert _rel(drift_field(x, pos, temperatures=taus, impl="triton"), ref) < 2e-4
    assert _rel(drift_field(x, pos, temperatures=taus, impl="auto"), ref) < 2e-4


def test_big_n_streams():
    """N = 16384 self-negatives with C = 256: the dense matrix would be 2 GiB per temperature. With a
    fixed row block the extra memory is O(N * C) plus one block's Gram and weight matrices."""
    x, pos, _, _ = _data(1, 16384, 16384, None, 0, 256)
    K, block = 2 * 16384, 512
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    V = drift_field(x, pos, impl="triton", block=block)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert torch.isfinite(V).all()
    assert extra < 40 * x.numel() * 4 + 2 * (3 + 1) * block * K * 4, extra / 2**20
    lean = drift_field(x, pos, impl="lean", block=4096)
    assert _rel(V, lean) < 5e-4


def test_drift_loss_on_gpu():
    x, pos, _, extra = _data(2, 64, 80, None, 16, 32)
    x = x.clone().requires_grad_(True)
    loss, stats = drift_loss(x.bfloat16(), pos.bfloat16(), extra_neg=extra, extra_weight=0.3)
    loss.backward()
    assert torch.isfinite(loss) and x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
