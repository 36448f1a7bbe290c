"""restore(): every solver beats the operator's initial estimate on the main tasks; sizes; records; CLI."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from skimage import data

from pnprgm import io, metrics, operators
from pnprgm.cli.main import app
from pnprgm.errors import UserError
from pnprgm.restoration import estimate_noise, prepare_restoration, restore, restore_samples

TASKS = ["sr4", "blur:gaussian,sigma=2", "mask:random,rate=0.5,seed=0"]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR (dB) over a batch, by pnprgm's metric (both images clamped to [0, 1])."""
    return float(metrics.psnr(a, b).mean())


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A 64x64 colour crop of skimage's coffee (a public photo: fine for tests, never trained on)."""
    image = torch.from_numpy(data.coffee()[100:228:2, 200:328:2].copy()).permute(2, 0, 1).float() / 255
    return image.contiguous()


@pytest.mark.parametrize("spec", TASKS)
@pytest.mark.parametrize("solver", ["drs", "admm", "hqs"])
def test_restoration_beats_initial_estimate(photo, spec, solver):
    physics = operators.build(spec, tuple(photo.shape))
    y = operators.measure(physics, photo[None], 0.01, seed=0)
    baseline = physics.initial_estimate(y)
    x = restore(y, physics, denoiser="tv", solver=solver, noise_sigma=0.01)
    assert x.shape == photo[None].shape
    gain = psnr(x, photo[None]) - psnr(baseline, photo[None])
    assert gain > 0.5, f"{solver} on {spec}: only {gain:+.2f} dB over the initial estimate"


@pytest.mark.parametrize("solver", ["drs", "admm", "hqs"])
def test_colorization_keeps_the_measured_luminance(photo, solver):
    """A gray image is a fixed point of TV (colour only adds variation), so TV cannot colorize: what every solver
    must do is stay consistent with the measured gray levels and no worse than the initial estimate. (Learned
    colour priors are measured by the benchmark.)"""
    physics = operators.build("gray", tuple(photo.shape))
    y = operators.measure(physics, photo[None], 0.01, seed=0)
    baseline = physics.initial_estimate(y)
    x = restore(y, physics, denoiser="tv", solver=solver, noise_sigma=0.01)
    assert x.shape == photo[None].shape
    assert (physics.A(x) - y).pow(2).mean().sqrt() < 1.5 * 0.01  # within the noise
    assert psnr(x, photo[None]) > psnr(baseline, photo[None]) - 0.05


@pytest.mark.parametrize("shape", [(3, 37, 53), (1, 31, 20)])
def test_any_size_in_same_size_out(shape):
    image = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    physics = operators.build("sr4", shape)
    y = physics.A(image[None])[0]
    x = restore(y, physics, denoiser="tikhonov", iterations=2)
    assert x.shape == shape


def test_trace_and_settings_are_returned(photo):
    physics = operators.build("sr4", tuple(photo.shape))
    y = physics.A(photo[None])
    x, result, settings = restore(y, physics, denoiser="tikhonov", solver="hqs", ground_truth=photo, return_trace=True, iterations=5)
    assert len(result.trace) == 5 and all(r.psnr is not None for r in result.trace)
    assert settings.solver == "hqs" and settings.preset == "sr-hqs" and settings.params["iterations"] == 5


@pytest.mark.parametrize("channels", [1, 3])
def test_settings_name_the_model_file_that_ran(channels):
    """The record names the model behind a learned denoiser: the preset's family member for the input's channels,
    the default for ``default`` elsewhere, the file for a path; classical denoisers have none."""
    from pnprgm import presets
    from pnprgm.rgm import models

    x = torch.rand(1, channels, 16, 16, generator=torch.Generator().manual_seed(0))
    physics = operators.build("sr2", (channels, 16, 16))
    y = physics.A(x)
    family = presets.registry.get("sr-drs").denoiser
    _, _, settings = restore(y, physics, noise_sigma=0.01, iterations=1, return_trace=True)
    member = models.family_model(family, channels)
    assert settings.denoiser == family and member.channels == channels
    assert settings.model == {"name": member.name, "sha256": member.sha256}
    physics = operators.build("identity", (channels, 16, 16))
    _, _, settings = restore(x, physics, noise_sigma=0.01, return_trace=True)
    assert settings.model["name"] == models.default_model(channels).name
    path = models.default_model(channels).path
    _, _, settings = restore(x, physics, denoiser=str(path), noise_sigma=0.01, return_trace=True)
    assert settings.model == {"name": str(path), "sha256": io.sha256_file(path)}
    _, _, settings = restore(x, physics, denoiser="tikhonov", noise_sigma=0.01, return_trace=True)
    assert settings.model is None


