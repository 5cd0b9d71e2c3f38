import json
from pathlib import Path

import pytest
import torch

from driftin import classifier as C

TINY_ENC = {"widths": (8, 16, 32, 64)}
TINY_EVAL = {"widths": (8, 16, 32)}


def _x(n=4, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y, x[:64], y[:64]


def test_encoder_shapes_and_batch_independence():
    torch.manual_seed(0)
    enc = C.Encoder().eval()
    x = _x(3)
    maps = enc.features(x)
    assert [tuple(m.shape) for m in maps] == [(3, 32, 32, 32), (3, 64, 16, 16), (3, 128, 8, 8), (3, 256, 4, 4)]
    assert enc(x).shape == (3, 10)
    # GroupNorm: a sample's features must not depend on the rest of the batch (also in train mode)
    enc.train()
    torch.testing.assert_close(enc.features(x[:1])[2], enc.features(x)[2][:1], atol=1e-5, rtol=1e-5)


def test_evalnet_shapes():
    net = C.EvalNet().eval()
    assert net.penultimate(_x(2)).shape == (2, 256)
    assert net(_x(2)).shape == (2, 10)


def test_augment_is_a_crop_or_flipped_crop():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=g)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    out = C.augment(padded, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(len(x)):  # slow oracle: search all 9 x 9 x 2 crops
        crops = [padded[i, :, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)


def test_cutout_zeroes_one_clipped_square_per_image():
    x = torch.rand(64, 3, 32, 32) + 0.5  # no zeros of its own
    out = C.training.cutout(x, 16, torch.Generator().manual_seed(0))
    for i in range(len(x)):  # slow oracle: the zeroed pixels are one axis-aligned box, the same in every channel
        hole = out[i] == 0
        assert torch.equal(hole[0], hole[1]) and torch.equal(hole[0], hole[2])
        rows, cols = hole[0].any(1).nonzero().flatten(), hole[0].any(0).nonzero().flatten()
        assert hole[0].sum() == len(rows) * len(cols) and 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16
        assert torch.equal(out[i][~hole], x[i][~hole])
        box = hole[0][rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all()
    sizes = {int((out[i, 0] == 0).sum()) for i in range(len(x))}
    assert 256 in sizes and min(sizes) < 256  # whole squares inside, clipped ones at the borders


@pytest.mark.parametrize("arch,kw", [("encoder", TINY_ENC), ("evalnet", TINY_EVAL)])
def test_save_load_roundtrip(tmp_path, arch, kw):
    torch.manual_seed(0)
    net = C.build_classifier(arch, **kw).eval()
    C.save_classifier(net, tmp_path / "w")
    back = C.load_classifier(tmp_path / "w")
    assert not back.training and not any(p.requires_grad for p in back.parameters())
    # stored fp16: loading gives exactly the fp16-rounded net, computing in fp32
    net.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in net.state_dict().items()})
    torch.testing.assert_close(back(_x()), net(_x()), atol=0, rtol=0)
    assert (tmp_path / "w" / "README.md").exists()


def test_default_net_stored_fp16(tmp_path):
    torch.manual_seed(0)
    net = C.Encoder().eval()  # ~1.2M params -> ~2.5 MB in fp16
    C.save_classifier(net, tmp_path / "w")
    n = sum(p.numel() for p in net.parameters())
    assert 2 * n <= (tmp_path / "w" / C.WEIGHTS_FILE).stat().st_size < 2 * n + 200_000
    assert json.loads((tmp_path / "w" / C.CONFIG_FILE).read_text())["dtype"] == "float16"
    back = C.load_classifier(tmp_path / "w")
    assert next(back.parameters()).dtype == torch.float32
    torch.testing.assert_close(back.features(_x())[-1], net.features(_x())[-1], atol=2e-2, rtol=2e-2)
    with pytest.raises(ValueError, match="one-file limit"):  # a net too big for one file is refused, not sharded silently
        C.save_classifier(C.Encoder(widths=(64, 128, 512, 1024)), tmp_path / "big")


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        C.load_classifier(tmp_path / "nope")
    # a relative path under weights/ is a path, never a Hub repo id (hub.resolve's rule, shared with the UNet weights)
    with pytest.raises(FileNotFoundError, match=r"weights/no-such does not exist \(and it is not a Hub repo id"):
        C.load_classifier("weights/no-such")
    pt = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(1)}, pt)
    with pytest.raises(ValueError, match="pickle"):
        C.load_classifier(pt)
    only_pickle = tmp_path / "pickled"
    only_pickle.mkdir()
    torch.save({"a": torch.zeros(1)}, only_pickle / "model.pth")
    with pytest.raises(FileNotFoundError, match="pickle"):
        C.load_classifier(only_pickle)
    # evalnet weights with an encoder config: keys do not match
    w = tmp_path / "w"
    C.save_classifier(C.EvalNet(**TINY_EVAL), w)
    cfg = json.loads((w / C.CONFIG_FILE).read_text())
    (w / C.CONFIG_FILE).write_text(json.dumps({**cfg, "arch": "encoder", "widths": [8, 16, 32, 64], "blocks": [1, 1, 1, 1]}))
    with pytest.raises(ValueError, match=r"does not match a encoder .*: missing \["):
        C.load_classifier(w)
    (w / C.CONFIG_FILE).write_text(json.dumps({**cfg, "widths": [8, 16, 48]}))
    with pytest.raises(ValueError, match="shape mismatch"):
        C.load_classifier(w)
    (w / C.CONFIG_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        C.load_classifier(w)


def test_smoke_train_and_cli(tmp_path, monkeypatch):
    model, info = C.train_classifier("evalnet", tmp_path / "ev", epochs=1, batch=64, arch_kwargs=TINY_EVAL,
                                     data=_data(), device="cpu", progress=False)
    assert 0.0 <= info["test_acc"] <= 1.0 and info["seed"] == 1 and info["label_smoothing"] == 0.1
    assert json.loads((tmp_path / "ev" / C.CONFIG_FILE).read_text())["test_acc"] == info["test_acc"]
    # CLI path with the dataset replaced by a few hundred random images
    tr, ty, te, tey = _data(192, seed=1)
    monkeypatch.setattr(C.training, "load_cifar10_tar", lambda split: (tr, ty) if split == "train" else (te, tey))
    C.main(["train", "--arch", "encoder", "--out", str(tmp_path / "enc"), "--epochs", "1", "--batch", "64",
            "--widths", "8,16,32,64", "--device", "cpu"])
    cfg = json.loads((tmp_path / "enc" / C.CONFIG_FILE).read_text())
    assert cfg["arch"] == "encoder" and cfg["seed"] == 0 and "--arch encoder" in cfg["train_command"]
    assert "cutout_size" not in cfg  # off unless asked for
    C.main(["train", "--arch", "encoder", "--out", str(tmp_path / "cut"), "--epochs", "1", "--batch", "64",
            "--widths", "8,16,32,64", "--device", "cpu", "--cutout-size", "16"])
    assert json.loads((tmp_path / "cut" / C.CONFIG_FILE).read_text())["cutout_size"] == 16
    assert "crop+flip+Cutout 16 augmentation" in (tmp_path / "cut" / "README.md").read_text()  # the card says so
    assert "crop+flip augmentation" in (tmp_path / "enc" / "README.md").read_text()
    assert len(C.load_classifier(Path(tmp_path / "enc")).features(_x(1))) == 4


def test_card_has_hub_metadata_and_regenerates(tmp_path):
    from huggingface_hub import ModelCard

    net = C.build_classifier("evalnet", **TINY_EVAL).eval()
    C.save_classifier(net, tmp_path / "ev", {"test_acc": 0.51234})
    card = ModelCard.load(tmp_path / "ev" / "README.md")
    assert card.data.library_name == "driftin" and card.data.license == "mit" and card.data.datasets == ["cifar10"]
    acc = card.data.eval_results[0]
    assert (acc.metric_type, acc.metric_value, acc.dataset_split) == ("accuracy", 0.5123, "test")
    before = (tmp_path / "ev" / "README.md").read_text()
    (tmp_path / "ev" / "README.md").unlink()
    C.main(["card", str(tmp_path / "ev")])  # rebuilt from config.json alone
    assert (tmp_path / "ev" / "README.md").read_text() == before


def test_resnet_encoder_size_maps_and_fp16_file_limit():
    with torch.device("meta"):
        net = C.build_classifier("resnet")
    n = sum(p.numel() for p in net.parameters())
    assert 11.0e6 < n < 11.4e6  # ResNet-18 size
    assert sum(v.numel() * 2 for v in net.state_dict().values() if v.is_floating_point()) < C.MAX_FILE_BYTES
    torch.manual_seed(0)
    small = C.ResNetEncoder(widths=(8, 16, 16, 32)).eval()
    assert [tuple(m.shape) for m in small.features(_x(2))] == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4)]
    # two blocks per stage: the second block of each stage sees the first one's output
    assert [len(s) for s in small.stages] == [2, 2, 2, 2] and small.config["arch"] == "resnet"


