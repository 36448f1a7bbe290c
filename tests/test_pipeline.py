"""The denoiser pipeline and the restoration's split of parameters: solvers get a plain denoiser and their own
settings; the wrappers, their order and the post-processing live outside them."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from pnprgm import operators
from pnprgm.denoisers.detail import DetailPreservingDenoiser
from pnprgm.denoisers.pipeline import DenoiserSettings, ScaledLevelDenoiser, denoiser_pipeline
from pnprgm.denoisers.symmetry import SymmetrizedDenoiser
from pnprgm.denoisers.tiled import TiledDenoiser
from pnprgm.dithering import DitherSettings
from pnprgm.errors import UserError
from pnprgm.restoration import configure
from pnprgm.solvers.base import PnPConfig

pytestmark = pytest.mark.usefixtures("one_thread")


class LevelRecorder(torch.nn.Module):
    """A lopsided denoiser (not turn-equivariant) that records the levels it is called at."""

    def __init__(self):
        super().__init__()
        self.levels: list[float] = []

    def forward(self, x, sigma):
        self.levels.append(float(torch.as_tensor(sigma).flatten()[0]))
        return 0.5 * x + 0.5 * torch.roll(x, 1, dims=-1)


def test_default_settings_return_the_model_itself():
    """No wrapper by default: a wrapper would hide a model's own attributes (RGM's ``stochastic_restore``)."""
    model = LevelRecorder()
    assert DenoiserSettings().is_identity
    assert denoiser_pipeline(model) is model
    assert denoiser_pipeline(model, DenoiserSettings(), tile=None) is model


def test_wrappers_nest_in_order_and_strength_scales_the_level_every_wrapper_sees():
    """strength outermost: the detail blend weighs with the level the model receives (strength * sigma_k)."""
    model = LevelRecorder()
    settings = DenoiserSettings(symmetry="random", detail_sigma=0.05, strength=0.5)
    pipeline = denoiser_pipeline(model, settings, tile=32, generator=torch.Generator().manual_seed(0))
    assert isinstance(pipeline, ScaledLevelDenoiser)
    assert isinstance(pipeline.denoiser, DetailPreservingDenoiser)
    assert isinstance(pipeline.denoiser.denoiser, SymmetrizedDenoiser)
    assert isinstance(pipeline.denoiser.denoiser.denoiser, TiledDenoiser)
    x = torch.rand((1, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    pipeline(x, 0.2)
    assert model.levels == pytest.approx([0.1])
    direct = DetailPreservingDenoiser(lambda v, s: torch.zeros_like(v), 0.05)
    scaled = ScaledLevelDenoiser(direct, 0.5)(x, 0.2)
    torch.testing.assert_close(scaled, direct(x, 0.1))  # the blend used 0.1, not 0.2


@pytest.mark.parametrize("values, message", [({"symmetry": "mirror"}, "symmetry"), ({"strength": 0}, "strength"),
                                             ({"detail_sigma": -1}, "detail_sigma"), ({"grain": -0.1}, "grain"),
                                             ({"iterations": 0}, "iterations"), ({"lamda": 0.2}, "unknown parameter")])
def test_bad_values_are_one_line_errors_naming_the_parameter(values, message):
    with pytest.raises(UserError, match=message) as err:
        configure("drs", values)
    assert "\n" not in str(err.value)


def test_unknown_key_lists_every_valid_parameter():
    with pytest.raises(UserError) as err:
        configure("hqs", {"lamda": 0.2})
    for key in ("lam", "iterations", "symmetry", "strength", "detail_sigma", "grain"):
        assert key in str(err.value)


@pytest.mark.parametrize("key, value", [("symmetry", "random"), ("strength", 0.8), ("detail_sigma", 0.01), ("grain", 0.02)])
def test_rgm_drs_refuses_wrappers_in_one_line(key, value):
    """RGM's loop needs its model unwrapped (its own stochastic step) and its estimate is already one draw."""
    with pytest.raises(UserError, match=f"{key} does not apply to the rgm-drs solver") as err:
        configure("rgm-drs", {key: value, "iterations": 3})
    assert "\n" not in str(err.value)
    assert configure("rgm-drs", {"iterations": 3}).params()["iterations"] == 3


def test_parameters_go_to_their_settings_and_the_record_has_them_all():
    algorithm = configure("admm", {"lam": 0.3, "symmetry": "average", "strength": 0.9, "grain": 0.01})
    assert algorithm.solver.config.lam == 0.3
    assert algorithm.denoiser == DenoiserSettings(symmetry="average", strength=0.9)
    assert algorithm.post == DitherSettings(grain=0.01)
    assert not hasattr(algorithm.solver.config, "symmetry")  # solvers hold iteration settings only
    assert set(algorithm.params()) == {f for f in (*PnPConfig.__dataclass_fields__, "rescale_dual", "symmetry",
                                                   "detail_sigma", "strength", "grain")}


def test_run_passes_the_pipeline_to_the_solver_and_dithers_after():
    physics = operators.build("sr2", (1, 8, 8), dtype=torch.float64)
    y = physics.A(torch.rand((1, 1, 8, 8), generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    model = LevelRecorder()
    result = configure("hqs", {"iterations": 3, "sigma_start": 0.2, "sigma_end": 0.05, "strength": 0.5}).run(
        y, physics, model, physics.A_adjoint(y), noise_sigma=0.05)
    assert model.levels == pytest.approx([0.5 * r.sigma for r in result.trace])
    point = configure("hqs", {"iterations": 3}).run(y, physics, LevelRecorder(), physics.A_adjoint(y), noise_sigma=0.05,
                                                   generator=torch.Generator().manual_seed(4)).x
    dithered = configure("hqs", {"iterations": 3, "grain": 0.05}).run(
        y, physics, LevelRecorder(), physics.A_adjoint(y), noise_sigma=0.05, generator=torch.Generator().manual_seed(4)).x
    assert 0.02 < float((dithered - point).std()) < 0.06


def test_solvers_listing_shows_the_pipeline_settings():
    from pnprgm.cli.main import app

    out = CliRunner().invoke(app, ["solvers"]).output
    assert "denoiser calls (drs, admm, hqs)" in out and "post-processing (drs, admm, hqs)" in out
    for key in ("symmetry", "detail_sigma", "strength", "grain"):
        assert f"    {key} = " in out
