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


def test_style_embeddings_are_summed_into_the_conditioning():
    torch.manual_seed(0)
    cfg = preset("tiny", num_classes=10, zero_init_out=False, style_tokens=3, style_codebook=5)
    net = UNet(cfg)
    x = torch.randn(2, 3, 32, 32)
    style = torch.tensor([[0, 4, 4], [1, 2, 3]])
    # embedding = the plain conditioning + the sum of the chosen codebook rows (by a loop)
    plain = UNet(preset("tiny", num_classes=10, zero_init_out=False))
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("style_emb")})
    want = plain.embed(None, torch.tensor([1, 2]), None, 2, "cpu")
    for b in range(2):
        for k in style[b].tolist():
            want[b] = want[b] + net.style_emb.weight[k]
    torch.testing.assert_close(net.embed(None, torch.tensor([1, 2]), None, 2, "cpu", style), want)
    out = net(x, None, torch.tensor([1, 2]), None, style)
    assert not torch.allclose(out, net(x, None, torch.tensor([1, 2]), None, style.flip(0)))
    # a generator draws them: the same seed gives the same images, the same as drawing with random_style
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    torch.testing.assert_close(net(x, None, 1, None, g()), net(x, None, 1, None, net.random_style(2, g())))
    assert net.random_style(4, g()).shape == (4, 3) and net.random_style(1000, g()).max() == 4


def test_style_models_refuse_missing_styles_and_plain_models_refuse_styles():
    net = UNet(preset("tiny", style_tokens=4))
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"style_tokens=4.*random_style"):
        net(x)
    with pytest.raises(ValueError, match=r"style must be \[2, 4\]"):
        net(x, style=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="no style embeddings"):
        UNet(preset("tiny"))(x, style=torch.zeros(2, 4, dtype=torch.long))
    assert from_dict(UNetConfig, to_dict(preset("small-style"))).style_tokens == 32
    # the style preset is the small preset plus the 64 x 256 codebook
    assert count_params(UNet(PRESETS["small-style"])) == count_params(UNet(PRESETS["small"])) + 64 * 256
