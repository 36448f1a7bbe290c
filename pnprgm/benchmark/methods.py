"""Benchmark methods: a denoiser inside a PnP solver (with the task's default preset), or the baseline.

A method is named for the algorithm that runs: ``pnp-drs``, ``pnp-admm``, ``pnp-hqs`` (DPIR-schedule splitting
with the shipped default denoiser, or the model a task's preset names), ``tv-admm``, ``nlm-hqs``..., and
``rgm-stochastic-drs``: RGM's relaxed stochastic DRS, which needs a time-conditioned model (``--model``).
Every method answers :meth:`unavailable` (None, or why it cannot run here: a missing optional package or
shipped model) and :meth:`restore` (the estimate and the seconds it took, model loading excluded). A PnP method
restores through :func:`pnprgm.restoration.prepare_restoration`, the first step of :func:`pnprgm.restore`, so it
runs what ``pnprgm restore`` would for the same denoiser and solver.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Protocol

import torch
from deepinv.physics import LinearPhysics

from pnprgm.errors import UserError
from pnprgm.presets import DEFAULT_DENOISER
from pnprgm.registry import Registry


class Method(Protocol):
    """What the runner needs from a method."""

    def unavailable(self, device: torch.device) -> Optional[str]: ...

    def check_overrides(self, overrides: Mapping[str, Any]) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def with_models(self, chosen: Mapping[int, str]) -> "Method": ...

    def restore(self, y: torch.Tensor, physics: LinearPhysics, *, noise_sigma: float, seed: int,
                device: torch.device, overrides: Mapping[str, Any]) -> tuple[torch.Tensor, float]: ...


@dataclass(frozen=True)
class PnPMethod:
    """``denoiser`` inside ``solver`` with the task's preset (``pnprgm presets``), through :func:`pnprgm.restore`.

    :param denoiser: denoiser registry name (``pnprgm denoisers``).
    :param solver: solver registry name (drs, admm, hqs, rgm-drs).
    :param requires: optional packages it imports, with the pip name after a colon if it differs.
    :param note: shown in reports (licences).
    :param models: ``(channels, model)`` pairs replacing the shipped default of the ``default`` denoiser.
    :param time_levels: it runs RGM's stochastic step, so every model it uses must have time levels (refused
        otherwise: the solver's fallback for other denoisers is not RGM's algorithm).
    """

    denoiser: str
    solver: str
    requires: tuple[str, ...] = ()
    note: str = ""
    models: tuple[tuple[int, str], ...] = ()
    time_levels: bool = False

    def with_models(self, chosen: Mapping[int, str]) -> "PnPMethod":
        """This method with the user's models (``--model``) in place of the shipped defaults."""
        replaced = self.denoiser == DEFAULT_DENOISER and chosen
        return replace(self, models=tuple(sorted(chosen.items()))) if replaced else self

    def _denoiser_for(self, channels: int) -> str:
        return dict(self.models).get(channels, self.denoiser)

    def unavailable(self, device: torch.device) -> Optional[str]:
        for requirement in self.requires:
            module, _, package = requirement.partition(":")
            try:
                importlib.import_module(module)
            except ImportError:
                return f"needs the optional package {package or module} (pip install {package or module})"
        from pnprgm import denoisers

        try:  # builds once (e.g. loads the shipped model) so a missing model is reported before the run
            for channels in sorted({3, *dict(self.models)}):
                name = self._denoiser_for(channels)
                self._checked(denoisers.build(name, channels=channels, device=device, seed=0), name, channels)
        except UserError as err:
            return str(err).rstrip(".")
        return None

    def _checked(self, model, name: str, channels: int):
        """``model`` (the denoiser ``name`` built), or a :class:`UserError` when this method needs time levels and
        the model has none."""
        from pnprgm.restoration import has_time_levels

        if self.time_levels and not has_time_levels(model):
            raise UserError(f"RGM's stochastic DRS needs a time-conditioned model for {channels}-channel images and "
                            f"{name!r} has no time levels; give --model with one (an official checkpoint "
                            f"PATH#celebahq256, or a model of pnprgm train --forward ddpm).")
        return model

    def check_overrides(self, overrides: Mapping[str, Any]) -> None:
        from pnprgm.restoration import configure

        configure(self.solver, dict(overrides))  # unknown keys or bad values: UserError listing the valid ones

    def describe(self) -> dict[str, Any]:
        """What decides its results: solver, the preset values per task, and the model files behind the name
        (so a resumed run reuses a record only if none of them changed)."""
        from pnprgm import presets

        chosen = {task: presets.registry.get(f"{task}-{self.solver}") for task in presets.TASKS
                  if f"{task}-{self.solver}" in presets.registry}
        # a preset's model only replaces the default denoiser: other denoisers' records do not depend on it
        default = self.denoiser == DEFAULT_DENOISER
        values = {task: {**preset.params, **({"denoiser": preset.denoiser} if preset.denoiser and default else {})}
                  for task, preset in chosen.items()}
        # shipped models that a task's preset uses in place of the default, unless --model replaced that default
        task_models = sorted({p.denoiser for p in chosen.values() if p.denoiser and default
                              and not _channels_of(p.denoiser) <= set(dict(self.models))})
        described = {"kind": "pnp", "denoiser": self.denoiser, "solver": self.solver, "preset": "task default",
                     "presets": values, "models": self._model_files(task_models), "note": self.note or None}
        if self.models:  # the report names what ran, not `default`
            described["user_models"] = {str(channels): source for channels, source in self.models}
        return described

    def _model_files(self, task_models: list[str]) -> Optional[dict[str, str]]:
        files = _model_files(self.denoiser)
        replaced = {str(channels) for channels, _ in self.models}
        for name in task_models:  # a family's member for a channel count that --model replaced is not used
            shipped = {key: sha for key, sha in (_model_files(name) or {}).items() if key not in replaced}
            files = {**(files or {}), **{name if key == "any" else f"{name}/{key}": sha for key, sha in shipped.items()}}
        if self.models:
            from pnprgm.rgm import models
            from pnprgm.io import sha256_file

            # the hash alone: the channel count was read when the models were chosen
            files = {**(files or {}), **{str(c): sha256_file(models.model_path(source)) for c, source in self.models}}
        return files

    def restore(self, y, physics, *, noise_sigma, seed, device, overrides):
        """``pnprgm.restore`` of ``y`` with this method's denoiser and solver (the task's preset, and its model, chosen
        there); the seconds are those of the run alone: the choices and the model loading are made before."""
        from pnprgm.restoration import prepare_restoration

        channels = physics.in_shape[0]
        plan = prepare_restoration(y, physics, denoiser=self._denoiser_for(channels), solver=self.solver,
                                   noise_sigma=noise_sigma, device=device, seed=seed, **dict(overrides))
        self._checked(plan.model, plan.denoiser_name, channels)
        start = time.perf_counter()
        x, _, _ = plan.run(seed=seed)
        return x, time.perf_counter() - start


