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