def test_resnet_recipe_trains_through_the_cli(tmp_path, monkeypatch):
    path = Path(__file__).parents[1] / "training" / "encoder_resnet_cifar10.json"
    recipe = json.loads(path.read_text())
    assert recipe["arch"] == "resnet" and recipe["blocks"] == [2, 2, 2, 2]
    tr, ty, te, tey = _data(128, seed=2)
    monkeypatch.setattr(C.training, "load_cifar10_tar", lambda split: (tr, ty) if split == "train" else (te, tey))
    out = tmp_path / "res"
    # the shipped recipe, shrunk by flags (flags override the file)
    C.main(["train", "--config", str(path), "--out", str(out), "--epochs", "1",
            "--batch", "64", "--widths", "8,16,16,32", "--blocks", "1,2,1,1", "--device", "cpu"])
    cfg = json.loads((out / C.CONFIG_FILE).read_text())
    assert cfg["arch"] == "resnet" and cfg["blocks"] == [1, 2, 1, 1] and cfg["label_smoothing"] == 0.1
    assert cfg["seed"] == 2 and cfg["epochs"] == 1 and cfg["weight_decay"] == 0.0005
    from driftin.drift.encoders import build_encoder
    enc = build_encoder("cifar", str(out))  # the drift loss loads it like the default encoder
    assert [m.shape[1] for m in enc(_x(1))] == [8, 16, 16, 32]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"arch": "resnet", "out": str(out), "dropout": 0.1}))
    with pytest.raises(ValueError, match="dropout"):
        C.main(["train", "--config", str(bad)])


