"""Presets: every registered preset builds its solver; tasks are read from operator specs."""
from __future__ import annotations

import pytest

from pnprgm import presets, solvers
from pnprgm.errors import UserError
from pnprgm.restoration import configure


@pytest.mark.parametrize("name", presets.registry.names())
def test_every_preset_builds_its_solver(name):
    preset = presets.registry.get(name)
    assert preset.task in presets.TASKS
    algorithm = configure(preset.solver, dict(preset.params))
    assert isinstance(algorithm.solver, solvers.registry.get(preset.solver))
    recorded = algorithm.params()
    for key, value in preset.params.items():
        assert recorded[key] == value


@pytest.mark.parametrize("task", presets.TASKS)
@pytest.mark.parametrize("solver", ["drs", "admm", "hqs", "rgm-drs"])
def test_every_task_has_a_preset_for_every_solver(task, solver):
    assert f"{task}-{solver}" in presets.registry


@pytest.mark.parametrize("spec,task", [
    ("sr4", "sr"), ("sr:factor=3,kernel=bicubic", "sr"), ("blur:gaussian,sigma=2", "deblur"),
    ("blur:gaussian,sigma=1.6+sr2", "sr"), ("mask:random,rate=0.5", "inpaint"), ("gray", "colorize"), ("identity", "denoise"),
])
def test_task_of_spec(spec, task):
    assert presets.task_of_spec(spec) == task


def test_preset_for_another_solver_is_refused():
    with pytest.raises(UserError, match="is for solver 'rgm-drs'"):
        presets.resolve("official-sr4", solver="drs", spec="sr4")


@pytest.mark.parametrize("name", [n for n in presets.registry.names() if presets.registry.get(n).denoiser])
def test_a_preset_model_is_a_shipped_denoiser(name):
    from pnprgm.rgm import models

    model = presets.registry.get(name).denoiser
    if model in models.families():  # a colour and a gray model, picked from the input
        assert {entry.role for entry in models.families()[model].values()} == {"denoiser"}
        return
    assert model in models.registry and models.registry.get(model).role == "denoiser"
    assert models.registry.get(model).channels == 3 or presets.registry.get(name).task != "colorize"


def test_the_preset_model_replaces_only_the_default_denoiser(monkeypatch):
    """restore(): the task's preset model when the default (rgm) is asked for; any explicit choice is kept; the
    record names what ran. The benchmark's PnP methods choose the same."""
    import torch

    from pnprgm import operators
    from pnprgm import denoisers
    from pnprgm.benchmark.methods import PnPMethod
    from pnprgm.restoration import restore

    built = []
    real_build = denoisers.build
    monkeypatch.setattr(denoisers, "build", lambda name, **kw: built.append(name) or real_build("tikhonov", **kw))
    physics = operators.build("gray", (3, 16, 16))
    y = operators.measure(physics, torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), 0.01, seed=0)
    preset_model = presets.resolve(None, solver="drs", spec="gray").denoiser
    assert preset_model
    *_, settings = restore(y, physics, noise_sigma=0.01, iterations=2, return_trace=True)
    restore(y, physics, denoiser="nlm", noise_sigma=0.01, iterations=2)
    assert built == [preset_model, "nlm"] and settings.denoiser == preset_model
    PnPMethod("default", "drs").restore(y, physics, noise_sigma=0.01, seed=0, device=torch.device("cpu"),
                                        overrides={"iterations": 2})
    PnPMethod("default", "drs", models=((3, "my.pt"),)).restore(y, physics, noise_sigma=0.01, seed=0,
                                                                device=torch.device("cpu"), overrides={"iterations": 2})
    assert [name for name in built[2:] if isinstance(name, str)] == [preset_model, "my.pt"]  # then the built object
    # the default by its old name (rgm) is the default: the preset's model replaces it, and the record says so
    *_, old = restore(y, physics, denoiser="rgm", noise_sigma=0.01, iterations=2, return_trace=True)
    assert built[-1] == preset_model and old.denoiser == preset_model
    described = PnPMethod("default", "drs").describe()
    assert described["presets"]["colorize"]["denoiser"] == preset_model and preset_model in described["models"]


