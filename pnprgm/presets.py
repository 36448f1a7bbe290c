"""Restoration presets per task and solver, defined in this one place (``pnprgm presets`` lists them).

A preset is a solver name plus parameter values; every value can be overridden one by one
(``restore(..., iterations=12)`` or ``pnprgm restore --set iterations=12``). The task is read from the
operator: the last family of a composed spec decides (``blur+sr2`` is super-resolution).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Optional

from pnprgm.config import FrozenDict
from pnprgm.errors import UserError
from pnprgm.registry import Registry
from pnprgm.rgm.models import DEFAULT_DENOISER

#: Operator family (first word of a spec) -> restoration task.
TASK_OF_FAMILY: Mapping[str, str] = MappingProxyType(
    {"sr": "sr", "blur": "deblur", "mask": "inpaint", "gray": "colorize", "identity": "denoise"}
)
TASKS = ("sr", "deblur", "inpaint", "colorize", "denoise")


@dataclass(frozen=True)
class Preset:
    """Solver parameters chosen for one task.

    :param task: restoration task (sr, deblur, inpaint, colorize, denoise).
    :param solver: solver registry name.
    :param params: solver config values (anything not given keeps the solver's default).
    :param note: where the values come from.
    :param denoiser: the shipped model, or family of a colour and a gray model, used when the caller asks for the
        default denoiser (``default``), for tasks where another shipped model does better than the default one;
        None: the default.
    :param operator: the one operator it was set for (``official-sr4``: ``sr4``); None: any operator of its task.
    """

    task: str
    solver: str
    params: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""
    denoiser: Optional[str] = None
    operator: Optional[str] = None

    def __post_init__(self):
        # a registered preset is shared by the whole process: its values must not change under a caller that edits them
        object.__setattr__(self, "params", FrozenDict(self.params))


def denoiser_for(preset: Optional[Preset], requested: str) -> str:
    """The denoiser a restoration uses: the preset's model when the default (``default``) was asked for."""
    return preset.denoiser if requested == DEFAULT_DENOISER and preset is not None and preset.denoiser else requested


registry: Registry[Preset] = Registry("preset")

# DPIR-style annealing (REFERENCE.md: sigma_k log-spaced from sigma_start down to the noise level, rho = lam sigma^2/sigma_k^2).
# Values chosen with benchmarks/tune_presets.py (3 public photos, 128x128 crops; table in benchmarks/tuning.md) for the
# shipped UNet denoiser of the time, checking that TV and NLM do not lose by them: SR is best with a short schedule (12), and
# colorization needs a start far above the training range of the denoiser (120/255) to create colour at all.
# Every iteration turns/flips the image at random around the denoiser call (symmetry "random": free, +0.1 to +0.5 dB
# for the shipped UNet denoiser on the tuning photos, tuning.md); denoising, a single call, averages all 8 (x8).
# Every preset returns the estimate: nothing adds noise or texture by default. `grain` (dithering with a Gaussian
# texture model, pnprgm.dithering) is an explicit option: on the 14 benchmark photos it bought DRS sr4 LPIPS
# 0.269 -> 0.241 for -0.13 dB, and plain white noise of the same std buys the same (tuning.md, "Posterior grain").
# sr4 gained nothing from `strength` < 1 with the previous models and TV-ADMM deblurring lost (tuning.md).
_PNP: dict[str, dict[str, Any]] = {
    "sr": {"iterations": 12, "sigma_start": 49 / 255, "lam": 0.23, "symmetry": "random"},
    "deblur": {"iterations": 8, "sigma_start": 49 / 255, "lam": 0.23, "symmetry": "random"},
    "inpaint": {"iterations": 24, "sigma_start": 49 / 255, "lam": 0.23, "symmetry": "random"},
    "colorize": {"iterations": 24, "sigma_start": 120 / 255, "lam": 0.23, "symmetry": "random"},
    # One denoiser call at the noise level: every splitting reduces to D(y, sigma_n) for A = I.
    "denoise": {"iterations": 1, "sigma_start": None, "lam": 0.23, "symmetry": "average"},
}
# One set of values for all three solvers: HQS colorization had its own start (80/255) for the 6000-step colour
# model; for the 13500-step one 120/255 is best for HQS too (tuning.md, "colorization with the 13500-step colour model").
# The default denoisers are the DRUNets of the GPU recipe (pretrained/README.md); each task's model was chosen by
# PSNR on the 14 benchmark photos (DRS, no grain; README, Benchmarks), LPIPS reported beside it:
# - deblurring, inpainting, denoising: the DRUNet (deblur 29.57 -> 29.80 dB at strength 0.9, SSIM 0.866 -> 0.868,
#   LPIPS-alex 0.136 -> 0.202 against the previous `unet-lpips`; inpainting +0.43 dB, denoising +0.59 dB, both lower LPIPS);
# - super-resolution keeps `unet-lpips` (the UNets fine-tuned with an LPIPS-alex term): the DRUNet gave
#   26.06 dB (26.09 with 24 iterations) against 26.10, SSIM 0.759 against 0.761, LPIPS 0.325 against 0.269;
# - colorization keeps `unet-denoiser-color-v1`: it invents colour from noise (start 120/255, far above any training
#   range); the better denoisers barely do (the DRUNet lost 1.08 dB).
_DENOISER = {"colorize": "unet-denoiser-color-v1", "sr": "unet-lpips"}
# Deblurring with the DRUNet calls it at 0.8 sigma_k (`strength`) in DRS and HQS, chosen on the 14 benchmark photos:
# DRS 29.71 / 29.80 / 29.85 / 29.56 dB at 1.0 / 0.9 / 0.8 / 0.7 (SSIM, LPIPS-alex and LPIPS-VGG best at 0.8 too), HQS
# 29.68 -> 29.87 dB. ADMM rescales its scaled dual when the data weight follows the schedule (`rescale_dual`, the
# fix for the -0.21 dB it lost with the DRUNet): on the same 14 photos deblurring 29.10 -> 29.87 dB (29.90 with
# strength 0.9, SSIM 0.873, LPIPS-alex 0.188, LPIPS-VGG 0.233), sr 26.00 -> 26.14, inpainting 32.27 -> 32.73;
# colorization loses with it (18.87 -> 18.19) and keeps the plain dual. TV-ADMM runs the same presets: deblurring
# 28.59 -> 28.70 and inpainting 29.99 -> 30.02 dB, but sr 24.94 -> 24.88 (every metric slightly worse), kept so
# that one preset serves every denoiser in a solver (benchmarks/tuning.md).
_SOLVER_PARAMS: dict[tuple[str, str], dict[str, Any]] = {("deblur", "drs"): {"strength": 0.8},
                                                        ("deblur", "hqs"): {"strength": 0.8},
                                                        ("deblur", "admm"): {"rescale_dual": True, "strength": 0.9},
                                                        ("sr", "admm"): {"rescale_dual": True},
                                                        ("inpaint", "admm"): {"rescale_dual": True}}
for _task, _params in _PNP.items():
    for _solver in ("drs", "admm", "hqs"):
        _model = _DENOISER.get(_task)
        _values = {**_params, **_SOLVER_PARAMS.get((_task, _solver), {})}
        registry.add(f"{_task}-{_solver}", Preset(_task, _solver, _values, "DPIR schedule", _model),
                     f"{_solver} for {_task}")

# RGM's own loop keeps the default model but for colorization (the perceptual models were measured in DPIR only).
_RGM_DENOISER = {"colorize": _DENOISER["colorize"]}
_RGM: dict[str, dict[str, Any]] = {
    "sr": {"iterations": 40, "alpha": 0.05, "stepsize": 10.0, "levels": 1},
    "deblur": {"iterations": 40, "alpha": 0.05, "stepsize": 10.0, "levels": 1},
    "inpaint": {"iterations": 40, "alpha": 0.2, "stepsize": 10.0, "levels": 1},
    "colorize": {"iterations": 20, "alpha": 0.5, "stepsize": 5.0, "levels": 2},
    "denoise": {"iterations": 10, "alpha": 0.5, "stepsize": 1.0, "levels": 1},
}
for _task, _params in _RGM.items():
    registry.add(f"{_task}-rgm-drs", Preset(_task, "rgm-drs", dict(_params), "RGM official table where it exists",
                                            _RGM_DENOISER.get(_task)), f"rgm-drs for {_task}")

# The official RGM restoration settings (CelebA-HQ-256 ddpm T=4 generator), REFERENCE.md section 1.
registry.add("official-sr4", Preset("sr", "rgm-drs", {"iterations": 40, "alpha": 0.05, "stepsize": 10.0, "levels": 1}, "official RGM",
                                    operator="sr4"), "official RGM SR x4 (CelebA-HQ)")
registry.add("official-sr8", Preset("sr", "rgm-drs", {"iterations": 40, "alpha": 0.05, "stepsize": 10.0, "levels": 1}, "official RGM",
                                    operator="sr8"), "official RGM SR x8 (CelebA-HQ)")
registry.add("official-colorization", Preset("colorize", "rgm-drs", {"iterations": 20, "alpha": 0.5, "stepsize": 5.0, "levels": 2}, "official RGM"), "official RGM colorization (CelebA-HQ)")


class PresetMisfitWarning(UserWarning):
    """A preset named for an operator it was not set for (``pnprgm restore`` says it once per batch)."""


def _warn_if_set_for_another_operator(name: str, preset: Preset, spec: str, shown_as: str) -> None:
    """A warning (it still runs: the user named it) when a preset was set for another task, or for one operator and
    ``spec`` is another (``official-sr4`` on ``sr2``)."""
    import warnings

    from pnprgm import operators

    try:
        task = task_of_spec(spec) if spec else None
    except UserError:  # an operator of no task (the user's physics other than a blur): nothing to compare
        return
    try:
        same = preset.operator is None or [p.params for p in operators.parse(spec)] == [
            p.params for p in operators.parse(preset.operator)]
    except UserError:  # blur:file standing for a user's deepinv blur: compared by task only
        same = True
    if task is not None and task != preset.task:
        warnings.warn(PresetMisfitWarning(f"preset {name!r} was set for the {preset.task} task, and {shown_as} belongs to the "
                      f"{task} task: its parameters may not fit (pnprgm presets lists the {task} ones)."), stacklevel=3)
    elif not same:
        warnings.warn(PresetMisfitWarning(f"preset {name!r} was set for {preset.operator}, not {shown_as}: its parameters "
                      f"may not fit (pnprgm presets lists the {preset.task} ones)."), stacklevel=3)


def task_of_spec(spec: str) -> str:
    """Restoration task of an operator spec (the last family of a composition decides)."""
    from pnprgm import operators

    try:
        family = operators.last_variant(spec).family
    except UserError:
        family = None
    if family not in TASK_OF_FAMILY:
        raise UserError(f"no restoration task for operator {spec!r}; give --preset explicitly (pnprgm presets lists them).")
    return TASK_OF_FAMILY[family]


#: The solver an operator restores with when none is named, by the variant of its last operator (else ``drs``).
#: Chosen on 24 held-out training photos (benchmarks/deblur_solvers.md): for motion and box blur, kernels whose spectra
#: have zeros, HQS beats DRS, whose reflected steps amplify what the data cannot fix, by 2.7-2.9 dB (motion; 0.7 to
#: 7.9 per photo) and 6.5 dB (box; 1.5 to 15.7); a kernel file may be either kind. Gaussian blur stays with DRS: level
#: on average (HQS +0.04 / -0.07 dB at sigma 1.6 / 3, but -2.9 dB on one photo) and 0.6 dB less of a frame at a small
#: photo's border (tests/test_photos.py).
DEFAULT_SOLVER: Mapping[str, str] = MappingProxyType({"blur:motion": "hqs", "blur:box": "hqs", "blur:file": "hqs"})


def default_solver(spec: Optional[str]) -> str:
    """The solver for ``spec`` when none is named (:data:`DEFAULT_SOLVER`): ``drs`` for the other operators and for an
    operator without a spec (a deepinv physics of the user's other than a blur: :func:`choosing_spec`). A spec whose
    parameters do not hold is read by its operator names (:func:`operators.last_variant`; its error comes where it is
    built)."""
    from pnprgm import operators

    try:
        variant = operators.last_variant(spec).name if spec else None
    except UserError:  # its error comes where it is built
        variant = None
    return DEFAULT_SOLVER.get(variant, "drs")


def choosing_spec(physics) -> Optional[str]:
    """The operator spec whose task and default solver ``physics`` restores with: its own; ``blur:file`` for a deepinv
    blur of the user's (``Blur``, ``BlurFFT``: a kernel of unknown kind, as a kernel file's is, so the deblurring
    presets and HQS, which beat DRS on motion and box kernels, :data:`DEFAULT_SOLVER`); None for any other operator of
    the user's (it runs with the solver's defaults)."""
    spec = getattr(physics, "spec", None)
    if spec:
        return spec
    from deepinv.physics import Blur, BlurFFT

    return "blur:file" if isinstance(physics, (Blur, BlurFFT)) else None


def solver_for(solver: Optional[str], preset: Optional[str], spec: Optional[str]) -> str:
    """The solver that runs: the one named, else the named preset's, else :func:`default_solver` of ``spec``."""
    if solver:
        from pnprgm import solvers

        solvers.registry.get(solver)  # an unknown name is named as a solver, not as a missing preset 'sr-foo'
        return solver
    return registry.get(preset).solver if preset else default_solver(spec)


def resolve(preset: str | None, *, solver: str, spec: str, shown_as: Optional[str] = None) -> Preset:
    """The named preset, or the default one for ``solver`` and the task of ``spec`` (``shown_as``: the operator as a
    warning names it, where ``spec`` stands for a user's physics: :func:`choosing_spec`)."""
    if preset:
        chosen = registry.get(preset)
        if chosen.solver != solver:
            raise UserError(f"preset {preset!r} is for solver {chosen.solver!r}, not {solver!r}; pass --solver {chosen.solver}.")
        _warn_if_set_for_another_operator(preset, chosen, spec, shown_as or spec)
        return chosen
    name = f"{task_of_spec(spec)}-{solver}"
    if name not in registry:
        raise UserError(f"no preset {name!r}; choose one of: {', '.join(registry.names())}.")
    return registry.get(name)