def test_mae_mask_hides_exactly_half_of_the_2x2_cells():
    m = C.mae_mask(3, 0.5, generator=torch.Generator().manual_seed(0))
    assert m.shape == (3, 1, 32, 32)
    for b in range(3):
        cells = [m[b, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2] for i in range(16) for j in range(16)]
        assert all(c.min() == c.max() for c in cells)  # constant on every 2x2 cell
        assert sum(int(c[0, 0]) for c in cells) == 128
    assert not torch.equal(m[0], m[1])


def test_mae_loss_sees_only_unmasked_input_and_scores_only_masked_pixels():
    torch.manual_seed(0)
    enc, x = C.Encoder(widths=(8, 16, 16, 32)).eval(), _x(2)
    dec = C.MAEDecoder(enc.config["widths"])
    mask = C.mae_mask(2, 0.5, generator=torch.Generator().manual_seed(1))
    # the encoder cannot see the masked pixels
    x2 = torch.where(mask.bool(), torch.rand_like(x) * 2 - 1, x)
    for a, b in zip(enc.features(x, mask), enc.features(x2, mask)):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        pred, target = dec(enc.features(x, mask)).double(), enc.norm(x).double()
        errs = [(pred[b, c, i, j] - target[b, c, i, j]) ** 2 for b in range(2) for c in range(3)
                for i in range(32) for j in range(32) if mask[b, 0, i, j] == 1]
        want = sum(errs) / len(errs)
        assert C.mae_loss(enc, dec, x, mask).item() == pytest.approx(want.item(), rel=1e-5)


