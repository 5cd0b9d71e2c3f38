"""Multi-resolution feature groups (drift/features.py) against a slow loop reference, and the frozen
encoders (drift/encoders.py): the project's CIFAR encoder and timm backbones, offline only."""
import functools

import pytest
import timm
import torch
import torch.nn.functional as F

from driftin.drift.encoders import build_encoder
from driftin.drift.features import feature_groups, map_groups, pixel_map


def windows(n: int, g: int) -> list[tuple[int, int]]:
    """Adaptive pooling's g windows over n cells: [floor(i*n/g), ceil((i+1)*n/g)) (overlap when g does not divide n)."""
    return [(i * n // g, -(-(i + 1) * n // g)) for i in range(g)]


def reference_groups(fmap: torch.Tensor, max_locations: int = 8, grids=(2, 4)) -> dict[str, torch.Tensor]:
    """Named groups, one [B, C] vector per patch, by explicit loops in float64."""
    fmap = fmap.double()
    b, c, h, w = fmap.shape

    def patches(g):  # row-major over the g x g grid
        return [fmap[:, :, r0:r1, c0:c1].flatten(2) for r0, r1 in windows(h, g) for c0, c1 in windows(w, g)]

    def std(p):
        return (p.var(2, unbiased=False) + 1e-6).sqrt()

    out = {"loc": torch.stack([p.mean(2) for p in patches(min(h, max_locations))], 1),
           "mean": fmap.flatten(2).mean(2)[:, None], "std": std(fmap.flatten(2))[:, None]}
    for g in grids:
        if g < h:
            out[f"mean{g}"] = torch.stack([p.mean(2) for p in patches(g)], 1)
            out[f"std{g}"] = torch.stack([std(p) for p in patches(g)], 1)
    return out


def split(groups: torch.Tensor, sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """Cut map_groups' [B, L, C] into named groups in their documented order."""
    assert groups.shape[1] == sum(sizes.values())
    return dict(zip(sizes, groups.split(list(sizes.values()), dim=1)))


# map side -> expected groups and their sizes: locations pooled to <= 8x8, grids only where smaller than the map
LAYOUTS = {
    1: {"loc": 1, "mean": 1, "std": 1},
    2: {"loc": 4, "mean": 1, "std": 1},
    4: {"loc": 16, "mean": 1, "std": 1, "mean2": 4, "std2": 4},
    7: {"loc": 49, "mean": 1, "std": 1, "mean2": 4, "std2": 4, "mean4": 16, "std4": 16},
    8: {"loc": 64, "mean": 1, "std": 1, "mean2": 4, "std2": 4, "mean4": 16, "std4": 16},
    14: {"loc": 64, "mean": 1, "std": 1, "mean2": 4, "std2": 4, "mean4": 16, "std4": 16},
    16: {"loc": 64, "mean": 1, "std": 1, "mean2": 4, "std2": 4, "mean4": 16, "std4": 16},
    32: {"loc": 64, "mean": 1, "std": 1, "mean2": 4, "std2": 4, "mean4": 16, "std4": 16},
}


@pytest.mark.parametrize("side", sorted(LAYOUTS))
def test_map_groups_match_loop_reference(side):
    fmap = torch.randn(2, 5, side, side, generator=torch.Generator().manual_seed(side)) * 2 + 0.5
    got = map_groups(fmap)
    assert got.shape == (2, sum(LAYOUTS[side].values()), 5) and got.dtype == torch.float32
    ref = reference_groups(fmap)
    assert list(ref) == list(LAYOUTS[side])
    for name, part in split(got, LAYOUTS[side]).items():
        torch.testing.assert_close(part.double(), ref[name], atol=2e-5, rtol=1e-5, msg=name)


def test_divisible_maps_are_plain_average_pools():
    fmap = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    g = split(map_groups(fmap), LAYOUTS[16])

    def as_rows(m):  # [B, C, g, g] -> [B, g*g, C]
        return m.flatten(2).transpose(1, 2)

    torch.testing.assert_close(g["loc"], as_rows(F.avg_pool2d(fmap, 2)))
    torch.testing.assert_close(g["mean2"], as_rows(F.avg_pool2d(fmap, 8)))
    torch.testing.assert_close(g["mean4"], as_rows(F.avg_pool2d(fmap, 4)))
    torch.testing.assert_close(g["mean"][:, 0], fmap.mean((2, 3)))
    torch.testing.assert_close(g["std"][:, 0], fmap.flatten(2).std(2, unbiased=False), atol=1e-5, rtol=1e-5)
    sq = as_rows(F.avg_pool2d(fmap.square(), 4)) - g["mean4"].square()
    torch.testing.assert_close(g["std4"], (sq + 1e-6).sqrt(), atol=1e-5, rtol=1e-5)


def test_max_locations_and_low_precision_input():
    fmap = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    g = map_groups(fmap, max_locations=4)
    assert g.shape == (2, 16 + 2 + 8 + 32, 3)
    torch.testing.assert_close(g[:, :16], F.avg_pool2d(fmap, 2).flatten(2).transpose(1, 2))
    # bf16 encoder maps (autocast) are promoted: the field always sees float32
    assert map_groups(fmap.bfloat16()).dtype == torch.float32


def test_pixel_map_is_4x4_patch_vectors():
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    pm = pixel_map(x)
    assert pm.shape == (2, 48, 8, 8)
    for c, i, j, yy, xx in [(0, 0, 0, 0, 0), (1, 2, 3, 5, 7), (2, 3, 1, 7, 2), (0, 1, 2, 3, 4)]:
        # channel c*16 + i*4 + j of patch (yy, xx) is pixel (4*yy + i, 4*xx + j) of colour c
        assert torch.equal(pm[:, c * 16 + i * 4 + j, yy, xx], x[:, c, 4 * yy + i, 4 * xx + j])


def test_feature_groups_one_per_map_plus_pixels():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    maps = [torch.randn(2, 6, 16, 16, generator=gen), torch.randn(2, 10, 4, 4, generator=gen)]
    groups = feature_groups(maps, x)
    assert [tuple(g.shape) for g in groups] == [(2, 106, 6), (2, 26, 10), (2, 106, 48)]
    assert torch.equal(groups[0], map_groups(maps[0])) and torch.equal(groups[2], map_groups(pixel_map(x)))
    assert len(feature_groups(maps, None)) == 2 and feature_groups([], x)[0].shape == (2, 106, 48)
    assert feature_groups(maps, x, max_locations=2)[0].shape == (2, 4 + 2 + 8 + 32, 6)


def test_gradient_reaches_the_input_and_matches_the_reference():
    gen = torch.Generator().manual_seed(4)
    x0 = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)  # a stand-in encoder: [B, 4, 16, 16]
    weights = [torch.randn(2, 106, 4, generator=gen), torch.randn(2, 106, 48, generator=gen)]

    x = x0.clone().requires_grad_(True)
    groups = feature_groups([conv(x)], x)
    sum((g * w).sum() for g, w in zip(groups, weights)).backward()

    xr = x0.double().requires_grad_(True)
    ref = [reference_groups(conv.double()(xr)), reference_groups(pixel_map(xr))]
    ref = [torch.cat(list(r.values()), 1) for r in ref]
    sum((g * w.double()).sum() for g, w in zip(ref, weights)).backward()
    assert x.grad.abs().sum() > 0
    torch.testing.assert_close(x.grad.double(), xr.grad, atol=1e-4, rtol=1e-3)


def test_constant_map_has_finite_std_and_gradient():
    fmap = torch.full((1, 2, 8, 8), 0.7, requires_grad=True)
    g = map_groups(fmap)
    stds = split(g, LAYOUTS[8])
    for name in ("std", "std2", "std4"):
        torch.testing.assert_close(stds[name], torch.full_like(stds[name], 1e-3), atol=1e-4, rtol=0)  # sqrt(eps)
    g.sum().backward()
    assert torch.isfinite(fmap.grad).all()


# ---- encoders ----

def test_build_encoder_names():
    assert build_encoder("pixels") is None
    with pytest.raises(ValueError, match="unknown encoder 'vgg'"):
        build_encoder("vgg")
    with pytest.raises(FileNotFoundError, match="classifier train --arch encoder"):
        build_encoder("cifar", "/nonexistent/encoder-cifar10")
    with pytest.raises(FileNotFoundError, match="'no-such-encoder'.*classifier train --arch encoder"):
        build_encoder("cifar", "no-such-encoder")  # a name, looked up among the weights folders


def test_cifar_encoder_by_name_finds_staged_weights(tmp_path, monkeypatch):
    """The drift recipe names its encoder folder (not a path), so it resolves under DRIFTIN_WEIGHTS where a GPU
    machine stages the weights, from any working directory."""
    from driftin.classifier import Encoder, save_classifier

    torch.manual_seed(0)
    save_classifier(Encoder(widths=(8, 16, 16, 32)).eval(), tmp_path / "staged" / "my-encoder")
    monkeypatch.setenv("DRIFTIN_WEIGHTS", str(tmp_path / "staged"))
    monkeypatch.chdir(tmp_path)
    enc = build_encoder("cifar", "my-encoder")
    by_path = build_encoder("cifar", str(tmp_path / "staged" / "my-encoder"))
    for a, b in zip(enc.state_dict().values(), by_path.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_cifar_encoder_is_frozen_and_passes_gradient(tmp_path):
    from driftin.classifier import Encoder, save_classifier

    torch.manual_seed(0)
    src = Encoder(widths=(8, 16, 16, 32)).eval()
    for p in src.parameters():  # zero-initialised norms would make the blocks identities
        p.data.add_(0.1 * torch.randn_like(p)).copy_(p.data.half().float())  # fp16-exact: the file stores fp16
    save_classifier(src, tmp_path / "enc")
    enc = build_encoder("cifar", str(tmp_path / "enc"))
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())

    x = (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1).requires_grad_(True)
    maps = enc(x)
    assert [tuple(m.shape) for m in maps] == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4)]
    for m, r in zip(maps, src.features(x)):
        torch.testing.assert_close(m, r)
    groups = feature_groups(maps, x)
    assert [g.shape[1:] for g in groups] == [(106, 8), (106, 16), (106, 16), (26, 32), (106, 48)]
    groups[0].sum().backward()  # the generator's gradient passes through the frozen encoder
    assert x.grad is not None and x.grad.abs().sum() > 0