def test_cli_presets_lists_values_and_a_preset_model():
    from click.testing import CliRunner

    from pnprgm.cli.main import app

    result = CliRunner().invoke(app, ["presets", "--task", "colorize"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert {line.split()[0] for line in lines} == {n for n in presets.registry.names()
                                                   if presets.registry.get(n).task == "colorize"}
    for line in lines:
        preset = presets.registry.get(line.split()[0])
        assert "iterations=" in line and (f"(default denoiser: {preset.denoiser})" in line) == bool(preset.denoiser)


@pytest.mark.parametrize("spec, solver", [
    ("blur:motion", "hqs"), ("blur:box,size=5", "hqs"), ("blur:file=k.npy", "hqs"), ("sr2+blur:motion,seed=3", "hqs"),
    ("blur:gaussian,sigma=2", "drs"), ("blur", "drs"), ("blur:motion+sr2", "drs"), ("sr4", "drs"), ("gray", "drs"),
    ("mask:random", "drs"), (None, "drs"), ("blur:gausian", "drs"),
])
def test_the_default_solver_follows_the_last_operator(spec, solver):
    assert presets.default_solver(spec) == solver


def test_a_box_blur_restores_far_better_with_its_default_solver_than_with_drs():
    """DRS amplifies what a kernel with spectral zeros cannot measure (benchmarks/deblur_solvers.md: 7-9 dB on
    held-out photos); the default for such a blur is HQS."""
    import torch
    from skimage import data

    import pnprgm
    from pnprgm import operators
    from pnprgm.metrics.fidelity import psnr

    x = torch.from_numpy(data.astronaut()[100:164, 180:244].copy()).permute(2, 0, 1).float()[None] / 255
    physics = operators.build("blur:box", (3, 64, 64))
    y = operators.measure(physics, x, 0.01, seed=0)
    chosen, _, settings = pnprgm.restore(y, physics, noise_sigma=0.01, return_trace=True)
    drs = pnprgm.restore(y, physics, noise_sigma=0.01, solver="drs")
    assert settings.solver == "hqs" and settings.preset == "deblur-hqs"
    assert float(psnr(chosen, x)) > float(psnr(drs, x)) + 2


def test_a_deepinv_blur_of_the_users_restores_as_a_kernel_file_and_other_physics_with_solver_defaults():
    """A deepinv BlurFFT has no spec: it takes blur:file's task and solver (HQS, deblur-hqs), so it restores a box
    blur as pnprgm's own box blur does (31.9 dB on this crop; before, DRS with the solver's defaults: 30.8 dB)."""
    import deepinv as dinv
    import torch
    from skimage import data

    import pnprgm
    from pnprgm import operators
    from pnprgm.metrics.fidelity import psnr

    x = torch.from_numpy(data.astronaut()[100:164, 180:244].copy()).permute(2, 0, 1).float()[None] / 255
    theirs = dinv.physics.BlurFFT(img_size=(3, 64, 64), filter=torch.ones(1, 1, 5, 5) / 25)
    ours = operators.build("blur:box,size=5", (3, 64, 64))
    assert presets.choosing_spec(theirs) == "blur:file" and presets.default_solver("blur:file") == "hqs"
    y = operators.measure(theirs, x, 0.01, seed=0)
    torch.testing.assert_close(ours.A(x), theirs.A(x), atol=1e-5, rtol=0)  # the same measurement
    restored, _, settings = pnprgm.restore(y, theirs, noise_sigma=0.01, return_trace=True)
    as_ours = pnprgm.restore(y, ours, noise_sigma=0.01)
    drs_preset = pnprgm.restore(y, theirs, noise_sigma=0.01, solver="drs")  # deblur-drs: spectral zeros amplified
    assert settings.solver == "hqs" and settings.preset == "deblur-hqs"
    assert abs(float(psnr(restored, x)) - float(psnr(as_ours, x))) < 0.05
    assert float(psnr(restored, x)) > float(psnr(drs_preset, x)) + 2
    mask = (torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)) > 0.5).float().expand(1, 3, -1, -1)
    inpainting = dinv.physics.Inpainting(img_size=(3, 64, 64), mask=mask[0])
    assert presets.choosing_spec(inpainting) is None
    _, _, other = pnprgm.restore(inpainting(x), inpainting, noise_sigma=0.01, denoiser="tv", iterations=2,
                                 return_trace=True)
    assert other.solver == "drs" and other.preset == "(none)"


