import pytest
import torch

from driftin.config import preset
from driftin.generate import generate
from driftin.unet import UNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return UNet(preset("tiny", num_classes=10, zero_init_out=False)).eval()


def test_per_sample_seeds_are_independent_of_batch(net):
    a = generate(net, seeds=[3, 4, 5], method="drift")
    b = generate(net, seeds=[5], method="drift")
    torch.testing.assert_close(a[2:], b, atol=1e-5, rtol=0)
    c = generate(net, seeds=[3, 4, 5], method="ddim", steps=3, class_labels=[1, 2, 3], guidance=2.0)
    d = generate(net, seeds=[4], method="ddim", steps=3, class_labels=2, guidance=2.0)
    torch.testing.assert_close(c[1:2], d, atol=1e-5, rtol=0)


def test_outputs_range_and_dtype(net):
    f = generate(net, 2, 0, method="ddim", steps=2, eta=1.0)
    assert f.dtype == torch.float32 and f.min() >= 0 and f.max() <= 1
    u = generate(net, 2, 0, method="drift", output="uint8")
    assert u.dtype == torch.uint8 and u.shape == (2, 3, 32, 32)


def test_guidance_changes_ddim_only_when_conditional(net):
    a = generate(net, 2, 0, method="ddim", steps=2, class_labels=1, guidance=1.0)
    b = generate(net, 2, 0, method="ddim", steps=2, class_labels=1, guidance=3.0)
    assert not torch.allclose(a, b)


def _guided_ddim_by_hand(net, seeds, labels, steps, guidance, interval):
    """A slow reference: DDIM written out step by step, CFG at the steps whose t is inside the interval."""
    from driftin.sampling import ddim_coefficients, make_noise

    ts, coefs, _ = ddim_coefficients(steps, 0.0)
    x, y = make_noise(seeds, (3, 32, 32)), torch.tensor(labels)
    for t, c in zip(ts, coefs):
        tt = torch.full((len(seeds),), t)
        e_c = net(x, tt, y)
        if interval[0] <= t <= interval[1]:
            e_u = net(x, tt, torch.full_like(y, 10))
            e_c = e_u + guidance * (e_c - e_u)
        x0 = ((x - c[1] * e_c) / c[0]).clamp(-1, 1)
        x = c[2] * x0 + c[3] * (x - c[0] * x0) / c[1]
    return x.clamp(-1, 1).add(1).div(2)


def test_guidance_interval_guides_only_the_steps_inside_it(net):
    """DDIM-4 visits t = 750, 500, 250, 0: (300, 600) guides only t = 500."""
    kw = dict(seeds=[3, 4], method="ddim", steps=4, class_labels=[1, 7], guidance=3.0)
    inside = generate(net, guidance_interval=(300, 600), **kw)
    torch.testing.assert_close(inside, _guided_ddim_by_hand(net, [3, 4], [1, 7], 4, 3.0, (300, 600)), atol=1e-5, rtol=0)
    # an interval holding every step is plain guidance, one holding none is no guidance
    torch.testing.assert_close(generate(net, guidance_interval=(0, 999), **kw), generate(net, **kw), atol=0, rtol=0)
    torch.testing.assert_close(generate(net, guidance_interval=(251, 499), **kw),
                               generate(net, **{**kw, "guidance": 1.0}), atol=0, rtol=0)
    assert not torch.allclose(inside, generate(net, **kw), atol=1e-3)


@pytest.mark.parametrize("interval,msg", [((600, 300), "lo <= hi"), ((0, 1000), "<= 999"), ((1,), "integer timesteps"),
                                          ("12", "integer timesteps"), ((80.5, 580), "integer timesteps")])
def test_bad_guidance_intervals_are_named(net, interval, msg):
    with pytest.raises(ValueError, match=msg):
        generate(net, 1, 0, method="ddim", steps=2, class_labels=1, guidance=2.0, guidance_interval=interval)
    with pytest.raises(ValueError, match="DDIM setting"):
        generate(net, 1, 0, method="drift", guidance_interval=(0, 500))


def test_callback_frames(net):
    frames = []
    generate(net, 1, 0, method="ddim", steps=4, callback=lambda i, x, x0: frames.append(x0.shape))
    assert len(frames) == 4