def random_timm_weights(name: str, path, seed: int = 0, **kwargs):
    """A randomly initialised timm model (no download) with perturbed BatchNorm statistics, saved to path."""
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    for key, buf in model.state_dict().items():
        if key.endswith("running_mean"):
            buf.normal_(0, 0.1)
        elif key.endswith("running_var"):
            buf.uniform_(0.5, 2.0)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    return model


def resnet_stages(net, x):
    """timm resnet18's features_only maps, by hand: stem (before max-pool), then layer1..layer4."""
    mean = torch.tensor(timm.data.IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(timm.data.IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
    h = net.act1(net.bn1(net.conv1(((x + 1) / 2 - mean) / std)))
    out = [h]
    h = net.maxpool(h)
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        h = layer(h)
        out.append(h)
    return out


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_encoder_loads_a_local_weights_file(tmp_path, suffix):
    path = tmp_path / f"resnet18{suffix}"
    src = random_timm_weights("resnet18", path)
    enc = build_encoder("timm:resnet18", str(path), resize=32)
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())

    x = (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(6)) * 2 - 1).requires_grad_(True)
    maps = enc(x)
    assert [tuple(m.shape) for m in maps] == [(2, 64, 16, 16), (2, 64, 8, 8), (2, 128, 4, 4), (2, 256, 2, 2), (2, 512, 1, 1)]
    with torch.no_grad():
        for m, r in zip(maps, resnet_stages(src, x)):  # the file's weights, not a fresh random init
            torch.testing.assert_close(m, r, atol=1e-5, rtol=1e-4)
    groups = feature_groups(maps, x)
    assert [tuple(g.shape[1:]) for g in groups] == [(106, 64), (106, 64), (26, 128), (6, 256), (3, 512), (106, 48)]
    sum(g.sum() for g in groups[:-1]).backward()  # encoder groups only: the gradient goes through the backbone
    assert x.grad.abs().sum() > 0

    # the model's own input size when resize is 0 (resnet18: 224 -> stem map 112)
    assert build_encoder("timm:resnet18", str(path))(x[:1].detach())[0].shape == (1, 64, 112, 112)