def test_mae_pretrain_then_finetune_cli(tmp_path, monkeypatch):
    tr, ty, te, tey = _data(128, seed=3)
    monkeypatch.setattr(C.training, "load_cifar10_tar", lambda split: (tr, ty) if split == "train" else (te, tey))
    root = Path(__file__).parents[1] / "training"
    tiny = ["--epochs", "1", "--batch", "64", "--widths", "8,16,16,32", "--blocks", "1,1,1,1", "--device", "cpu"]
    C.main(["pretrain-mae", "--config", str(root / "encoder_resnet_mae_cifar10.json"), "--out", str(tmp_path / "mae"), *tiny])
    cfg = json.loads((tmp_path / "mae" / C.CONFIG_FILE).read_text())
    assert cfg["pretrain"] == "mae" and cfg["mask_ratio"] == 0.5 and cfg["arch"] == "resnet"
    assert "MAE pretraining only" in (tmp_path / "mae" / "README.md").read_text()
    C.main(["train", "--config", str(root / "encoder_resnet_mae_ft_cifar10.json"), "--init", str(tmp_path / "mae"),
            "--out", str(tmp_path / "ft"), *tiny])
    ft = json.loads((tmp_path / "ft" / C.CONFIG_FILE).read_text())
    assert ft["init"] == str(tmp_path / "mae") and 0 <= ft["test_acc"] <= 1
    # the fine-tune really starts from the pretrained weights (one step of lr 0 keeps them)
    model, _ = C.train_classifier("resnet", None, epochs=1, batch=128, lr=1e-30, init=tmp_path / "mae", data=(tr, ty, te, tey),
                                  arch_kwargs={"widths": (8, 16, 16, 32), "blocks": (1, 1, 1, 1)}, device="cpu", progress=False)
    src = C.load_classifier(tmp_path / "mae")
    for k, v in src.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, atol=1e-6, rtol=0, msg=k)
    with pytest.raises(ValueError, match="not the"):
        C.train_classifier("resnet", None, epochs=1, batch=64, init=tmp_path / "mae", data=(tr, ty, te, tey),
                           arch_kwargs={"widths": (8, 16, 16, 64)}, device="cpu", progress=False)


TINY_BN = {"widths": (8, 16, 16, 32), "blocks": (1, 1, 1, 1), "norm": "batch"}


def _bn_net(seed=0):
    """A tiny BatchNorm resnet with non-trivial norm weights and running statistics, in eval mode."""
    torch.manual_seed(seed)
    net = C.build_classifier("resnet", **TINY_BN)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
    with torch.no_grad():  # train-mode passes move the running statistics off their (0, 1) start
        for s in range(3):
            net.train()(_x(8, seed=10 + s))
    return net.eval()


def test_batchnorm_resnet_saves_and_loads(tmp_path):
    net = _bn_net()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())
    C.save_classifier(net, tmp_path / "bn")
    cfg = json.loads((tmp_path / "bn" / C.CONFIG_FILE).read_text())
    assert cfg["norm"] == "batch" and cfg["arch"] == "resnet"
    assert "BatchNorm" in (tmp_path / "bn" / "README.md").read_text()
    back = C.load_classifier(tmp_path / "bn")
    assert back.config == net.config and not back.training and not any(p.requires_grad for p in back.parameters())
    assert all(not m.training for m in back.modules())
    # running statistics travel with the weights: the loaded net is exactly the fp16-rounded one
    net.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in net.state_dict().items()})
    torch.testing.assert_close(back(_x()), net(_x()), atol=0, rtol=0)
    for a, b in zip(back.features(_x()), net.features(_x())):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    with pytest.raises(ValueError, match="unknown norm"):
        C.build_classifier("resnet", norm="layer")


def test_config_without_norm_loads_as_groupnorm(tmp_path):
    torch.manual_seed(0)
    net = C.build_classifier("resnet", widths=(8, 16, 16, 32), blocks=(1, 1, 1, 1)).eval()
    assert net.config["norm"] == "group"  # the default
    C.save_classifier(net, tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / C.CONFIG_FILE).read_text())
    del cfg["norm"]  # as written before the option existed
    (tmp_path / "old" / C.CONFIG_FILE).write_text(json.dumps(cfg))
    back = C.load_classifier(tmp_path / "old")
    assert back.config["norm"] == "group" and any(isinstance(m, torch.nn.GroupNorm) for m in back.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in back.modules())
    torch.testing.assert_close(back(_x()), net(_x()), atol=2e-2, rtol=2e-2)