def test_noise_is_estimated_when_unknown(photo):
    physics = operators.build("identity", tuple(photo.shape))
    y = operators.measure(physics, photo[None], 0.1, seed=0)
    _, _, settings = restore(y, physics, denoiser="tikhonov", noise_sigma=None, return_trace=True)
    assert settings.noise_estimated and 0.09 < settings.noise_sigma < 0.115


@pytest.mark.parametrize("sigma", [0.05, 0.1, 0.2])
def test_noise_estimate_on_pure_noise_is_the_std(sigma):
    """On a flat image the MAD rule recovers the std (to the sampling error of a median over 64k samples)."""
    noise = sigma * torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(1))
    assert estimate_noise(0.5 + noise) == pytest.approx(sigma, rel=0.02)


def test_samples_give_mean_and_std(photo):
    physics = operators.build("mask:random,rate=0.5,seed=0", tuple(photo.shape))
    y = physics.A(photo[None])
    drawn = restore_samples(y, physics, samples=3, denoiser="tikhonov", solver="rgm-drs", iterations=3)
    assert len(drawn.images) == 3 and drawn.std.shape == drawn.mean.shape
    assert drawn.std.max() > 0, "re-noising with different seeds must give different samples"
    assert torch.allclose(drawn.mean, torch.stack(drawn.images).mean(0))
    torch.testing.assert_close(drawn.std, torch.stack(drawn.images).std(0, unbiased=False))  # the population std


def test_a_prepared_restoration_runs_what_restore_runs(photo):
    """prepare_restoration makes restore's choices and builds the denoiser once; run(seed) is restore(..., seed)
    bitwise, whichever seeds ran before (the random streams restart from each run's seed)."""
    physics = operators.build("mask:random,rate=0.5,seed=0", tuple(photo.shape))
    y = operators.measure(physics, photo[None], 0.01, seed=0)
    args = dict(denoiser="tikhonov", solver="rgm-drs", noise_sigma=0.01, iterations=3)
    first, second = (restore(y, physics, seed=seed, **args) for seed in (1, 2))
    assert not torch.equal(first, second)  # re-noising draws from the seed: the comparison below can fail
    plan = prepare_restoration(y, physics, seed=1, **args)
    x2, _, settings = plan.run(seed=2)
    x1, _, _ = plan.run(seed=1)
    assert torch.equal(x1, first) and torch.equal(x2, second)
    assert settings == restore(y, physics, seed=2, return_trace=True, **args)[2]
    sr = operators.build("sr4", tuple(photo.shape))  # the default denoiser: the sr preset's shipped model
    y = operators.measure(sr, photo[None], 0.01, seed=0)
    x, _, settings = prepare_restoration(y[0], sr, noise_sigma=0.01, seed=3, iterations=2).run()  # the plan's seed
    expected, _, restored = restore(y[0], sr, noise_sigma=0.01, seed=3, iterations=2, return_trace=True)
    assert torch.equal(x, expected) and x.dim() == 3 and settings == restored and settings.preset == "sr-drs"


def test_tiled_restoration_is_close_to_whole(photo):
    physics = operators.build("blur:gaussian,sigma=1", tuple(photo.shape))
    y = physics.A(photo[None])
    whole = restore(y, physics, denoiser="tikhonov", iterations=3)
    tiled = restore(y, physics, denoiser="tikhonov", iterations=3, tile=32)
    assert psnr(tiled, whole) > 35


# -- CLI ------------------------------------------------------------------------------------------------

