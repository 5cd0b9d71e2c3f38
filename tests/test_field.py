"""CPU tests of the drifting field (driftin/drift/field.py): exactness against a literal loop
implementation, properties of the field, the loss, a 2-D toy generator, and the kernel bench."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from driftin.drift.field import drift_field, drift_loss, feature_scale

CPU_IMPLS = [("reference", {}), ("torch", {}), ("lean", {"block": 2})]  # block 2: several blocks
TAUS = (0.02, 0.05, 0.2)


def literal_field(x, pos, neg, extra, w, taus, norm, eps):
    """The equations written out with python loops over i, j (float64). Tiny sizes only."""
    L, N, C = x.shape
    out = torch.zeros(L, N, C, dtype=torch.float64)
    for g in range(L):
        negs = x[g] if neg is None else neg[g]
        cols = list(pos[g]) + list(negs) + (list(extra[g]) if extra is not None else [])
        P, Mn, K = pos.shape[1], negs.shape[0], len(cols)
        for tau in taus:
            te = tau * math.sqrt(C)
            lg = [[-math.inf if (neg is None and j == P + i) else -float((x[g, i] - cols[j]).norm()) / te
                   for j in range(K)] for i in range(N)]
            rl = [math.log(sum(math.exp(lg[i][j]) for j in range(K))) for i in range(N)]
            cl = [math.log(sum(math.exp(lg[i][j]) for i in range(N))) for j in range(K)]
            A = [[0.0] * K for _ in range(N)]
            for i in range(N):
                for j in range(K):
                    if lg[i][j] == -math.inf:
                        continue
                    if norm == "both":
                        A[i][j] = math.sqrt(math.exp(lg[i][j] - rl[i]) * math.exp(lg[i][j] - cl[j]))
                    elif norm == "y":
                        A[i][j] = math.exp(lg[i][j] - rl[i])
                    else:
                        A[i][j] = math.exp(lg[i][j])
                    if j >= P + Mn:
                        A[i][j] *= float(w[g])
            V = torch.zeros(N, C, dtype=torch.float64)
            for i in range(N):
                sp = sum(A[i][:P])
                sn = sum(A[i][P:])
                for j in range(K):
                    V[i] += (A[i][j] * sn if j < P else -A[i][j] * sp) * cols[j]
            out[g] += V / math.sqrt(float(V.pow(2).mean()) + eps)
    return out


def _data(seed, L=2, N=6, P=5, M=7, U=4, C=3, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    r = lambda n: torch.randn(L, n, C, generator=g, dtype=torch.float64) * scale
    return r(N), r(P) + 0.7, r(M) - 0.3, r(U) + 0.2


@pytest.mark.parametrize("norm", ["both", "y", "none"])
@pytest.mark.parametrize("sep_neg", [False, True])
@pytest.mark.parametrize("cfg", [False, True])
def test_matches_literal(norm, sep_neg, cfg):
    x, pos, neg, extra = _data(1 + sep_neg + 2 * cfg, C=3 + cfg)
    neg = neg if sep_neg else None
    extra, w = (extra, torch.tensor([0.6, 1.7], dtype=torch.float64)) if cfg else (None, 1.0)
    want = literal_field(x, pos, neg, extra, w, TAUS, norm, 0.0)
    for impl, kw in CPU_IMPLS:
        got = drift_field(x, pos, neg, extra_neg=extra, extra_weight=w, kernel_norm=norm, impl=impl, **kw)
        assert got.dtype == torch.float64 and got.shape == x.shape
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7, msg=f"impl={impl}")


def test_float32_and_auto_match_reference():
    x, pos, neg, extra = (t.float() for t in _data(5, L=3, N=40, P=30, M=20, U=10, C=17))
    ref = drift_field(x.double(), pos.double(), None, extra_neg=extra.double(), extra_weight=0.5,
                      impl="reference")
    for impl in ("torch", "lean", "auto"):
        got = drift_field(x, pos, None, extra_neg=extra, extra_weight=0.5, impl=impl)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-4)
    # bf16 input is computed in fp32
    assert drift_field(x.bfloat16(), pos.bfloat16()).dtype == torch.float32


@pytest.mark.parametrize("impl", ["reference", "torch", "lean"])
def test_swap_pos_neg_negates(impl):
    x, pos, neg, _ = _data(7, N=9, P=8, M=8, C=4)
    a = drift_field(x, pos, neg, impl=impl)
    b = drift_field(x, neg, pos, impl=impl)
    torch.testing.assert_close(a, -b, rtol=1e-9, atol=1e-9)


def test_zero_when_neg_equals_pos():
    x, pos, _, _ = _data(8, N=9, P=8, C=4)
    for impl, kw in CPU_IMPLS:
        # the raw field (a huge eps turns the RMS normalisation into a fixed factor 1e-150) is rounding noise;
        # normalised, noise would get unit RMS like any nonzero field (issue #19: no magnitude threshold)
        raw = drift_field(x, pos, pos.clone(), impl=impl, eps=1e300, **kw) * 1e150
        assert raw.abs().max() < 1e-12


def test_point_mass_moves_toward_data():
    C = 4
    pos = torch.randn(2, 16, C, dtype=torch.float64) * 0.5 + torch.tensor([3.0, -1.0, 2.0, 0.5])
    x = torch.zeros(2, 8, C, dtype=torch.float64) + torch.tensor([-1.0, 0.0, 0.0, 0.0])
    for norm in ("both", "y", "none"):
        for impl, kw in CPU_IMPLS:
            V = drift_field(x, pos, None, kernel_norm=norm, impl=impl, **kw)  # self-negatives
            toward = pos.mean(1, keepdim=True) - x  # [L, N, C]
            assert ((V * toward).sum(-1) > 0).all(), (norm, impl)


def literal_scale(x, cols, self_neg, wcols, shared=False):
    """S by loops: weighted mean of ||x_i - y_j|| over real pairs (not i == j among self-negatives) / sqrt(C).
    cols [L, K, C]; self_neg: (start, stop) of the columns that are x itself; wcols [L, K] pair weights."""
    L, N, C = x.shape
    tot, cnt = [0.0] * L, [0.0] * L
    for g in range(L):
        for i in range(N):
            for j in range(cols.shape[1]):
                if self_neg is not None and j - self_neg[0] == i:
                    continue
                tot[g] += float(wcols[g, j]) * float((x[g, i] - cols[g, j]).norm())
                cnt[g] += float(wcols[g, j])
    if shared:
        tot, cnt = [sum(tot)] * L, [sum(cnt)] * L
    return torch.tensor([t / c / math.sqrt(C) for t, c in zip(tot, cnt)], dtype=torch.float64)


def test_feature_scale():
    x, pos, neg, extra = _data(9, L=3, N=11, P=13, M=5, U=4, C=6, scale=4.0)
    S = feature_scale(x, [pos, neg])
    assert S.shape == (3,)
    Y = torch.cat([pos, neg], 1)
    mean_d = torch.cdist(x / S[:, None, None], Y / S[:, None, None]).mean((1, 2))
    torch.testing.assert_close(mean_d, torch.full((3,), math.sqrt(6.0), dtype=torch.float64))
    # streaming over small blocks gives the same
    torch.testing.assert_close(feature_scale(x, [pos, neg], block_entries=7), S)


@pytest.mark.parametrize("shared", [False, True])
def test_feature_scale_excludes_self_pairs_and_weights_extra(shared):
    x, pos, _, extra = _data(11, L=3, N=9, P=7, U=4, C=5, scale=3.0)
    w = torch.tensor([0.0, 0.5, 2.5], dtype=torch.float64)
    cols = torch.cat([pos, x, extra], 1)
    ones = torch.ones(3, cols.shape[1], dtype=torch.float64)
    wcols = ones.clone()
    wcols[:, 16:] = w[:, None]
    for weights, wc in ((None, ones), ([None, None, w], wcols)):
        want = literal_scale(x, cols, (7, 16), wc, shared)
        got = feature_scale(x, [pos, x, extra], weights=weights, shared=shared, block_entries=20)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    # the old count (N self pairs of distance 0 among N*K) gives a smaller S
    old = feature_scale(x, [pos, x, extra], count_self_pairs=True)
    torch.testing.assert_close(old, literal_scale(x, cols, (7, 16), ones) * (9 * 19) / (9 * 20), rtol=1e-10, atol=0)
    # a copy of x is not x: its zero-distance pairs count like any others
    torch.testing.assert_close(feature_scale(x, [pos, x.clone(), extra]), old, rtol=1e-10, atol=0)


def test_tiny_field_is_still_unit_rms():
    """Issue #19: a temperature whose raw field is tiny (negatives almost equal to the positives) gets unit
    RMS like any other, in float64 against the literal loops and in float32."""
    x, pos, _, _ = _data(12, L=2, N=7, P=6, C=4)
    g = torch.Generator().manual_seed(0)
    neg = pos + 1e-7 * torch.randn(pos.shape, generator=g, dtype=torch.float64)
    raw = literal_field(x, pos, neg, None, 1.0, (0.05,), "both", 1e300)  # eps huge: the raw field * 1e-150
    assert 0 < raw.pow(2).mean().sqrt() * 1e150 < 1e-5  # the raw field's RMS is tiny
    want = literal_field(x, pos, neg, None, 1.0, TAUS, "both", 0.0)
    for impl, kw in CPU_IMPLS:
        got = drift_field(x, pos, neg, impl=impl, **kw)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=impl)
        for tau in TAUS:
            one = drift_field(x.float(), pos.float(), neg.float(), temperatures=(tau,), impl=impl, **kw)
            rms = one.double().pow(2).mean((1, 2)).sqrt()  # per group
            torch.testing.assert_close(rms, torch.ones(2, dtype=torch.float64), rtol=1e-5, atol=0)
    # the old eps 1e-8 damps it to almost nothing
    assert drift_field(x, pos, neg, temperatures=(0.05,), eps=1e-8).pow(2).mean() < 1e-2
    # an exactly zero field stays zero (no 0/0)
    assert drift_field(x, pos, pos.clone(), impl="torch").abs().max() == 0


def test_shared_norm_matches_literal():
    x, pos, neg, _ = _data(13, L=3, N=6, P=5, M=4, C=3)
    per_tau = [literal_field(x, pos, neg, None, 1.0, (t,), "y", 1e300) * 1e150 for t in TAUS]  # raw fields
    want = sum(v / v.pow(2).mean().sqrt() for v in per_tau)  # one RMS over all groups per tau
    for impl, kw in CPU_IMPLS:
        got = drift_field(x, pos, neg, kernel_norm="y", shared_norm=True, impl=impl, **kw)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7, msg=impl)
    with pytest.raises(ValueError, match="none"):
        drift_field(x, pos, neg, kernel_norm="none", shared_norm=True)


def test_field_and_loss_ignore_autocast():
    """Issue #19: under the trainer's bf16 autocast the field's GEMMs must still be fp32."""
    x, pos, _, extra = (t.float() for t in _data(14, L=2, N=40, P=30, U=10, C=24))
    ref = drift_field(x.double(), pos.double(), None, extra_neg=extra.double(), extra_weight=0.7, impl="reference")
    for impl, kw in CPU_IMPLS:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = drift_field(x, pos, None, extra_neg=extra, extra_weight=0.7, impl=impl, **kw)
            old = drift_field(x, pos, None, extra_neg=extra, extra_weight=0.7, impl=impl, allow_autocast=True, **kw)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-4, msg=impl)
        if impl != "reference":  # the matmul paths really do drop to bf16 when autocast is left on
            assert (old.double() - ref).abs().max() > 1e-3, impl
    xg = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = drift_loss(xg, pos, extra_neg=extra, extra_weight=0.7, impl="lean")
    loss.backward()
    xd = x.double()
    S = feature_scale(xd, [pos.double(), xd, extra.double()])
    V = drift_field(xd / S[:, None, None], pos.double() / S[:, None, None],
                    extra_neg=extra.double() / S[:, None, None], extra_weight=0.7, impl="reference")
    torch.testing.assert_close(loss.double(), V.pow(2).mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xg.grad.double(), -2 * V / (S[:, None, None] * V.numel()), rtol=1e-4, atol=1e-9)