def test_drift_encoder_from_batchnorm_classifier_is_frozen_and_per_sample(tmp_path):
    from driftin.drift.encoders import build_encoder

    net = _bn_net()
    C.save_classifier(net, tmp_path / "bn")
    enc = build_encoder("cifar", str(tmp_path / "bn"))
    assert all(not m.training for m in enc.modules()) and not any(p.requires_grad for p in enc.parameters())
    x = _x(6, seed=5)
    alone, batched = enc(x[:1]), enc(x)
    assert [m.shape[1] for m in batched] == [8, 16, 16, 32]
    for a, b in zip(alone, batched):
        torch.testing.assert_close(a, b[:1], atol=1e-5, rtol=1e-5)
    # the check has teeth: in train mode the same net's features do depend on the batch
    enc.net.train()
    assert not torch.allclose(enc(x[:2])[1][:1], enc(x)[1][:1], atol=1e-3)


def test_batchnorm_training_uses_train_mode_and_measures_in_eval_mode(tmp_path):
    data = _data(128, seed=4)
    model, info = C.train_classifier("resnet", tmp_path / "bn", epochs=1, batch=64, arch_kwargs=TINY_BN, data=data,
                                     device="cpu", progress=False)
    assert info["norm"] == "batch" and not model.training
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == 2 for m in bns)  # both steps ran BatchNorm in train mode
    assert info["test_acc"] == round(C.accuracy(model, data[2], data[3]), 4)
    # accuracy() measures in eval mode: the running statistics stay put and the mode comes back
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    C.accuracy(model, data[2], data[3])
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_batchnorm_recipe_and_norm_flag(tmp_path, monkeypatch):
    import driftin.classifier.cli as cli

    root = Path(__file__).parents[1] / "training"
    seen = {}
    monkeypatch.setattr(cli, "train_classifier", lambda arch, out, **kw: seen.update(arch=arch, out=out, **kw))
    C.main(["train", "--config", str(root / "encoder_resnet_bn_cifar10.json")])
    assert seen["arch"] == "resnet" and seen["out"] == "weights/encoder-resnet-bn-cifar10" and seen["epochs"] == 60
    assert seen["arch_kwargs"] == {"widths": [64, 128, 256, 512], "blocks": [2, 2, 2, 2], "norm": "batch"}
    gn = json.loads((root / "encoder_resnet_cifar10.json").read_text())
    bn = json.loads((root / "encoder_resnet_bn_cifar10.json").read_text())
    assert {k: v for k, v in bn.items() if k not in ("norm", "out")} == {k: v for k, v in gn.items() if k != "out"}
    cut = json.loads((root / "encoder_resnet_bn_cutout_cifar10.json").read_text())  # the >= 94% try (#19): only these differ
    assert {k for k in set(cut) | set(bn) if cut.get(k) != bn.get(k)} == {"out", "epochs", "cutout_size"}
    C.main(["train", "--config", str(root / "encoder_resnet_bn_cutout_cifar10.json")])
    assert seen["cutout_size"] == 16 and seen["epochs"] == 200 and seen["out"] == "weights/encoder-resnet-bn-cutout-cifar10"
    lr04 = json.loads((root / "encoder_resnet_bn_cutout_lr04_cifar10.json").read_text())  # linear lr scaling: only lr differs
    assert {k for k in set(cut) | set(lr04) if cut.get(k) != lr04.get(k)} == {"out", "lr"} and lr04["lr"] == 2 * cut["lr"]
    C.main(["train", "--config", str(root / "encoder_resnet_cifar10.json"), "--norm", "batch"])  # the flag
    assert seen["arch_kwargs"]["norm"] == "batch"
    with pytest.raises(ValueError, match="evalnet has no norm"):
        C.main(["train", "--arch", "evalnet", "--out", str(tmp_path / "e"), "--norm", "batch"])
    with pytest.raises(ValueError, match="norm 'group'"):  # MAE pretraining refuses BatchNorm, before any data is read
        C.main(["pretrain-mae", "--config", str(root / "encoder_resnet_mae_cifar10.json"), "--norm", "batch",
                "--out", str(tmp_path / "mae")])
