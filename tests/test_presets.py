"""Presets: every registered preset builds its solver; tasks are read from operator specs."""
from __future__ import annotations

import pytest

from pnprgm import presets, solvers
from pnprgm.errors import UserError


@pytest.mark.parametrize("name", presets.registry.names())
def test_every_preset_builds_its_solver(name):
    preset = presets.registry.get(name)
    assert preset.task in presets.TASKS
    solver = solvers.build(preset.solver, dict(preset.params))
    for key, value in preset.params.items():
        assert getattr(solver.config, key) == value


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
