"""Posterior grain: the draw has the closed-form posterior covariance; solvers add exactly one seeded draw."""
from __future__ import annotations

import pytest
import torch

from pnprgm import operators
from pnprgm.restoration import configure
from pnprgm.denoisers.tikhonov import TikhonovDenoiser
from pnprgm.dithering import posterior_grain

F64 = torch.float64
# every registered operator on a small colour image, plus the shapes of the restoration tasks
SPECS = sorted(set(operators.names()) | {"sr4", "blur:gaussian,sigma=1.6", "mask:random,rate=0.5,seed=0"})
SHAPE = (3, 4, 4)


def dense_matrix(fn, shape) -> torch.Tensor:
    n = int(torch.tensor(shape).prod())
    basis = torch.eye(n, dtype=F64).view(n, *shape)
    return fn(basis).reshape(n, -1).T


@pytest.mark.parametrize("spec", SPECS)
def test_draw_has_the_posterior_covariance(spec):
    """Whitened by the expected covariance C = (A^T A / sigma^2 + I / s^2)^-1, 40000 draws have identity
    covariance and zero mean within the sampling error (whitening makes a wrong variance along a few directions,
    e.g. the one block mean of sr4, as visible as one on all)."""
    physics = operators.build(spec, SHAPE, dtype=F64)
    grain, sigma, draws = 0.05, 0.01, 40000
    x = torch.zeros((draws, *SHAPE), dtype=F64)
    d = posterior_grain(x, physics, grain=grain, noise_sigma=sigma, generator=torch.Generator().manual_seed(0))
    samples = d.flatten(1)
    A = dense_matrix(physics.A, SHAPE)
    expected = torch.linalg.inv(A.T @ A / sigma**2 + torch.eye(A.shape[1], dtype=F64) / grain**2)
    white = torch.linalg.solve_triangular(torch.linalg.cholesky(expected), samples.T, upper=False).T
    covariance = white.T @ white / draws
    # std error of a whitened entry: sqrt(1 / N) off the diagonal, sqrt(2 / N) on it; 64 dims, 5 std errors
    assert float((covariance - torch.eye(A.shape[1], dtype=F64)).abs().max()) < 5 * (2 / draws) ** 0.5
    assert float(white.mean(0).abs().max()) < 5 / draws**0.5


def test_grain_follows_the_null_space():
    """sr4: the block means of a draw are nearly fixed (measured), the detail inside blocks has std ~ s."""
    physics = operators.build("sr4", (1, 64, 64), dtype=F64)
    d = posterior_grain(torch.zeros((1, 1, 64, 64), dtype=F64), physics, grain=0.02, noise_sigma=0.01,
                        generator=torch.Generator().manual_seed(1))
    means = physics.A(d)
    assert float(means.std()) < 0.02 / 4  # prior std of a 4x4 mean is s/4; the measurement shrinks it further
    assert float((d - physics.A_adjoint(means) * 16).std()) == pytest.approx(0.02, rel=0.05)


def test_bad_values_are_refused():
    physics = operators.build("sr2", (1, 4, 4))
    with pytest.raises(ValueError, match="grain"):
        posterior_grain(torch.zeros(1, 1, 4, 4), physics, grain=0.0, noise_sigma=0.01, generator=torch.Generator())
    for value in (-0.1, 1.5, 1e300):  # 1e300 was an OverflowError traceback (grain**2)
        with pytest.raises(ValueError, match=r"grain is a std in \[0, 1\] image units"):
            configure("drs", {"grain": value})
    for value in (-0.1, 2.0, 1e300):
        with pytest.raises(ValueError, match=r"detail_sigma is a std in \[0, 1\] image units"):
            configure("drs", {"detail_sigma": value})


@pytest.mark.parametrize("name", ["drs", "admm", "hqs"])
def test_solvers_add_one_seeded_draw(name):
    """The solver's result is its point estimate plus one draw from the same generator, with noise floored at 0.01."""
    physics = operators.build("sr2", (1, 8, 10), dtype=F64)
    truth = torch.rand((1, 1, 8, 10), generator=torch.Generator().manual_seed(2), dtype=F64)
    y = physics.A(truth)  # noiseless: the draw uses the solvers' floor 0.01
    common = dict(iterations=5, sigma_start=0.1, sigma_end=0.02)

    def solve(grain: float, seed: int) -> torch.Tensor:
        algorithm = configure(name, dict(grain=grain, **common))
        return algorithm.run(y, physics, TikhonovDenoiser(), physics.A_adjoint(y), noise_sigma=0.0,
                            generator=torch.Generator().manual_seed(seed)).x

    point = solve(0.0, 3)
    drawn = solve(0.05, 3)
    expected = posterior_grain(point, physics, grain=0.05, noise_sigma=0.01, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(drawn - point, expected)
    torch.testing.assert_close(solve(0.05, 3), drawn)
    assert not torch.allclose(solve(0.05, 4), drawn)
