"""Detail-preserving blend: the MAP estimate under ``x ~ N(D(v), s^2)`` and ``v = x + N(0, sigma^2)``, per image;
solvers take it as a config value."""
from __future__ import annotations

import pytest
import torch

from pnprgm import operators
from pnprgm import solvers
from pnprgm.denoisers.detail import DetailPreservingDenoiser, keep_detail
from pnprgm.errors import UserError
from pnprgm.restoration import configure

pytestmark = pytest.mark.usefixtures("one_thread")


class Shrink(torch.nn.Module):
    """A stand-in denoiser that depends on sigma: pulls towards the image mean, more at high sigma."""

    def forward(self, x, sigma):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).flatten().expand(x.shape[0]).view(-1, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return mean + (x - mean) / (1 + 10 * sigma)


def image(shape=(2, 3, 6, 9)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


@pytest.mark.parametrize("sigma", [0.02, torch.tensor([0.01, 0.2])])
def test_output_is_the_map_estimate_of_its_definition(sigma):
    """Zero gradient of ||u - D(v)||^2 / s^2 + ||u - v||^2 / sigma^2 at the output, per image."""
    v, s = image(), 0.03
    out = DetailPreservingDenoiser(Shrink(), s)(v, sigma).requires_grad_(True)
    sig = torch.as_tensor(sigma, dtype=v.dtype).flatten().expand(2).view(-1, 1, 1, 1)
    objective = ((out - Shrink()(v, sigma)) ** 2 / s**2 + (out - v) ** 2 / sig**2).sum()
    (grad,) = torch.autograd.grad(objective, out)
    assert grad.abs().max() < 1e-9


def test_high_noise_gives_the_denoiser_and_low_noise_the_input():
    v, wrapped = image(), DetailPreservingDenoiser(Shrink(), 0.01)
    assert torch.allclose(wrapped(v, 10.0), Shrink()(v, 10.0), atol=1e-5)
    assert torch.allclose(wrapped(v, 1e-4), v, atol=1e-3)
    assert not torch.allclose(wrapped(v, 0.01), Shrink()(v, 0.01), atol=1e-2)  # equal weights at sigma = s


def test_zero_returns_the_denoiser_itself_and_bad_values_are_refused():
    shrink = Shrink()
    assert keep_detail(shrink, 0.0) is shrink
    with pytest.raises(UserError, match="detail_sigma"):
        DetailPreservingDenoiser(shrink, -0.1)
    with pytest.raises(UserError, match="detail_sigma"):
        configure("drs", {"detail_sigma": -0.1})


@pytest.mark.parametrize("name", ["drs", "admm", "hqs"])
def test_solvers_wrap_their_denoiser_as_configured(name):
    physics = operators.build("blur:gaussian,sigma=1", (1, 6, 9), dtype=torch.float64)
    x = image((1, 1, 6, 9))
    y = physics.A(x)
    config = {"iterations": 3, "sigma_start": 0.2}
    blended = configure(name, {**config, "detail_sigma": 0.05}).run(y, physics, Shrink(), y, noise_sigma=0.01).x
    by_hand = solvers.build(name, config).solve(y, physics, DetailPreservingDenoiser(Shrink(), 0.05), y, noise_sigma=0.01).x
    plain = solvers.build(name, config).solve(y, physics, Shrink(), y, noise_sigma=0.01).x
    assert torch.allclose(blended, by_hand, atol=1e-12)
    assert not torch.allclose(blended, plain, atol=1e-4)
