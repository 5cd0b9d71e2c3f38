import pytest
import torch

from driftin.config import PRESETS, UNetConfig, from_dict, preset, to_dict
from driftin.unet import UNet, count_params


@pytest.mark.parametrize("name,expected", [("small", 9.59e6), ("base", 38.31e6)])
def test_preset_param_counts(name, expected):
    assert count_params(UNet(PRESETS[name])) == pytest.approx(expected, rel=0.01)


def test_tiny_is_small_and_large_is_large():
    assert count_params(UNet(PRESETS["tiny"])) < 1e6
    with torch.device("meta"):  # no memory for 200M parameters
        assert count_params(UNet(PRESETS["large"])) > 150e6


def test_forward_shapes_and_conditioning():
    torch.manual_seed(0)
    cfg = preset("tiny", num_classes=10, guidance_input=True, zero_init_out=False)
    net = UNet(cfg)
    x = torch.randn(3, 3, 32, 32)
    out = net(x, torch.tensor([0, 10, 999]), torch.tensor([1, 2, 10]), torch.tensor([1.0, 2.0, 3.0]))
    assert out.shape == x.shape
    # label, time and alpha all change the output
    base = net(x, 5, 1, 1.0)
    assert not torch.allclose(base, net(x, 5, 2, 1.0))
    assert not torch.allclose(base, net(x, 500, 1, 1.0))
    assert not torch.allclose(base, net(x, 5, 1, 3.0))


def test_zero_init_output_is_constant_and_drift_init_is_not():
    x = torch.randn(4, 3, 32, 32)
    assert UNet(preset("tiny"))(x).abs().max() == 0
    out = UNet(preset("tiny", zero_init_out=False))(x)
    assert (out[0] - out[1]).abs().max() > 1e-3  # distinct samples from distinct noise


def test_config_json_round_trip_and_unknown_keys():
    cfg = preset("small", num_classes=10)
    assert from_dict(UNetConfig, to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="bogus"):
        from_dict(UNetConfig, {**to_dict(cfg), "bogus": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
