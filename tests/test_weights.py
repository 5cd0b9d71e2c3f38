import json
import os

import pytest
import torch

from driftin.config import preset
from driftin.generate import generate
from driftin.hub import WeightsError, load_pretrained, save_pretrained
from driftin.unet import UNet


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return UNet(preset("tiny", num_classes=10, zero_init_out=False)).eval()


def test_round_trip_fp32_is_exact(model, tmp_path):
    save_pretrained(model, tmp_path, {"objective": "drift"}, dtype=torch.float32)
    loaded = load_pretrained(tmp_path)
    assert loaded.meta["objective"] == "drift" and loaded.config == model.config
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x, None, 3), loaded(x, None, 3))
    assert torch.equal(generate(model, 3, 7, method="drift"), generate(loaded, 3, 7))


def test_round_trip_fp16_equals_fp16_rounded_model(model, tmp_path):
    save_pretrained(model, tmp_path, {"objective": "ddpm"})
    rounded = UNet(model.config).eval()
    rounded.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(rounded(x, 10), load_pretrained(tmp_path)(x, 10))


def test_large_models_are_sharded_under_15mb(tmp_path):
    save_pretrained(UNet(preset("small")), tmp_path, {"objective": "ddpm"})
    shards = sorted(tmp_path.glob("*.safetensors"))
    assert len(shards) >= 2 and all(s.stat().st_size <= 15_000_000 for s in shards)
    assert (tmp_path / "model.safetensors.index.json").exists()
    load_pretrained(tmp_path)


def test_wrong_preset_names_the_keys(model, tmp_path):
    save_pretrained(model, tmp_path, {"objective": "drift"})
    with pytest.raises(WeightsError, match="base_channels"):
        load_pretrained(tmp_path, config=preset("small", num_classes=10, zero_init_out=False))
    # config.json edited to another preset: the tensors no longer fit
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model"]["base_channels"] = 32
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="shape mismatch"):
        load_pretrained(tmp_path)


def test_missing_and_extra_keys(model, tmp_path):
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    sd.pop("out.bias")
    sd["bogus.weight"] = torch.zeros(1)
    tmp_path.mkdir(exist_ok=True)
    save_file(sd, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model": json.loads(json.dumps(model.config.__dict__))}))
    with pytest.raises(WeightsError, match=r"missing \['out.bias'\].*unexpected \['bogus.weight'\]"):
        load_pretrained(tmp_path)


def test_truncated_file(model, tmp_path):
    save_pretrained(model, tmp_path, {"objective": "drift"})
    f = tmp_path / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        load_pretrained(tmp_path)


def test_pickle_checkpoint_is_refused(model, tmp_path):
    save_pretrained(model, tmp_path, {"objective": "drift"})
    os.remove(tmp_path / "model.safetensors")
    torch.save(model.state_dict(), tmp_path / "model.pt")
    with pytest.raises(WeightsError, match="pickle checkpoint"):
        load_pretrained(tmp_path)
    os.rename(tmp_path / "model.pt", tmp_path / "MODEL.Pickle")  # any case of any pickle suffix
    with pytest.raises(WeightsError, match=r"pickle checkpoint\(s\) \['MODEL.Pickle'\]"):
        load_pretrained(tmp_path)
    os.rename(tmp_path / "MODEL.Pickle", tmp_path / "model.pt")
    # a torch.save file renamed to .safetensors is named as such, never unpickled
    os.rename(tmp_path / "model.pt", tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match="pickle"):
        load_pretrained(tmp_path)
    with pytest.raises(WeightsError, match="is a file"):
        load_pretrained(tmp_path / "model.safetensors")


def test_missing_folder_and_offline_repo(tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="does not exist"):
        load_pretrained(tmp_path / "nope")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsError, match="someone/missing"):
        load_pretrained("someone/missing")


def test_state_dict_mismatch_names_a_few_of_each_problem_with_counts():
    from driftin.hub import state_dict_mismatch

    expected = {f"w{i}": torch.zeros(2, 3) for i in range(8)}
    assert state_dict_mismatch(expected, dict(expected)) is None
    found = {k: v for k, v in expected.items() if k not in ("w0", "w1")} | {"extra": torch.zeros(1), "w2": torch.zeros(3, 2)}
    msg = state_dict_mismatch(expected, found)
    assert msg == ("missing ['w0', 'w1'] (2), unexpected ['extra'] (1), "
                   "shape mismatch ['w2'] (1), e.g. file (3, 2) vs model (2, 3)")
    many = state_dict_mismatch(expected, {})
    assert many.startswith("missing ['w0', 'w1', 'w2', 'w3', 'w4']… (8)") and "unexpected" not in many