def test_drift_loss_value_and_grad():
    x0, pos, _, extra = _data(10, N=8, P=7, U=3, C=5, scale=3.0)
    x = x0.clone().requires_grad_(True)
    loss, stats = drift_loss(x, pos, extra_neg=extra, extra_weight=0.4)
    loss.backward()
    S = feature_scale(x0, [pos, x0, extra])
    V = drift_field(x0 / S[:, None, None], pos / S[:, None, None], extra_neg=extra / S[:, None, None],
                    extra_weight=0.4)
    torch.testing.assert_close(loss.detach(), V.pow(2).mean())
    # d/dx mean((x/S - sg(x/S + V))^2) = -2 V / (S * numel)
    torch.testing.assert_close(x.grad, -2 * V / (S[:, None, None] * V.numel()))
    assert set(stats) >= {"v_abs", "v_rms", "scale"}


N_MODES = 6


def _toy_run(sign=1.0, steps=400, seed=0):
    """Train a tiny 2-D MLP generator with the drift loss on 6 Gaussians; return samples, modes."""
    torch.manual_seed(seed)
    modes = torch.stack([torch.tensor([math.cos(a), math.sin(a)]) * 2.0
                         for a in torch.arange(N_MODES) * (2 * math.pi / N_MODES)])  # [6, 2]
    net = torch.nn.Sequential(torch.nn.Linear(2, 128), torch.nn.SiLU(), torch.nn.Linear(128, 128),
                              torch.nn.SiLU(), torch.nn.Linear(128, 128), torch.nn.SiLU(),
                              torch.nn.Linear(128, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    # the normalised field never shrinks, so a decaying lr is what lets samples settle on the modes
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    for _ in range(steps):
        real = modes[torch.randint(0, N_MODES, (128,))] + 0.05 * torch.randn(128, 2)
        x = net(torch.randn(128, 2))[None]  # [1, 128, 2]: L=1, features = raw points
        if sign > 0:
            loss, _ = drift_loss(x, real[None], impl="torch")
        else:  # the same loss with the field's sign flipped
            S = feature_scale(x, [real[None], x])[:, None, None]
            V = drift_field((x / S).detach(), real[None] / S, impl="torch")
            loss = (x / S - (x / S - V).detach()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return net(torch.randn(4000, 2)), modes


def _mode_stats(samples, modes):
    d = torch.cdist(samples, modes)  # [S, modes]
    near = d.min(1).values < 0.3  # mode std is 0.05, neighbouring modes are 2.0 apart
    frac = torch.bincount(d.argmin(1)[near], minlength=len(modes)).float() / len(samples)
    return near.float().mean().item(), frac


@pytest.fixture
def one_thread():
    # tiny ops: thread hand-offs cost more than they save, badly so on a busy machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_toy_2d_covers_all_modes(one_thread):
    samples, modes = _toy_run()
    near, frac = _mode_stats(samples, modes)
    assert near > 0.55, near  # ~0.75 with this seed
    assert (frac > 0.08).all(), frac  # fair share 1/6; ~0.1 each with this seed


def test_toy_2d_fails_with_flipped_field(one_thread):
    samples, modes = _toy_run(sign=-1.0, steps=100)
    near, _ = _mode_stats(samples, modes)
    assert near < 0.2, near


def test_triton_interpreter_matches_reference():
    """Runs the triton kernels through TRITON_INTERPRET=1 on CPU (skipped without triton; on a GPU
    machine tests/test_field_gpu.py runs them for real)."""
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("covered by tests/test_field_gpu.py")
    code = r"""
import torch
from driftin.drift.field import drift_field
g = torch.Generator().manual_seed(0)
# 2 row tiles, 2 column tiles of pos, C not a power of two spanning 2 chunks of the distance dot
x, pos, neg, ex = (torch.randn(2, n, 40, generator=g) for n in (70, 40, 18, 9))
# 5 temperatures: one launch of 4 plus one of 1 ("y" shares the "none" code path)
for norm, ng, e, taus in (("both", None, ex, (0.02, 0.05, 0.1, 0.2, 0.5)), ("none", neg, ex, (0.02, 0.2))):
    kw = dict(extra_neg=e, extra_weight=torch.tensor([0.5, 2.0]), kernel_norm=norm, temperatures=taus)
    ref = drift_field(x.double(), pos.double(), ng if ng is None else ng.double(), impl="reference",
                      **{**kw, "extra_neg": None if e is None else e.double()})
    got = drift_field(x, pos, ng, impl="triton", **kw)
    err = ((got.double() - ref).abs().max() / ref.abs().max()).item()
    assert err < 1e-5, (norm, err)
print("ok")
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_bench_quick(tmp_path, one_thread):
    from driftin.bench.kernel import main
    path = tmp_path / "k.json"
    main(["--quick", "--out", str(path)])
    data = json.loads(path.read_text())
    assert {"device", "torch", "rows"} <= set(data)
    impls = {r["impl"] for r in data["rows"]}
    assert {"reference", "torch", "lean"} <= impls
    for r in data["rows"]:
        assert {"impl", "L", "N", "M", "C", "T", "status", "ms", "peak_mb", "max_abs_diff"} <= set(r)
        if r["status"] == "ok":
            assert r["ms"] > 0
            if r["max_abs_diff"] is not None:
                assert r["max_abs_diff"] < 1e-3
    main(["--quick", "--cases", "2x8x4", "--impls", "reference,lean", "--out", str(path)])
    rows = json.loads(path.read_text())["rows"]
    assert [(r["impl"], r["L"], r["N"], r["C"]) for r in rows] == [("reference", 2, 8, 4), ("lean", 2, 8, 4)]


def test_tf32_split_is_exact_and_precision_is_checked():
    from driftin.drift.field import _mm, _split_tf32
    t = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 100
    hi, lo = _split_tf32(t)
    assert torch.equal(hi + lo, t)  # exact: hi keeps the top 10 mantissa bits, lo the rest
    assert (hi.view(torch.int32) & 8191).eq(0).all()  # hi is representable in TF32
    assert (lo.abs() <= hi.abs() * 2.0 ** -10).all()
    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    bias = torch.randn(2, 1, 5)
    torch.testing.assert_close(_mm(a, b, "tf32x3", bias=bias, alpha=-2.0), bias - 2 * a @ b)
    with pytest.raises(ValueError, match="precision"):
        _mm(a, b, "fp8")
    with pytest.raises(ValueError, match="alpha"):
        _mm(a, b, "ieee", alpha=2.0)


def test_blocked_path_many_temperatures_blocks_and_budget():
    """Block sizes that do not divide N, more temperatures than one Triton launch holds, and the automatic
    block from the memory budget all give the reference."""
    from driftin.drift.field import _auto_block
    g = torch.Generator().manual_seed(3)
    x, pos = torch.randn(2, 23, 6, generator=g, dtype=torch.float64), torch.randn(2, 17, 6, generator=g, dtype=torch.float64)
    taus = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    ref = drift_field(x, pos, temperatures=taus, impl="reference")
    for block in (1, 5, 23, None):
        torch.testing.assert_close(drift_field(x, pos, temperatures=taus, impl="lean", block=block), ref,
                                   rtol=1e-9, atol=1e-9)
    assert _auto_block(1, 8192, 3) == 8192  # N=4096 self-negatives: one block, G computed once
    assert _auto_block(8, 8192, 3) == 1024 and _auto_block(1, 1 << 40, 3) == 1


def test_drift_config_checks_its_options_and_the_objective_passes_them():
    from driftin.config import preset
    from driftin.drift.objective import DriftConfig, DriftLoss
    from driftin.train import StepRandom
    from driftin.unet import UNet
    with pytest.raises(ValueError, match="precision"):
        DriftConfig(precision="fp8")
    with pytest.raises(ValueError, match="kernel_norm"):
        DriftConfig(kernel_norm="rows")
    obj = DriftLoss(DriftConfig(encoder="pixels", impl="lean", precision="tf32", kernel_norm="y"), "cpu")
    seen = []

    def spy(*a, **kw):
        seen.append(kw)
        return drift_loss(*a, **kw)
    obj.field_loss = spy
    torch.manual_seed(0)
    net = UNet(preset("tiny"))
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    loss, logs = obj(net, {"x": real, "y": None, "rng": StepRandom(0, 0, "cpu")})
    assert seen and all(kw["impl"] == "lean" and kw["precision"] == "tf32" and kw["kernel_norm"] == "y" for kw in seen)
    assert torch.isfinite(loss) and logs["loss"].item() == pytest.approx(loss.detach().item())


@pytest.mark.parametrize("impl", ["torch", "lean"])
def test_field_loss_traces_as_one_graph(impl):
    """compile_field compiles drift_loss per feature map: a graph break would split it back into small eager kernels
    (dynamo's explain traces without generating code)."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 16, 32, generator=g, requires_grad=True)
    pos, unc, w = torch.randn(6, 16, 32, generator=g), torch.randn(6, 4, 32, generator=g), torch.rand(6, generator=g)
    ex = torch._dynamo.explain(drift_loss)(x, pos, extra_neg=unc, extra_weight=w, impl=impl, shared_norm=True,
                                           scale_extra_weighted=True)
    assert (ex.graph_count, ex.graph_break_count) == (1, 0), [b.reason for b in ex.break_reasons]