def test_timm_nhwc_backbones_come_out_nchw(tmp_path, monkeypatch):
    tiny = dict(img_size=64, window_size=2, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))
    random_timm_weights("swin_tiny_patch4_window7_224", tmp_path / "swin.safetensors", **tiny)
    # a 64-pixel one-block Swin keeps this fast; the encoder builds it through timm.create_model as usual
    monkeypatch.setattr(timm, "create_model", functools.partial(timm.create_model, **tiny))
    enc = build_encoder("timm:swin_tiny_patch4_window7_224", str(tmp_path / "swin.safetensors"), resize=64)
    assert enc.nhwc
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(7)) * 2 - 1
    maps = enc(x)
    assert [tuple(m.shape) for m in maps] == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4), (2, 128, 2, 2)]
    with torch.no_grad():
        raw = enc.net((F.interpolate((x + 1) / 2, size=64, mode="bilinear") - enc.mean) / enc.std)
    assert all(torch.equal(m, r.permute(0, 3, 1, 2)) for m, r in zip(maps, raw))
    assert [g.shape[1:] for g in feature_groups(maps, None)] == [(106, 16), (106, 32), (26, 64), (6, 128)]


def test_timm_pretrained_offline_says_which_model_and_how_to_fix(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)  # read once at import: patch the constant too
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty cache: nothing to fall back on
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(RuntimeError, match=r"timm encoder 'resnet18'.*--drift-encoder-weights PATH") as err:
        build_encoder("timm:resnet18")
    assert "encoder_weights=PATH" in str(err.value) and "never used silently" in str(err.value)


