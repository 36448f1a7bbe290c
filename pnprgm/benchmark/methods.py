"""Benchmark methods: a denoiser inside a PnP solver (with the task's default preset), or the baseline.

Every method answers :meth:`unavailable` (None, or why it cannot run here: a missing optional package or
shipped model) and :meth:`restore` (the estimate and the seconds it took, model loading excluded).
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Protocol

import torch
from deepinv.physics import LinearPhysics

from pnprgm.errors import UserError
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
    :param solver: solver registry name (drs, admm, hqs).
    :param requires: optional packages it imports, with the pip name after a colon if it differs.
    :param note: shown in reports (licences).
    :param models: ``(channels, model)`` pairs replacing the shipped default of the ``rgm`` denoiser.
    """

    denoiser: str
    solver: str
    requires: tuple[str, ...] = ()
    note: str = ""
    models: tuple[tuple[int, str], ...] = ()

    def with_models(self, chosen: Mapping[int, str]) -> "PnPMethod":
        """This method with the user's RGM models (``--model``) in place of the shipped defaults."""
        return replace(self, models=tuple(sorted(chosen.items()))) if self.denoiser == "rgm" and chosen else self

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
                denoisers.build(self._denoiser_for(channels), channels=channels, device=device, seed=0)
        except UserError as err:
            return str(err).rstrip(".")
        return None

    def check_overrides(self, overrides: Mapping[str, Any]) -> None:
        from pnprgm.restoration import configure

        configure(self.solver, dict(overrides))  # unknown keys or bad values: UserError listing the valid ones

    def describe(self) -> dict[str, Any]:
        """What decides its results: solver, the preset values per task, and the model files behind the name
        (so a resumed run reuses a record only if none of them changed)."""
        from pnprgm import presets

        chosen = {task: presets.registry.get(f"{task}-{self.solver}") for task in presets.TASKS
                  if f"{task}-{self.solver}" in presets.registry}
        # a preset's model only replaces the default RGM denoiser: other denoisers' records do not depend on it
        values = {task: {**preset.params, **({"denoiser": preset.denoiser} if preset.denoiser and self.denoiser == "rgm"
                                             else {})}
                  for task, preset in chosen.items()}
        # shipped models that a task's preset uses in place of the default, unless --model replaced that default
        task_models = sorted({p.denoiser for p in chosen.values() if p.denoiser and self.denoiser == "rgm"
                              and not _channels_of(p.denoiser) <= set(dict(self.models))})
        return {"kind": "pnp", "denoiser": self.denoiser, "solver": self.solver, "preset": "task default",
                "presets": values, "models": self._model_files(task_models), "note": self.note or None}

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
        from pnprgm import denoisers, presets
        from pnprgm.restoration import restore

        channels = physics.in_shape[0]
        name = self._denoiser_for(channels)
        if name == "rgm":  # what pnprgm.restore would choose: a task's preset may name another shipped model
            name = presets.denoiser_for(presets.resolve(None, solver=self.solver, spec=physics.spec), name)
        model = denoisers.build(name, channels=channels, device=device, seed=seed)
        start = time.perf_counter()
        x = restore(y, physics, denoiser=model, solver=self.solver, noise_sigma=noise_sigma, device=device,
                    seed=seed, **dict(overrides))
        return x, time.perf_counter() - start


def _channels_of(shipped: str) -> set[int]:
    """Channel counts a shipped model or family covers."""
    from pnprgm.rgm import models

    if shipped in models.registry:
        return {models.registry.get(shipped).channels}
    return set(models.families().get(shipped, {}))


def _model_files(denoiser: str) -> Optional[dict[str, str]]:
    """sha256 of the shipped model files a denoiser name stands for (per channel count for ``rgm`` and families),
    else None."""
    from pnprgm.rgm import models

    if denoiser == "rgm":
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
    """The operator's own initial estimate: nearest replication (block-mean SR) or bicubic (anti-aliased SR),
    the measurement itself for blur, the pseudo-inverse otherwise (masked pixels 0, gray replicated)."""

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
registry.add("rgm-drs", PnPMethod("rgm", "drs"), "shipped RGM denoiser in DRS (task preset)")
registry.add("rgm-admm", PnPMethod("rgm", "admm"), "shipped RGM denoiser in ADMM (task preset)")
registry.add("rgm-hqs", PnPMethod("rgm", "hqs"), "shipped RGM denoiser in HQS (task preset)")
registry.add("tv-admm", PnPMethod("tv", "admm"), "total variation in ADMM (task preset)")
registry.add("nlm-hqs", PnPMethod("nlm", "hqs"), "non-local means (scikit-image) in HQS (task preset)")
registry.add("bm3d-hqs", PnPMethod("bm3d", "hqs", requires=("bm3d",), note="bm3d's binary has a non-commercial licence"),
             "BM3D in HQS (optional bm3d package, non-commercial licence)")
registry.add("baseline", BaselineMethod(), "the operator's initial estimate (nearest/bicubic for SR, pseudo-inverse)")