@pytest.mark.parametrize("kwargs,msg", [
    (dict(method="gan"), "method"),
    (dict(class_labels=12), "class labels"),
    (dict(class_labels=[1, 2, 3]), "3 class labels"),
    (dict(output="png"), "output"),
    (dict(guidance=-1.0), "guidance"),
    (dict(method="drift", guidance=2.0), "no guidance input"),
])
def test_bad_arguments(net, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        generate(net, 2, 0, **kwargs)


def test_unconditional_model_rejects_labels():
    with pytest.raises(ValueError, match="unconditional"):
        generate(UNet(preset("tiny")), 1, 0, class_labels=1)


def test_noise_input_matches_seeded_noise(net):
    from driftin.generate import make_noise

    seeds = [3, 4, 5]
    z = make_noise(seeds, (3, 32, 32))
    for kw in (dict(method="drift"), dict(method="ddim", steps=3, class_labels=[1, 2, 3], guidance=2.0)):
        assert torch.equal(generate(net, seeds=seeds, **kw), generate(net, noise=z, **kw))  # bit-identical
    other = generate(net, noise=torch.randn(3, 3, 32, 32), method="drift")
    assert not torch.equal(other, generate(net, noise=z, method="drift"))
    with pytest.raises(ValueError, match="noise must be"):
        generate(net, noise=torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="n=4"):
        generate(net, n=4, noise=z)


def test_generator_input_is_reproducible(net):
    def run(seed, **kw):
        return generate(net, 2, generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(run(1, method="drift"), run(1, method="drift"))
    assert not torch.equal(run(1, method="drift"), run(2, method="drift"))
    # the batch is drawn from the generator, torch-style
    z = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(run(1, method="drift"), generate(net, noise=z, method="drift"))
    # eta > 0 draws its step noise from the generator too: reproducible, and not the seeds' stream
    a, b = run(1, method="ddim", steps=3, eta=1.0), run(1, method="ddim", steps=3, eta=1.0)
    assert torch.equal(a, b) and not torch.equal(a, generate(net, noise=z, method="ddim", steps=3, eta=1.0))
    with pytest.raises(ValueError, match="n with a generator"):
        generate(net, generator=torch.Generator())
    with pytest.raises(ValueError, match="not both"):
        generate(net, 2, noise=z, generator=torch.Generator())


def test_resolve_device_auto_prefers_cuda_then_mps(monkeypatch):
    from driftin.generate import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu" and resolve_device(None).type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="MPS is not available"):
        resolve_device("mps")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu9")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


def test_style_model_draws_styles_per_seed():
    """A drift generator with random style embeddings: styles come from each sample's seed, like its noise,
    so a sample is the same alone or in a batch, and other seeds give other styles."""
    from driftin.config import preset
    from driftin.unet import UNet

    torch.manual_seed(0)
    net = UNet(preset("tiny", zero_init_out=False, style_tokens=4, style_codebook=8)).eval()
    batch = generate(net, seeds=[5, 6, 7], method="drift")
    alone = generate(net, seeds=[6], method="drift")
    torch.testing.assert_close(alone[0], batch[1], atol=1e-5, rtol=0)
    noise = torch.randn(2, 3, 32, 32)
    a, b = generate(net, noise=noise, seeds=[1, 2], method="drift"), generate(net, noise=noise, seeds=[3, 4], method="drift")
    assert (a - b).abs().max() > 1e-4  # same noise, other seeds -> other styles -> other images
    with pytest.raises(ValueError, match="style embeddings"):
        generate(net, seeds=[0], method="ddim", steps=2)


def test_pinned_pixels_for_fixed_seeds():
    """Fixed seeds on CPU give these exact uint8 pixels (values taken from the code before the #18 restructure,
    b133304): a refactor of sampling, guidance or DDIM that changes any image fails here."""
    torch.manual_seed(0)
    drift = UNet(preset("tiny", num_classes=10, zero_init_out=False, guidance_input=True)).eval()
    d = generate(drift, seeds=[0, 1], method="drift", class_labels=[3, 7], guidance=1.5, output="uint8")
    torch.manual_seed(1)
    ddpm = UNet(preset("tiny", num_classes=10, zero_init_out=False)).eval()
    s = generate(ddpm, seeds=[2, 3], method="ddim", steps=3, class_labels=[1, 9], guidance=2.0, eta=0.5, output="uint8")
    idx = [(0, 0, 0, 0), (0, 1, 5, 17), (1, 2, 31, 31), (1, 0, 16, 8)]
    assert [int(d[i]) for i in idx] == [109, 113, 133, 73] and int(d.sum()) == 837224
    assert [int(s[i]) for i in idx] == [0, 255, 0, 149] and int(s.sum()) == 761218