def test_cli_degrade_then_restore_with_sidecar(tmp_path, photo):
    source = tmp_path / "photo.png"
    io.write_image(source, photo)
    runner = CliRunner()
    result = runner.invoke(app, ["degrade", str(source), "--operator", "sr2", "--noise", "0.01", "--seed", "3", "-o", str(tmp_path / "meas")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["restore", str(tmp_path / "meas"), "-o", str(tmp_path / "out"), "--denoiser", "tv", "--iters", "4", "-q"])
    assert result.exit_code == 0, result.output
    restored = io.read_image(tmp_path / "out" / "photo.png")
    assert restored.shape == photo.shape
    record = json.loads((tmp_path / "out" / "photo.json").read_text())
    assert record["operator"].startswith("sr:factor=2") and record["settings"]["noise_sigma"] == pytest.approx(0.01)
    assert record["settings"]["params"]["iterations"] == 4 and len(record["trace"]) == 4
    assert record["versions"]["torch"] and record["job"]["seed"] == 0
    assert record["image_shape"] == list(photo.shape) and record["measurement_shape"] == [3, 32, 32]


def test_cli_bad_file_is_reported_and_others_restored(tmp_path, photo):
    good = tmp_path / "in" / "good.png"
    io.write_image(good, photo)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png at all")
    runner = CliRunner()
    result = runner.invoke(app, ["restore", str(tmp_path / "in"), "--operator", "blur:gaussian,sigma=1", "--denoiser", "tikhonov",
                                 "--iters", "2", "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 1
    assert "broken.png" in result.output and "Traceback" not in result.output
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "broken.png").exists()
    assert not list((tmp_path / "out").glob("*.tmp")), "no partial files"


def test_cli_never_overwrites_the_input(tmp_path, photo):
    source = tmp_path / "photo.png"
    io.write_image(source, photo)
    before = source.read_bytes()
    result = CliRunner().invoke(app, ["restore", str(source), "--operator", "identity", "--denoiser", "tikhonov", "-o", str(tmp_path), "-q"])
    assert result.exit_code == 1 and "refusing to overwrite" in result.output
    assert source.read_bytes() == before


def test_cli_samples_write_uncertainty_map(tmp_path, photo):
    source = tmp_path / "masked.png"
    physics = operators.build("mask:random,rate=0.5,seed=0", tuple(photo.shape))
    io.write_image(source, physics.A(photo[None])[0])
    result = CliRunner().invoke(app, ["restore", str(source), "--operator", "mask:random,rate=0.5,seed=0", "--denoiser", "tikhonov",
                                      "--solver", "rgm-drs", "--iters", "2", "--samples", "3", "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    std_map = io.read_image(tmp_path / "out" / "masked_std.png")
    assert std_map.shape[0] == 1 and std_map.max() == pytest.approx(1.0)
    white = json.loads((tmp_path / "out" / "masked.json").read_text())["std_map"]["white_is_std"]
    # the map is the samples' per-pixel std (averaged over channels) scaled by white_is_std: the same restoration
    # through the library gives it
    drawn = restore_samples(io.read_image(source)[None], physics, samples=3, denoiser="tikhonov", solver="rgm-drs",
                            iterations=2, noise_sigma=None, seed=0)
    expected = drawn.std.mean(1)[0]
    assert white == pytest.approx(float(expected.max()), rel=1e-5)
    assert float((std_map[0] * white - expected).abs().max()) <= white / 255
    torch.testing.assert_close(io.read_image(tmp_path / "out" / "masked.png"), drawn.mean[0].clamp(0, 1),
                               atol=1 / 255, rtol=0)


def test_cli_unknown_operator_is_one_line(tmp_path, photo):
    source = tmp_path / "p.png"
    io.write_image(source, photo)
    result = CliRunner().invoke(app, ["restore", str(source), "--operator", "blurr", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "Did you mean 'blur'?" in result.output and "Valid:" in result.output, result.output


@pytest.mark.parametrize("solver", ["drs", "admm", "hqs"])
@pytest.mark.parametrize("spec", [*TASKS, "gray"])
def test_shipped_rgm_denoiser_beats_initial_estimate(photo, spec, solver):
    """The default model (what `pnprgm restore` uses) through the public API, on a photo it was not trained on."""
    from pnprgm.rgm import models

    if not models.registry.names():
        pytest.skip("no shipped models in this checkout")
    physics = operators.build(spec, tuple(photo.shape))
    y = operators.measure(physics, photo[None], 0.01, seed=0)
    baseline = physics.initial_estimate(y)
    x = restore(y, physics, noise_sigma=0.01, seed=0, solver=solver)
    gain = psnr(x, photo[None]) - psnr(baseline, photo[None])
    assert gain > 0.5, f"rgm in {solver} on {spec}: only {gain:+.2f} dB over the initial estimate"


@pytest.mark.parametrize("solver", ["drs", "admm", "hqs"])
@pytest.mark.parametrize("spec", [*TASKS, "gray"])
def test_cli_restores_every_task_with_the_shipped_model(tmp_path, photo, spec, solver):
    """`pnprgm degrade` then `pnprgm restore --solver S` with the default denoiser: better than the initial estimate."""
    from pnprgm.rgm import models

    if not models.registry.names():
        pytest.skip("no shipped models in this checkout")
    io.write_image(tmp_path / "photo.png", photo)
    runner = CliRunner()
    result = runner.invoke(app, ["degrade", str(tmp_path / "photo.png"), "--operator", spec, "--noise", "0.01",
                                 "-o", str(tmp_path / "meas")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["restore", str(tmp_path / "meas"), "--solver", solver, "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    from pnprgm.measurement import load_measurement

    measurement = load_measurement(tmp_path / "meas" / "photo.png")
    baseline = measurement.operator.initial_estimate(measurement.y)
    restored = io.read_image(tmp_path / "out" / "photo.png")[None]
    gain = psnr(restored, photo[None]) - psnr(baseline, photo[None])
    assert gain > 0.5, f"CLI rgm in {solver} on {spec}: only {gain:+.2f} dB over the initial estimate"


def test_official_configs_and_tiles_refuse_what_would_not_be_rgm():
    """An official-* preset needs a model with time levels; --tile with RGM's loop on such a model would drop its
    stochastic step: both are one-line UserErrors, and the same jobs with a fitting model or solver run."""
    from pnprgm.denoisers.rgm import RGMDenoiser
    from pnprgm.rgm.architectures import build_generator_from_config
    from pnprgm.rgm.unet import sized_config

    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    physics = operators.build("sr2", (3, 16, 16))
    y = physics.A(x)
    with pytest.raises(UserError, match="has none; give a time-conditioned model"):
        restore(y, physics, noise_sigma=0.01, preset="official-sr4", iterations=1)  # the default DRUNet: no levels
    timed = RGMDenoiser(build_generator_from_config(sized_config("tiny", nz=8, ch_mult=(1, 2))))
    out = restore(y, physics, denoiser=timed, noise_sigma=0.01, preset="official-sr4", iterations=1)
    assert out.shape == x.shape
    with pytest.raises(UserError, match="--tile would drop RGM's stochastic restoration step"):
        restore(y, physics, denoiser=timed, noise_sigma=0.01, solver="rgm-drs", tile=32, iterations=1)
    tiled = restore(y, physics, denoiser=timed, noise_sigma=0.01, solver="drs", tile=32, iterations=1)
    assert tiled.shape == x.shape


@pytest.mark.parametrize("make, kwargs, message", [
    (lambda y: y.numpy(), {}, "not ndarray (torch.from_numpy"),
    (lambda y: (y * 255).round().to(torch.uint8), {}, "is a torch.uint8 tensor"),
    (lambda y: y * 255, {}, "too far outside [0, 1]"),
    (lambda y: y * 255, {"noise_sigma": None}, "too far outside [0, 1]"),
    (lambda y: torch.where(torch.arange(y.numel()).view(y.shape) == 5, float("nan"), y), {}, "NaN or infinite"),
    (lambda y: y[0], {}, "got shape (16, 16)"),
    (lambda y: y[None, None], {}, "got shape (1, 1, 3, 16, 16)"),
    (lambda y: y[None][:0], {}, "got shape (0, 3, 16, 16)"),
    (lambda y: y[:1], {}, "but the operator measures (3, 16, 16)"),
    (lambda y: y, {"seed": 2**70}, "seed must be an integer between 0 and"),
    (lambda y: y, {"seed": 1.5}, "seed must be an integer between 0 and"),
    (lambda y: y, {"tile": 8}, "tile must be an integer of at least 32"),
    (lambda y: y, {"tile": 64.0}, "tile must be an integer of at least 32"),
])
def test_the_api_names_a_bad_measurement_or_argument(make, kwargs, message):
    """The API used to return an all-white image for uint8 or 0-255 input, all-NaN for one NaN pixel, and internal
    errors (AttributeError, MKL FFT, manual_seed) for the rest."""
    y = torch.rand((3, 16, 16), generator=torch.Generator().manual_seed(0))
    with pytest.raises(UserError, match=re.escape(message)):
        restore(make(y), "sr4", image_shape=(3, 64, 64), denoiser="tikhonov", iterations=1, **kwargs)
    noisy = y + 0.3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))  # noise leaves [0, 1]: fine
    assert restore(noisy, "sr4", image_shape=(3, 64, 64), denoiser="tikhonov", iterations=1, noise_sigma=0.3,
                   seed=np.int64(3)).shape == (3, 64, 64)


def test_tile_is_refused_for_a_model_whose_noise_image_would_repeat_in_every_tile():
    from pnprgm.denoisers.rgm import RGMDenoiser
    from pnprgm.restoration import _check_rgm_use
    from pnprgm.rgm.architectures import build_generator_from_config
    from pnprgm.rgm.unet import sized_config

    def wrapped(noise_input):
        return RGMDenoiser(build_generator_from_config(sized_config(
            "tiny", channels=3, conditioning="sigma", output="residual", noise_input=noise_input)))

    with pytest.raises(UserError, match="repeat the same noise image in every tile"):
        _check_rgm_use(wrapped(True), preset=None, solver="drs", tile=64)
    _check_rgm_use(wrapped(True), preset=None, solver="drs", tile=None)
    _check_rgm_use(wrapped(False), preset=None, solver="drs", tile=64)


def test_a_diverged_restoration_is_an_error_not_a_black_image():
    """clamp(0, 1) turns NaN into 0: a NaN estimate was written as an all-black 'restoration'."""
    from deepinv.models import Denoiser

    from pnprgm.errors import UserError
    from pnprgm.restoration import restore

    class Broken(Denoiser):
        def forward(self, x, sigma, *args, **kwargs):
            return torch.full_like(x, float("nan"))

    y = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(UserError, match="NaN or infinite"):
        restore(y, "identity", image_shape=(3, 16, 16), denoiser=Broken(), noise_sigma=0.05, iterations=2)
    assert restore(y, "identity", image_shape=(3, 16, 16), denoiser="tikhonov", noise_sigma=0.05,
                   iterations=2).isfinite().all()


def test_samples_from_the_largest_seed_wrap_instead_of_failing():
    """--seed 2**63-1 --samples 2 failed: the second sample's seed was out of range."""
    from pnprgm.config import MAX_SEED
    from pnprgm.restoration import restore, restore_samples, sample_seed

    assert sample_seed(MAX_SEED, 1) == 0 and sample_seed(5, 2) == 7
    y = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    # a denoiser whose output depends on the seed (its latent z), so that the seeds are told apart
    same = dict(image_shape=(3, 16, 16), denoiser="unet-denoiser-color", noise_sigma=0.05, iterations=2)
    found = restore_samples(y, "identity", samples=2, seed=MAX_SEED, **same)
    assert torch.equal(found.images[1], restore(y, "identity", seed=0, **same))
    assert not torch.equal(found.images[1], restore(y, "identity", seed=1, **same))


def test_noise_estimate_skips_missing_pixels():
    """Missing pixels (zeros beside measured values: 30 % here) read as noise far above the true 0.02; counting
    only the 2x2 blocks measured whole recovers it, for PnP restores too; too few such blocks is an error."""
    from pnprgm.restoration import observed_pixels

    physics = operators.build("mask:random,rate=0.3,seed=0", (3, 256, 256))
    y = operators.measure(physics, 0.5 * torch.ones(1, 3, 256, 256), 0.02, seed=0)
    assert estimate_noise(y) > 0.1
    assert estimate_noise(y, observed_pixels(physics, y)) == pytest.approx(0.02, rel=0.05)
    blur = operators.build("blur:gaussian,sigma=1", (3, 64, 64))
    assert torch.equal(observed_pixels(blur, blur.A(torch.rand(1, 3, 64, 64))), torch.ones(1, 3, 64, 64))
    assert observed_pixels(operators.build("sr2", (3, 64, 64)), torch.rand(1, 3, 32, 32)) is None
    plan = prepare_restoration(y, physics, denoiser="tikhonov", noise_sigma=None)
    assert plan.estimated and plan.sigma_n == pytest.approx(0.02, rel=0.05)
    sparse = operators.build("mask:random,rate=0.97,seed=0", (1, 16, 16))
    with pytest.raises(UserError, match="too few fully measured 2x2 pixel blocks"):
        prepare_restoration(sparse.A(torch.rand(1, 1, 16, 16)), sparse, denoiser="tikhonov", noise_sigma=None)