def test_timm_bad_names_and_files(tmp_path):
    with pytest.raises(ValueError, match=r"unknown timm model 'resnet_18'; similar names: resnet18"):
        build_encoder("timm:resnet_18")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        build_encoder("timm:resnet18", str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="takes its weights from the Hub"):
        build_encoder("timm:hf-hub:timm/resnet18.a1_in1k", str(tmp_path / "missing.safetensors"))


def test_timm_weights_that_do_not_fit_are_rejected(tmp_path):
    """timm itself loads features_only weights non-strictly (it only logs missing keys): a wrong file
    must not give a partly random encoder."""
    from safetensors.torch import load_file, save_file

    other = tmp_path / "convnext.safetensors"
    random_timm_weights("convnext_atto", other)
    with pytest.raises(RuntimeError, match=r"convnext.safetensors do not fit timm model 'resnet18': 100 of its tensors"):
        build_encoder("timm:resnet18", str(other))

    path = tmp_path / "resnet18.safetensors"
    random_timm_weights("resnet18", path)
    sd = load_file(str(path))
    save_file({k: v for k, v in sd.items() if not k.startswith("layer4.")}, str(tmp_path / "no_layer4.safetensors"))
    n_layer4 = sum(k.startswith("layer4.") and not k.endswith("num_batches_tracked") for k in sd)  # BN counters are not needed
    with pytest.raises(RuntimeError, match=rf"do not fit timm model 'resnet18': {n_layer4} of its tensors .*\(e\.g\. layer4\."):
        build_encoder("timm:resnet18", str(tmp_path / "no_layer4.safetensors"))
    save_file({**sd, "conv1.weight": torch.zeros(64, 3, 3, 3)}, str(tmp_path / "bad_shape.safetensors"))
    with pytest.raises(RuntimeError, match=r"(?s)could not load encoder weights .*bad_shape.safetensors into .*'resnet18'.*size mismatch"):
        build_encoder("timm:resnet18", str(tmp_path / "bad_shape.safetensors"))


def test_timm_encoder_takes_a_moco_style_checkpoint(tmp_path):
    """MoCo v2 layout: {"state_dict": {"module.encoder_q.<backbone>", "module.encoder_q.fc.*" (MLP head),
    "module.encoder_k.*" (momentum encoder), "module.queue"}}: the query backbone is what gets loaded."""
    src_path = tmp_path / "plain.safetensors"
    src = random_timm_weights("resnet18", src_path)
    sd = src.state_dict()
    ckpt = {f"module.encoder_q.{k}": v for k, v in sd.items()}
    ckpt |= {f"module.encoder_k.{k}": torch.zeros_like(v) for k, v in sd.items()}
    ckpt |= {"module.encoder_q.fc.0.weight": torch.randn(2048, 512), "module.queue": torch.randn(128, 64)}
    path = tmp_path / "moco_v2.pth.tar"
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": ckpt}, path)
    enc = build_encoder("timm:resnet18", str(path), resize=32)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(8)) * 2 - 1
    with torch.no_grad():
        for m, r in zip(enc(x), resnet_stages(src, x)):  # encoder_q's weights, not encoder_k's zeros
            torch.testing.assert_close(m, r, atol=1e-5, rtol=1e-4)
    assert (tmp_path / "moco_v2.pth.backbone.safetensors").is_file()


@pytest.mark.parametrize("name,size,kw", [("convnextv2_atto", 64, {}), ("vit_small_patch14_dinov2", 56, {"img_size": 56})])
def test_timm_convnextv2_and_dinov2_backbones(tmp_path, monkeypatch, name, size, kw):
    """The issue's other backbone families build with features_only from a local file and feed the features."""
    path = tmp_path / f"{name}.safetensors"
    src = random_timm_weights(name, path, **kw)
    if kw:  # a small ViT input keeps this fast; the encoder builds it through timm.create_model as usual
        monkeypatch.setattr(timm, "create_model", functools.partial(timm.create_model, **kw))
    enc = build_encoder(f"timm:{name}", str(path), resize=size)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(9)) * 2 - 1
    maps = enc(x)
    assert all(m.dim() == 4 and m.shape[0] == 2 for m in maps) and len(maps) >= 3
    groups = feature_groups(maps, None)
    assert len(groups) == len(maps) and all(torch.isfinite(g).all() for g in groups)
    # loaded from the file: every tensor of the features net equals the source's (the features net renames
    # modules: a "model." prefix, "stages_0" for "stages.0")
    fold = lambda k: k.removeprefix("model.").replace("_", ".")  # noqa: E731
    sd = {fold(k): v for k, v in src.state_dict().items()}
    mine = enc.net.state_dict()
    assert all(torch.equal(v, sd[fold(k)]) for k, v in mine.items() if not k.endswith("num_batches_tracked"))


