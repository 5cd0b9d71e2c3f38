import json
import numpy as np
import pytest
import torch

from driftin.classifier import EvalNet, save_classifier
from driftin.eval import calibrate, features
from driftin.eval.fd import fd_from_features, feature_stats, frechet_distance
from driftin.eval.metrics import compute_metrics, is_analogue, precision_recall


def _fd_reference(mu1, s1, mu2, s2):
    """Slow oracle: tr((S1 S2)^1/2) from the eigenvalues of the non-symmetric product S1 S2 (real, >= 0)."""
    ev = np.linalg.eigvals(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev.real, 0, None)).sum())


def _random_cov(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return EvalNet(widths=(8, 16, 32)).eval().requires_grad_(False)


@pytest.fixture
def u8():
    return torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_fd_self_is_zero():
    f = np.random.default_rng(0).normal(size=(500, 32))
    assert abs(fd_from_features(f, f)) < 1e-8
    low_rank = f[:20]  # N < D: singular covariance, no NaN and still ~0
    assert abs(fd_from_features(low_rank, low_rank)) < 1e-8


def test_fd_matches_reference():
    rng = np.random.default_rng(1)
    for d, rank in [(16, None), (64, None), (32, 8)]:  # the last pair is singular
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = _random_cov(rng, d, rank), _random_cov(rng, d, rank)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_fd_reference(mu1, s1, mu2, s2), rel=1e-6, abs=1e-8)
    # commuting (diagonal) covariances have the closed form |dmu|^2 + sum (sqrt a - sqrt b)^2
    a, b = rng.uniform(0, 2, 10), rng.uniform(0, 2, 10)
    mu = rng.normal(size=10)
    exact = (mu ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu, np.diag(a), np.zeros(10), np.diag(b)) == pytest.approx(exact, rel=1e-10)


def test_fd_grows_with_noise(tiny_net, u8):
    """In feature space and through the evaluation net on images."""
    rng = np.random.default_rng(2)
    ref, base = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
    fds = [fd_from_features(ref, base + s * rng.normal(size=base.shape)) for s in (0.0, 0.2, 0.5, 1.0)]
    assert all(a < b for a, b in zip(fds, fds[1:]))
    extract = features.EvalFeatures(tiny_net)
    mu, sigma = feature_stats(extract(u8)[0])
    img_fds = [frechet_distance(*feature_stats(extract(calibrate.add_noise(u8, s))[0]), mu, sigma) for s in (0.0, 0.1, 0.3)]
    assert img_fds[0] < 1e-9 and img_fds[0] < img_fds[1] < img_fds[2]


def test_precision_recall_sanity():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(400, 8))
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    half = np.concatenate([real[:200], real[:200] + 100.0])  # half on the manifold, half far away
    p, r = precision_recall(real, half)
    assert p == pytest.approx(0.5, abs=0.01) and r > 0.3
    mode = real[np.argsort(((real - real[0]) ** 2).sum(1))[:50]]  # one tight mode: precise, low recall
    p, r = precision_recall(real, mode)
    assert p == 1.0 and r < 0.4


def test_is_analogue_bounds():
    onehot = np.eye(10)[np.arange(1000) % 10]
    assert is_analogue(onehot) == pytest.approx(10.0)
    assert is_analogue(np.tile(onehot[:1], (1000, 1))) == pytest.approx(1.0)
    assert is_analogue(np.full((100, 10), 0.1)) == pytest.approx(1.0)
    assert is_analogue(onehot, splits=10) == pytest.approx(10.0)


