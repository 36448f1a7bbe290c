"""Dihedral symmetrisation: the group average is equivariant and equals the hand-written 8-term mean; the random
mode applies one group element per call, seeded; solvers take it as a config value."""
from __future__ import annotations

import pytest
import torch

from pnprgm import operators
from pnprgm import solvers
from pnprgm.restoration import configure
from pnprgm.denoisers.symmetry import SymmetrizedDenoiser, symmetrize
from pnprgm.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


def group() -> list[tuple]:
    """The 8 elements as (turns, flip) with T(x) = rot90(flip(x), turns)."""
    return [(turns, flip) for turns in range(4) for flip in (False, True)]


def apply(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    return torch.rot90(x.flip(-1) if flip else x, turns, dims=(-2, -1))


def invert(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, -turns, dims=(-2, -1))
    return x.flip(-1) if flip else x


class LopsidedDenoiser(torch.nn.Module):
    """Not equivariant: weights pixels by their position and the image by its own sigma."""

    def forward(self, x, sigma):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).flatten().expand(x.shape[0]).view(-1, 1, 1, 1)
        ramp = torch.linspace(0.5, 1.5, x.shape[-1], dtype=x.dtype)
        rows = torch.linspace(1.0, 2.0, x.shape[-2], dtype=x.dtype)[:, None]
        return x * ramp * rows * (1 + sigma) + torch.roll(x, 1, dims=-1) * sigma


def image(shape=(2, 3, 6, 9)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def hand_average(denoiser, x, sigma) -> torch.Tensor:
    return sum(invert(denoiser(apply(x, t, f), sigma), t, f) for t, f in group()) / 8


@pytest.mark.parametrize("sigma", [0.1, torch.tensor([0.05, 0.3])])
def test_average_is_the_eight_term_group_mean_with_per_image_sigma(sigma):
    x, lopsided = image(), LopsidedDenoiser()
    out = SymmetrizedDenoiser(lopsided, "average")(x, sigma)
    assert out.shape == x.shape  # non-square: turned copies come back to the input's shape
    assert torch.allclose(out, hand_average(lopsided, x, sigma), atol=1e-12)


@pytest.mark.parametrize("turns,flip", group())
def test_average_commutes_with_every_group_element(turns, flip):
    x = image((1, 1, 8, 8))
    symmetric = SymmetrizedDenoiser(LopsidedDenoiser(), "average")
    assert torch.allclose(symmetric(apply(x, turns, flip), 0.2), apply(symmetric(x, 0.2), turns, flip), atol=1e-12)


def test_random_applies_one_group_element_per_call_and_repeats_with_the_seed():
    x, lopsided = image(), LopsidedDenoiser()
    candidates = [invert(lopsided(apply(x, t, f), 0.1), t, f) for t, f in group()]

    def draws(seed: int) -> list[int]:
        wrapped = SymmetrizedDenoiser(lopsided, "random", generator=torch.Generator().manual_seed(seed))
        picked = []
        for _ in range(48):
            out = wrapped(x, 0.1)
            matches = [i for i, c in enumerate(candidates) if torch.allclose(out, c, atol=1e-12)]
            assert len(matches) == 1
            picked += matches
        return picked

    first = draws(0)
    assert first == draws(0)
    assert len(set(first)) == 8  # every element is reachable
    assert first != draws(1)


def test_none_returns_the_denoiser_itself_and_unknown_names_are_refused():
    lopsided = LopsidedDenoiser()
    assert symmetrize(lopsided, "none") is lopsided
    with pytest.raises(UserError, match="symmetry"):
        symmetrize(lopsided, "mirror")
    with pytest.raises(UserError, match="symmetry"):
        configure("drs", {"symmetry": "mirror"})
    with pytest.raises(UserError, match="symmetry do"):  # RGM's loop takes its model unwrapped
        configure("rgm-drs", {"symmetry": "random"})


@pytest.mark.parametrize("name", ["drs", "admm", "hqs"])
def test_solvers_symmetrise_their_denoiser_as_configured(name):
    physics = operators.build("blur:gaussian,sigma=1", (1, 6, 9), dtype=torch.float64)
    x = image((1, 1, 6, 9))
    y = physics.A(x)
    lopsided = LopsidedDenoiser()

    def run(symmetry: str, seed: int = 0) -> torch.Tensor:
        algorithm = configure(name, {"iterations": 3, "sigma_start": 0.2, "symmetry": symmetry})
        return algorithm.run(y, physics, lopsided, y, noise_sigma=0.01,
                            generator=torch.Generator().manual_seed(seed)).x

    assert torch.equal(run("random"), run("random"))
    assert not torch.allclose(run("random"), run("none"))
    # the config value wires in the same wrapper as symmetrising the denoiser by hand
    averaged = configure(name, {"iterations": 1, "sigma_start": 0.2, "symmetry": "average"})
    plain = solvers.build(name, {"iterations": 1, "sigma_start": 0.2})
    symmetric = SymmetrizedDenoiser(lopsided, "average")
    expected = plain.solve(y, physics, symmetric, y, noise_sigma=0.01).x
    assert torch.allclose(averaged.run(y, physics, lopsided, y, noise_sigma=0.01).x, expected, atol=1e-12)
