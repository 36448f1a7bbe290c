"""RGMDenoiser: shapes (odd sizes), range, z modes, level mapping and top-up noise, generate, stochastic_restore."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pnprgm.denoisers.rgm import RGMDenoiser
from pnprgm.rgm.schedules import DDPMSchedule
from pnprgm.rgm.architectures import build_generator_from_config
from pnprgm.rgm.unet import sized_config

torch.set_num_threads(1)


class Probe(nn.Module):
    """Protocol stub: returns its input and records what it was given."""

    def __init__(self, conditioning="time", T=4, multiple=8, channels=3):
        super().__init__()
        self.nz, self.conditioning = 5, conditioning
        self.schedule = DDPMSchedule(T=T) if conditioning == "time" else None
        self.config = {"channels": channels, "ch_mult": [1] * 4}
        self.size_multiple = multiple
        self.calls = []

    def forward(self, x, level, z):
        assert x.shape[-1] % self.size_multiple == 0 and x.shape[-2] % self.size_multiple == 0
        self.calls.append((x.clone(), level.clone(), z.clone()))
        return x.clamp(-1, 1)


@pytest.fixture(scope="module")
def tiny_time():
    torch.manual_seed(0)
    return build_generator_from_config(sized_config("tiny", nz=8, ch_mult=(1, 2, 2)))


@pytest.mark.parametrize("shape", [(1, 3, 13, 17), (2, 3, 9, 31), (1, 1, 5, 7), (1, 3, 3, 2)])
def test_odd_sizes_keep_their_shape_and_range(tiny_time, shape):
    denoiser = RGMDenoiser(tiny_time)
    x = torch.rand(shape)
    out = denoiser(x, 0.1)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1


def test_fixed_z_is_deterministic_and_fresh_z_varies(tiny_time):
    x = torch.rand(2, 3, 16, 16)
    fixed = RGMDenoiser(tiny_time, z="fixed", seed=3)
    torch.testing.assert_close(fixed(x, 0.2), fixed(x, 0.2), rtol=0, atol=0)
    assert not torch.equal(fixed(x, 0.2), RGMDenoiser(tiny_time, z="fixed", seed=4)(x, 0.2))
    fresh = RGMDenoiser(tiny_time, z="fresh", seed=3)
    first, second = fresh(x, 0.2), fresh(x, 0.2)
    assert not torch.equal(first, second)
    again = RGMDenoiser(tiny_time, z="fresh", seed=3)
    torch.testing.assert_close(again(x, 0.2), first, rtol=0, atol=0)  # fresh streams are reproducible by seed


def test_time_levels_and_top_up_noise_match_the_training_distribution():
    probe = Probe("time")
    denoiser = RGMDenoiser(probe, seed=0)
    schedule = probe.schedule
    a, s = schedule.signal(), schedule.noise()
    ratio = s / a  # noise std of level j in [-1, 1] units after dividing by a_j
    # sigma exactly at level 2 -> label 1, no extra noise needed; tiny sigma -> level 1 with top-up
    sigma01 = torch.tensor([float(ratio[2]) / 2, 1e-4, 1e3])
    assert denoiser.level_for_sigma(2 * sigma01).tolist() == [2, 1, 4]
    x = torch.full((3, 3, 64, 64), 0.5)
    noisy = x + sigma01.view(-1, 1, 1, 1) * torch.randn_like(x) * torch.tensor([1.0, 1.0, 0.0]).view(-1, 1, 1, 1)
    denoiser(noisy, sigma01)
    given, level, _ = probe.calls[-1]
    assert level.tolist() == [1, 0, 3]
    # the generator input is a_j x0 + (total std s_j) noise, x0 = 0 in [-1, 1] units
    assert float(given[0].mean()) == pytest.approx(0.0, abs=0.02)
    assert float(given[0].std()) == pytest.approx(float(s[2]), rel=0.03)
    assert float(given[1].std()) == pytest.approx(float(s[1]), rel=0.03)


def test_nearest_mode_adds_no_noise():
    probe = Probe("time")
    denoiser = RGMDenoiser(probe, level_mode="nearest")
    x = torch.rand(1, 3, 8, 8)
    denoiser(x, 0.3)
    given, level, _ = probe.calls[-1]
    j = int(level) + 1
    torch.testing.assert_close(given, probe.schedule.signal()[j] * (2 * x - 1))


def test_sigma_conditioning_passes_the_doubled_std_and_pads():
    probe = Probe("sigma", multiple=4, channels=1)
    denoiser = RGMDenoiser(probe)
    x = torch.rand(2, 1, 7, 9)
    out = denoiser(x, torch.tensor([0.05, 0.1]))
    given, level, z = probe.calls[-1]
    assert given.shape == (2, 1, 8, 12) and z.shape == (2, 5)
    torch.testing.assert_close(level, torch.tensor([0.1, 0.2]))
    torch.testing.assert_close(out, x)  # identity probe: padding cropped back exactly
    assert denoiser.stochastic_restore is None


def test_generate_and_stochastic_restore():
    probe = Probe("time")
    denoiser = RGMDenoiser(probe)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(denoiser.generate(x, 2), x)
    assert probe.calls[-1][1].tolist() == [2, 2]
    restore = denoiser.stochastic_restore
    generator = torch.Generator().manual_seed(0)
    out = restore(torch.full((1, 3, 64, 64), 0.5), 1, noise_scale=0.99, generator=generator)
    given, level, _ = probe.calls[-1]
    assert level.tolist() == [0] and out.shape == (1, 3, 64, 64)
    assert float(given.std()) == pytest.approx(0.99 * float(probe.schedule.noise()[1]), rel=0.03)


def test_channel_adaptation_and_deepinv_contract(tiny_time):
    denoiser = RGMDenoiser(tiny_time)
    gray = torch.rand(1, 1, 12, 12)
    assert denoiser(gray, 0.1).shape == gray.shape
    import deepinv

    assert isinstance(denoiser, deepinv.models.Denoiser)
    assert not any(p.requires_grad for p in denoiser.parameters())


def test_a_gray_model_denoises_each_channel_of_a_colour_image_as_the_adapter_does():
    """One channel rule: a gray model keeps a colour image's colour (each channel as a gray image, with its
    image's latent), exactly as :class:`ChannelAdapter` runs any denoiser; a colour model on gray averages back."""
    from pnprgm.denoisers.channels import ChannelAdapter

    torch.manual_seed(1)
    gray_model = build_generator_from_config(sized_config("tiny", channels=1, nz=8, ch_mult=(1, 2),
                                                          conditioning="sigma", output="residual"))
    colour = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    inside = RGMDenoiser(gray_model, seed=3)(colour, 0.1)
    outside = ChannelAdapter(RGMDenoiser(gray_model, seed=3), 1)(colour, 0.1)
    assert inside.shape == colour.shape
    torch.testing.assert_close(inside, outside)
    channel = RGMDenoiser(gray_model, seed=3)(colour[:, 1:2].contiguous(), 0.1)
    assert not torch.allclose(inside[:, 0], inside[:, 1], atol=1e-3)  # not a channel mean copied three times
    assert float((inside[:, 1:2] - channel).abs().max()) < 0.05  # the same network on that channel alone