def test_reference_cache_roundtrip_and_staleness(tiny_net, u8, tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTIN_CACHE", str(tmp_path))
    ref = features.reference_stats(tiny_net, "train", images=u8, name="t", pr_n=100, progress=False)
    assert (tmp_path / f"evalref-{ref['key']}.npz").exists()

    calls = []
    real_call = features.EvalFeatures.__call__
    monkeypatch.setattr(features.EvalFeatures, "__call__", lambda self, x: calls.append(1) or real_call(self, x))
    again = features.reference_stats(tiny_net, "train", images=u8, name="t", pr_n=100, progress=False)
    assert not calls, "a fresh cache must be read, not recomputed"
    for k in ("mu", "sigma", "pr_feats"):
        np.testing.assert_array_equal(again[k], ref[k])
    assert again["is_analogue"] == ref["is_analogue"] and again["key"] == ref["key"]

    other = EvalNet(widths=(8, 16, 32)).eval()  # other weights -> other key, recomputed
    fresh = features.reference_stats(other, "train", images=u8, name="t", pr_n=100, progress=False)
    assert fresh["key"] != ref["key"] and calls
    assert not np.allclose(fresh["mu"], ref["mu"])
    # other images (same count) -> other key too
    assert features.reference_stats(tiny_net, "train", images=u8.flip(0), name="t", pr_n=100, progress=False)["key"] != ref["key"]
    # a file whose stored key differs from its name (renamed, foreign) is not trusted
    path = tmp_path / f"evalref-{ref['key']}.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(path, **{**arrays, "key": np.array("something-else")})
    assert features.load_cached("evalref", ref["key"]) is None


def test_cached_reference_computes_once_then_reads(tmp_path, monkeypatch):
    """The shared cache step: a miss computes and saves <prefix>-<key>.npz, a hit reads it without computing (scalars
    back as Python numbers, as computed); cache=False always computes and writes nothing."""
    monkeypatch.setenv("DRIFTIN_CACHE", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"mu": np.arange(3.0), "n": 7}

    first = features.cached_reference("someref", "k1", compute)
    again = features.cached_reference("someref", "k1", compute)
    assert len(calls) == 1 and [p.name for p in tmp_path.iterdir()] == ["someref-k1.npz"]
    np.testing.assert_array_equal(again["mu"], first["mu"])
    assert again["n"] == 7 and type(again["n"]) is int and again["key"] == first["key"] == "k1"
    assert again["path"] == first["path"] == str(tmp_path / "someref-k1.npz")
    uncached = features.cached_reference("someref", "k2", compute, cache=False)
    assert len(calls) == 2 and uncached["key"] == "k2" and "path" not in uncached
    assert [p.name for p in tmp_path.iterdir()] == ["someref-k1.npz"]


def test_eval_context_loads_and_hashes_the_split_once(tiny_net, u8, tmp_path, monkeypatch):
    """Evalnet and Inception reference statistics of one split: the split is loaded and hashed once, and the keys
    are those of context-free calls (which load it themselves)."""
    from driftin.eval.__main__ import EvalContext
    from driftin.eval.inception import InceptionFeatures, inception_reference_stats

    class FakeInception(InceptionFeatures):  # the real network is not needed to count loads
        name = "fake-inception"

        def __init__(self):
            pass

        def __call__(self, images):
            return images.flatten(1)[:, :16].float().numpy()

    monkeypatch.setenv("DRIFTIN_CACHE", str(tmp_path))
    loads, hashes = [], []
    monkeypatch.setattr(features, "load_cifar10_tar", lambda split: loads.append(split) or (u8, torch.zeros(len(u8), dtype=torch.long)))
    real_hash = features.tensor_hash
    monkeypatch.setattr(features, "tensor_hash", lambda x: hashes.append(1) or real_hash(x))
    ctx, inception = EvalContext(), FakeInception()
    ref, inc_ref = ctx.reference(tiny_net, "train"), ctx.reference(inception, "train")
    assert loads == ["train"] and len(hashes) == 1
    assert ctx.reference(tiny_net, "train") is ref and loads == ["train"]
    assert ref["key"] == features.reference_stats(tiny_net, "train", progress=False)["key"]
    assert inc_ref["key"] == inception_reference_stats(inception, "train")["key"]
    assert (tmp_path / f"evalref-{ref['key']}.npz").exists() and (tmp_path / f"inceptionref-{inc_ref['key']}.npz").exists()


def test_compute_metrics_real_vs_real(tiny_net, u8, tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTIN_CACHE", str(tmp_path))
    ref = features.reference_stats(tiny_net, "train", images=u8, name="t", pr_n=300, progress=False)
    feats, probs = features.EvalFeatures(tiny_net)(u8)
    m = compute_metrics(feats, probs, ref, labels=probs.argmax(1), pr_n=300)
    assert abs(m["fd"]) < 1e-9 and m["precision"] == 1.0 and m["recall"] == 1.0 and m["class_acc"] == 1.0
    assert m["is_analogue"] == pytest.approx(ref["is_analogue"])


def _patch_reference_data(monkeypatch, tmp_path, u8):
    monkeypatch.setenv("DRIFTIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(features, "load_cifar10_tar", lambda split: (u8, torch.zeros(len(u8), dtype=torch.long)))


def test_cli_images(tiny_net, u8, tmp_path, monkeypatch, image_folder):
    from driftin.eval.__main__ import main

    _patch_reference_data(monkeypatch, tmp_path, u8)
    save_classifier(tiny_net, tmp_path / "ev")
    out = tmp_path / "eval.json"
    entry = main(["--images", image_folder, "--evalnet", str(tmp_path / "ev"), "--out", str(out), "--pr-n", "50", "--device", "cpu",
                  "--inception", "none"])
    assert entry["n"] == 8 and entry["method"] == "images" and entry["fd"] > 0
    data = json.loads(out.read_text())
    assert list(data) == ["images_n8"] and data["images_n8"]["git_commit"]


def test_cli_generator(tiny_net, u8, tmp_path, monkeypatch):
    """Generation path through the real generate(): a tiny untrained UNet, DDIM with 2 steps."""
    from driftin.config import preset
    from driftin.eval.__main__ import main
    from driftin.hub import save_pretrained
    from driftin.unet import UNet

    _patch_reference_data(monkeypatch, tmp_path, u8)
    save_classifier(tiny_net, tmp_path / "ev")
    torch.manual_seed(0)
    save_pretrained(UNet(preset("tiny")), tmp_path / "gen", meta={"objective": "ddpm"})
    args = ["--weights", str(tmp_path / "gen"), "--evalnet", str(tmp_path / "ev"), "--n", "6", "--batch", "4",
            "--steps", "2", "--pr-n", "6", "--device", "cpu", "--inception", "none"]
    entry = main(args)
    assert entry["method"] == "ddim" and entry["steps"] == 2 and entry["classes"] == "none" and entry["n"] == 6
    main(args + ["--steps", "1"])  # a second entry is merged, not overwritten
    quad = main(args + ["--spacing", "quadratic"])  # its own entry, named after the spacing (uniform keys unchanged)
    data = json.loads((tmp_path / "gen" / "eval.json").read_text())
    assert set(data) == {"ddim_steps2_g1_uncond_n6", "ddim_steps1_g1_uncond_n6", "ddim_steps2_g1_uncond_quadratic_n6"}
    assert quad["spacing"] == "quadratic" and data["ddim_steps2_g1_uncond_n6"]["spacing"] == "uniform"
    assert quad["fd"] != entry["fd"]  # other timesteps, other samples
    from driftin.eval.__main__ import entry_key
    info = {"method": "ddim", "steps": 50, "guidance": 2.5, "classes": "uniform", "spacing": "uniform"}
    assert entry_key({**info, "guidance_interval": [80, 580]}, 10_000) == "ddim_steps50_g2.5_i80-580_n10000"
    assert entry_key(info, 50_000) == "ddim_steps50_g2.5"  # keys without an interval stay as they were
    with pytest.raises(SystemExit):  # a bad interval stops before any network or statistics load
        main(args + ["--guidance", "2", "--guidance-interval", "580", "80"])
    # an unconditional model has no guidance to limit: the interval is dropped, not recorded under its own key
    assert "guidance_interval" not in main(args + ["--guidance-interval", "80", "580"])


def test_write_json_is_atomic_and_formatted(tmp_path):
    """The one JSON writer (eval results, curves, the training bench): indent 2, a trailing newline, written
    through a temporary file renamed into place, so nothing else is left in the folder."""
    from driftin.eval import write_json

    data = {"rows": [{"ms": 1.5, "status": "ok", "x": None}], "meta": {"name": "é"}}
    out = tmp_path / "sub" / "r.json"
    write_json(out, data)
    write_json(out, {**data, "more": 1})
    assert out.read_text() == json.dumps({**data, "more": 1}, indent=2) + "\n"
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]


def test_write_atomic(tmp_path):
    """The markdown of `python -m driftin.bench train --md` (text) and the compile artifacts (bytes) go through the
    same temporary-file-and-rename writer."""
    from driftin.checkpoint import write_atomic

    out = tmp_path / "sub" / "t.md"
    write_atomic(out, "| a |\n")
    write_atomic(out, "| b |\n")
    assert out.read_text() == "| b |\n" and [p.name for p in out.parent.iterdir()] == ["t.md"]
    write_atomic(out, b"\x00\xff")
    assert out.read_bytes() == b"\x00\xff" and [p.name for p in out.parent.iterdir()] == ["t.md"]
