import pytest
import torch

from driftin.diffusion import alphas_cumprod, ddim_timesteps
from driftin.sampling import ddim_sample


def one_point_eps(x0_star):
    """The exact noise predictor when the data distribution is the single point x0_star."""
    abar = alphas_cumprod()

    def eps(x, t):
        a = abar[t].float().view(-1, 1, 1, 1)
        return (x - a.sqrt() * x0_star) / (1 - a).sqrt()

    return eps


@pytest.mark.parametrize("steps", [1, 2, 10, 50, 1000])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_returns_the_one_point(steps, eta):
    g = torch.Generator().manual_seed(steps)
    x0 = torch.rand(1, 3, 8, 8, generator=g) * 1.6 - 0.8
    noise = torch.randn(5, 3, 8, 8, generator=g) * 3
    out = ddim_sample(one_point_eps(x0), noise, steps, eta, step_noise=lambda i: torch.randn(5, 3, 8, 8, generator=g))
    torch.testing.assert_close(out, x0.expand_as(out), atol=1e-4, rtol=0)


def test_ddim_callback_sees_every_step():
    frames = []
    ddim_sample(one_point_eps(torch.zeros(1, 3, 4, 4)), torch.randn(2, 3, 4, 4), 7, callback=lambda i, x, x0: frames.append(i))
    assert frames == list(range(7))


def test_timesteps_validation():
    assert ddim_timesteps(4) == [750, 500, 250, 0]
    with pytest.raises(ValueError, match="steps"):
        ddim_timesteps(0)


def test_quadratic_spacing_is_the_ddim_papers_cifar10_sequence():
    """The DDIM paper's CIFAR-10 sub-sequence (floor of linspace(0, sqrt(0.8 T), S)^2 in its code), rounded here and
    made strictly decreasing where the first squares fall within one step of each other."""
    import math

    for steps in (2, 10, 25, 50, 100):
        ts = ddim_timesteps(steps, spacing="quadratic")
        assert len(ts) == steps and ts[0] == 800 and ts[-1] == 0 and all(a > b for a, b in zip(ts, ts[1:]))
        squares = [(i * math.sqrt(800) / (steps - 1)) ** 2 for i in range(steps)][::-1]
        close = 3 if steps <= 50 else 20  # off only near t = 0, where the squares come closer than 1 and are pushed apart
        assert all(abs(t - q) <= 1 for t, q in zip(ts, squares) if q >= close), steps
    assert ddim_timesteps(10, spacing="quadratic") == [800, 632, 484, 356, 247, 158, 89, 40, 10, 0]
    assert ddim_timesteps(4, spacing="uniform") == ddim_timesteps(4)
    with pytest.raises(ValueError, match="spacing"):
        ddim_timesteps(10, spacing="cosine")


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_quadratic_spacing_returns_the_one_point(eta):
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(1, 3, 8, 8, generator=g) * 1.6 - 0.8
    noise = torch.randn(4, 3, 8, 8, generator=g)
    out = ddim_sample(one_point_eps(x0), noise, 20, eta, step_noise=lambda i: torch.randn(4, 3, 8, 8, generator=g),
                      spacing="quadratic")
    torch.testing.assert_close(out, x0.expand_as(out), atol=1e-4, rtol=0)
