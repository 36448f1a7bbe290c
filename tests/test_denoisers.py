"""Denoiser contract, parametrised over the registry: shape, range, batch of sigmas, tiling."""
from __future__ import annotations

import pytest
import torch

from pnprgm import denoisers
from pnprgm.denoisers.tikhonov import TikhonovDenoiser

AVAILABLE = [n for n in denoisers.registry.names() if n != "bm3d" or __import__("importlib").util.find_spec("bm3d")]


@pytest.mark.parametrize("name", AVAILABLE)
@pytest.mark.parametrize("channels", [1, 3])
def test_denoiser_contract(name, channels):
    denoiser = denoisers.build(name, channels=channels, device="cpu", seed=0)
    clean = torch.linspace(0.2, 0.8, 33 * 21).view(1, 1, 33, 21).expand(2, channels, 33, 21).contiguous()
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    out = denoiser(noisy, torch.tensor([0.1, 0.1]))
    assert out.shape == noisy.shape
    assert torch.isfinite(out).all()
    assert (out - clean).pow(2).mean() < (noisy - clean).pow(2).mean(), "a denoiser must reduce the error"
    single = denoiser(noisy, 0.1)
    assert torch.allclose(single, out, atol=1e-5), "float sigma and (B,) sigma agree"


def test_tikhonov_is_the_prox_of_its_regulariser():
    """D(v, s) minimises 1/(2 s^2)||x - v||^2 + g(x): the gradient vanishes at D(v, s)."""
    denoiser = TikhonovDenoiser(weight=2.0)
    v = torch.rand(1, 3, 12, 9, dtype=torch.float64)
    x = denoiser(v, 0.4).requires_grad_(True)
    objective = ((x - v) ** 2).sum() / (2 * 0.4**2) + denoiser.regulariser(x).sum()
    (grad,) = torch.autograd.grad(objective, x)
    assert grad.abs().max() < 1e-10


def test_tiled_denoiser_matches_whole_for_pointwise_and_blends_seams():
    pointwise = lambda x, sigma: x * 0.5  # noqa: E731 - any pointwise map is tile-invariant
    tiled = denoisers.TiledDenoiser(pointwise, tile=16, overlap=4)
    x = torch.rand(1, 3, 45, 37)
    assert torch.allclose(tiled(x, 0.1), x * 0.5, atol=1e-6)
    smooth = TikhonovDenoiser()
    whole, pieces = smooth(x, 0.05), denoisers.TiledDenoiser(smooth, tile=24, overlap=8)(x, 0.05)
    assert (whole - pieces)[..., 4:-4, 4:-4].abs().max() < 0.02


def test_unknown_denoiser_lists_choices():
    from pnprgm.errors import UserError

    with pytest.raises(UserError, match="unknown denoiser 'nlmm'. Did you mean 'nlm'"):
        denoisers.build("nlmm")


@pytest.mark.parametrize("name, problem", [("nonexist.pt", "nonexist.pt does not exist"),
                                           ("sub/model", "does not exist"),
                                           ("gone.pth#celebahq256", "gone.pth does not exist"),
                                           ("{folder}", "is a folder"),
                                           ("drunet-denoiser-color#x", "is a shipped model, and #CONFIG is only")])
def test_a_missing_model_file_is_named_not_listed(tmp_path, monkeypatch, name, problem):
    """A name meant as a file (suffix, folder part or #CONFIG) that is not one says so, without the list of names."""
    from pnprgm.errors import UserError
    from pnprgm.rgm import models

    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.pt").mkdir()
    name = name.format(folder="folder.pt")
    for check in (lambda: denoisers.check_name(name), lambda: models.resolve(name)):
        with pytest.raises(UserError) as caught:
            check()
        assert problem in str(caught.value) and "Valid choices" not in str(caught.value)
    assert models.missing_file("nlmm") is None  # a plain name stays "unknown denoiser" with its choices


@pytest.mark.parametrize("shape, flat", [((1, 3, 5, 7), False), ((1, 1, 3, 40), False), ((1, 3, 32, 32), True)])
def test_bm3d_takes_tiny_and_flat_images(shape, flat):
    """bm3d raised ValueError below its block size (a traceback that stopped a restore batch), and bm3d_rgb returned
    NaN on a flat colour image (its colour transform divides by each channel's range)."""
    pytest.importorskip("bm3d")
    ramp = torch.linspace(0.2, 0.8, shape[-1]).expand(shape).clone()  # smooth: a denoiser must bring it closer
    x = torch.full(shape, 0.5) if flat else ramp
    noisy = x + 0.05 * torch.randn(shape, generator=torch.Generator().manual_seed(1))
    for given in (x, noisy):
        out = denoisers.build("bm3d")(given, 0.05)
        assert out.shape == x.shape and out.isfinite().all()
    assert (out - x).pow(2).mean() < (noisy - x).pow(2).mean()  # still denoises