def _channels_of(shipped: str) -> set[int]:
    """Channel counts a shipped model or family covers."""
    from pnprgm.rgm import models

    if shipped in models.registry:
        return {models.registry.get(shipped).channels}
    return set(models.families().get(shipped, {}))


def _model_files(denoiser: str) -> Optional[dict[str, str]]:
    """sha256 of the shipped model files a denoiser name stands for (per channel count for ``default`` and
    families), else None."""
    from pnprgm.rgm import models

    if denoiser == DEFAULT_DENOISER:
        files = {}
        for channels in (1, 3):
            try:
                files[str(channels)] = models.default_model(channels).sha256
            except UserError:  # no shipped model for this channel count
                continue
        return files
    if denoiser in models.registry:
        return {"any": models.registry.get(denoiser).sha256}
    members = models.families().get(denoiser)
    return {str(channels): entry.sha256 for channels, entry in sorted(members.items())} if members else None


@dataclass(frozen=True)
class BaselineMethod:
    """The operator's own initial estimate (``initial_estimate``, docs/operators.md): nearest replication
    (block-mean SR) or bicubic (anti-aliased SR), the blurred image itself for blur, holes filled from their
    surroundings for masks, the gray image on 3 channels for gray."""

    def unavailable(self, device: torch.device) -> Optional[str]:
        return None

    def check_overrides(self, overrides: Mapping[str, Any]) -> None:
        return None  # nothing to tune

    def with_models(self, chosen: Mapping[int, str]) -> "BaselineMethod":
        return self  # uses no model

    def describe(self) -> dict[str, Any]:
        return {"kind": "baseline", "denoiser": None, "solver": None, "preset": "operator initial_estimate",
                "note": None}

    @torch.no_grad()
    def restore(self, y, physics, *, noise_sigma, seed, device, overrides):
        from pnprgm.restoration import initial_estimate

        start = time.perf_counter()
        x = initial_estimate(physics, y.to(device)).clamp(0, 1)
        return x, time.perf_counter() - start


registry: Registry[Method] = Registry("benchmark method")
# Before issue 17 the DPIR-schedule methods were called rgm-*, though neither RGM's algorithm nor a model with an active
# RGM prior ran in them: the old names stay as aliases.
for _solver in ("drs", "admm", "hqs"):
    registry.add(f"pnp-{_solver}", PnPMethod(DEFAULT_DENOISER, _solver),
                 f"{_solver.upper()}, DPIR schedule, the shipped denoiser the task preset names")
    registry.alias(f"rgm-{_solver}", f"pnp-{_solver}", f"{_solver.upper()} with the DPIR schedule, not RGM's algorithm")
registry.add("rgm-stochastic-drs", PnPMethod(DEFAULT_DENOISER, "rgm-drs", time_levels=True),
             "RGM's relaxed stochastic DRS (task preset *-rgm-drs) with a time-conditioned --model")
registry.add("tv-admm", PnPMethod("tv", "admm"), "total variation in ADMM (task preset)")
registry.add("nlm-hqs", PnPMethod("nlm", "hqs"), "non-local means (scikit-image) in HQS (task preset)")
registry.add("bm3d-hqs", PnPMethod("bm3d", "hqs", requires=("bm3d",), note="bm3d's binary has a non-commercial licence"),
             "BM3D in HQS (optional bm3d package, non-commercial licence)")
registry.add("baseline", BaselineMethod(), "the operator's initial estimate (nearest/bicubic for SR, the blurred image, "
             "holes filled, gray on 3 channels; docs/operators.md)")