@pytest.mark.parametrize("preset, spec, message", [
    ("deblur-drs", "sr2", "set for the deblur task, and sr2 belongs to the sr task"),
    ("official-sr4", "sr2", "set for sr4, not sr2"),
])
def test_a_preset_set_for_another_operator_runs_with_a_warning(preset, spec, message):
    """``--operator sr2 --preset official-sr4`` (or ``deblur-drs``) ran without a word."""
    chosen = presets.registry.get(preset)
    with pytest.warns(UserWarning, match=message):
        assert presets.resolve(preset, solver=chosen.solver, spec=spec) is chosen


def test_a_preset_for_its_own_operator_says_nothing():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        presets.resolve("official-sr4", solver="rgm-drs", spec="sr:factor=4")
        presets.resolve("sr-drs", solver="drs", spec="sr2")


def test_a_preset_for_another_task_on_a_users_blur_is_named_with_its_type():
    from deepinv.physics import Blur

    import torch

    physics = Blur(filter=torch.ones(1, 1, 3, 3) / 9, padding="circular")
    with pytest.warns(presets.PresetMisfitWarning, match="set for the sr task, and a Blur of yours belongs to the "
                                                          "deblur task"):
        presets.resolve("official-sr4", solver="rgm-drs", spec=presets.choosing_spec(physics), shown_as="a Blur of yours")


@pytest.mark.parametrize("spec, task, solver", [
    ("blur:gaussian,sigma=2e+0", "deblur", "drs"),  # '+' inside a number
    ("Blur:motion,length=9", "deblur", "hqs"),       # capitals, as the operator parser takes them
    ("sr4,kernel=bicubic", "sr", "drs"),
    ("blur:file", "deblur", "hqs"),                 # the stand-in for a user's deepinv blur (no file named)
    ("blur:gaussian+sr:factor=2", "sr", "drs"),
    ("mask:random+blur:box", "deblur", "hqs"),
])
def test_task_and_default_solver_come_from_the_operator_parser(spec, task, solver):
    """A second, hand-written spec splitter called 'blur:gaussian,sigma=2e+0' and 'Blur:gaussian' no task."""
    assert presets.task_of_spec(spec) == task
    assert presets.default_solver(spec) == solver
    assert presets.resolve(None, solver="drs", spec=spec).task == task


def test_a_registered_presets_values_cannot_be_changed_by_a_caller():
    """Preset.params was a plain dict: presets.registry.get('sr-drs').params['iterations'] = 1 changed the preset for
    every later restoration in the process."""
    import copy
    import dataclasses
    import json
    import pickle

    preset = presets.registry.get("sr-drs")
    before = dict(preset.params)
    for change in (lambda p: p.__setitem__("iterations", 1), lambda p: p.update(iterations=1),
                   lambda p: p.pop("iterations"), lambda p: p.clear(), lambda p: p.setdefault("x", 1)):
        with pytest.raises(TypeError, match="read-only"):
            change(preset.params)
    assert dict(presets.registry.get("sr-drs").params) == before
    # and it still goes where a dict goes (MappingProxyType did not pickle, deep-copy or pass through asdict)
    assert pickle.loads(pickle.dumps(preset)) == preset and copy.deepcopy(preset) == preset
    assert dataclasses.asdict(preset)["params"] == before and json.loads(json.dumps(preset.params)) == before