# ---- issue #19 options: paper-style patch statistics, unpooled locations, input-energy pixel features ----

def reference_patch_groups(fmap: torch.Tensor, sizes=(2, 4)) -> dict[str, torch.Tensor]:
    """The paper's patch statistics by loops (float64): one mean/std vector per k x k patch (stride k,
    row-major; a remainder row/column that does not fill a patch is left out), every location unpooled."""
    fmap = fmap.double()
    b, c, h, w = fmap.shape

    def std(p):
        return (p.var(2, unbiased=False) + 1e-6).sqrt()

    out = {"loc": torch.stack([fmap[:, :, i, j] for i in range(h) for j in range(w)], 1),
           "mean": fmap.flatten(2).mean(2)[:, None], "std": std(fmap.flatten(2))[:, None]}
    for k in sizes:
        if k < h:
            ps = [fmap[:, :, i * k:(i + 1) * k, j * k:(j + 1) * k].flatten(2) for i in range(h // k) for j in range(w // k)]
            out[f"mean{k}"] = torch.stack([p.mean(2) for p in ps], 1)
            out[f"std{k}"] = torch.stack([std(p) for p in ps], 1)
    return out


@pytest.mark.parametrize("side", [4, 7, 8, 16])
def test_patch_stats_for_every_patch_match_loop_reference(side):
    fmap = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(10 + side)) * 1.5 - 0.2
    got = map_groups(fmap, max_locations=0, patch_stats="patches")
    ref = reference_patch_groups(fmap)
    sizes = {k: v.shape[1] for k, v in ref.items()}
    if side == 16:  # 256 locations + 2 + 64 (2x2 patches) x 2 + 16 (4x4 patches) x 2
        assert sizes == {"loc": 256, "mean": 1, "std": 1, "mean2": 64, "std2": 64, "mean4": 16, "std4": 16}
    for name, part in split(got, sizes).items():
        torch.testing.assert_close(part.double(), ref[name], atol=2e-5, rtol=1e-5, msg=name)
    with pytest.raises(ValueError, match="patch_stats"):
        map_groups(fmap, patch_stats="tiles")


def test_input_energy_pixel_features():
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    maps = [torch.randn(2, 6, 8, 8, generator=gen)]
    groups = feature_groups(maps, x, pixel_mode="energy")
    assert [tuple(g.shape) for g in groups] == [(2, 106, 6), (2, 1, 3072), (2, 1, 3)]
    assert torch.equal(groups[1][:, 0], x.flatten(1))
    for b in range(2):
        for c in range(3):  # mean over the 32 x 32 locations of x^2, by a loop
            e = sum(float(x[b, c, i, j]) ** 2 for i in range(32) for j in range(32)) / 1024
            assert groups[2][b, 0, c].item() == pytest.approx(e, rel=1e-5)
    with pytest.raises(ValueError, match="pixel_mode"):
        feature_groups(maps, x, pixel_mode="rgb")
    # patch_stats reaches the encoder maps and the pixel patches alike
    g = feature_groups(maps, x, max_locations=0, patch_stats="patches")
    assert [tuple(t.shape) for t in g] == [(2, 64 + 2 + 32 + 8, 6), (2, 64 + 2 + 32 + 8, 48)]


@pytest.mark.parametrize("shape,k", [((16, 16), 4), ((32, 16), 8), ((14, 14), 4), ((12, 8), 2)])
def test_region_means_equal_adaptive_pooling_with_their_gradient(shape, k):
    """Divisible maps take avg_pool2d (its backward fuses under inductor), the rest adaptive pooling: the same values
    and gradients either way."""
    import torch.nn.functional as F

    from driftin.drift.features import _regions_mean

    x = torch.randn(2, 3, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, k, k, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (ga,) = torch.autograd.grad((_regions_mean(x, k) * w).sum(), x)
    (gb,) = torch.autograd.grad((F.adaptive_avg_pool2d(x, k) * w).sum(), x)
    torch.testing.assert_close(_regions_mean(x, k), F.adaptive_avg_pool2d(x, k))
    torch.testing.assert_close(ga, gb)