def test_restore_takes_a_loaded_generator_as_the_model_file_would_make_it(tmp_path):
    """`pnprgm.restore(..., denoiser=pnprgm.training.load_model(path))` crashed with "forward() missing 'z'"."""
    import pnprgm
    from pnprgm import operators
    from pnprgm.rgm.model_file import load_model, save_model

    torch.manual_seed(0)
    generator = build_generator_from_config(sized_config("tiny", channels=3, conditioning="sigma", output="residual",
                                                          sigma_channel=True))
    path = save_model(tmp_path / "model.pt", generator.state_dict(), dict(generator.config), {"name": "denoise"},
                      {"command": "test"})
    x = torch.rand(1, 3, 16, 16)
    A = operators.build("blur:gaussian,sigma=1", (3, 16, 16))
    y = operators.measure(A, x, 0.02, seed=0)
    by_path = pnprgm.restore(y, A, noise_sigma=0.02, denoiser=str(path), iterations=2, seed=3)
    by_module = pnprgm.restore(y, A, noise_sigma=0.02, denoiser=load_model(path), iterations=2, seed=3)
    torch.testing.assert_close(by_module, by_path)


def test_restore_with_a_plain_deepinv_blur_starts_from_the_measurement_not_its_pseudo_inverse():
    """A deepinv BlurFFT has no initial_estimate: starting from A^+ y (5.4 dB) gave 12.3 dB from a 21.8 dB input."""
    import deepinv as dinv

    import pnprgm
    from pnprgm.metrics.fidelity import psnr

    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 48), indexing="ij")
    x = torch.stack([0.5 + 0.4 * torch.sin(6 * xx + c) * torch.cos(5 * yy) for c in range(3)])[None]
    A = dinv.physics.BlurFFT(img_size=(3, 48, 48), filter=torch.ones(1, 1, 5, 5) / 25)
    y = A(x) + 0.02 * torch.randn_like(x)
    restored = pnprgm.restore(y, A, noise_sigma=0.02, denoiser="nlm", iterations=4)
    assert float(psnr(restored, x)) > float(psnr(y.clamp(0, 1), x)) + 1
    assert pnprgm.training.load_model is not None  # subpackages reachable as attributes, as the docstring shows
