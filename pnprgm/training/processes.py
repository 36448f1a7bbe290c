"""Forward (degradation) processes of RGM training, in [-1, 1] image units.

Each process draws training pairs from clean images ``x0``: the generator input ``g_in`` at level ``level``,
the real sample ``x_real`` the prior compares with, and the measurement ``y`` of the fidelity term
``1/2 sum ((y - A x0_hat) / sigma_y)^2`` (per sample). Processes:

- ``ddpm``: ``x_k = a_k x0 + s_k eps`` (official schedule, T steps); G sees ``x_{t+1}`` with label t and is
  compared with ``x_t``; ``A = a_{t+1} I``, ``sigma_y = s_{t+1}``.
- ``sr``: the official block-averaging process (noise index ``k = (t+1)//2``, ``d = t//2`` down/up steps).
- ``denoise``: ``y = x0 + sigma n`` with a continuous sigma (log-uniform), one level, G conditioned on sigma.
- ``operator``: ``y = A x0 + sigma n`` for a linear operator A (registry spec or the user's ``module:callable``);
  G sees an image-shaped initial estimate of x0 from y.

All randomness comes from torch's global generator, which the training loop seeds per step.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from pnprgm.config import to_dict
from pnprgm.errors import UserError, first_line
from pnprgm.registry import Registry
from pnprgm.rgm.schedules import DDPMSchedule
from pnprgm.training.config import ProcessConfig, resolve_process


def nearest_upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Each pixel repeated ``factor`` x ``factor`` times (the adjoint pattern of a block mean)."""
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


@dataclass
class Pairs:
    """One training batch of a process.

    :param level: what G and D are conditioned on: (B,) long time index or (B,) float noise std ([-1, 1] units).
    :param g_in: generator input, image-shaped.
    :param x_real: real sample at the discriminator's level (``x_t``; the clean image for one-level processes).
    :param y: measurement of the fidelity term (``x_{t+1}`` for ddpm/sr).
    :param sigma_y: (B,) measurement noise std of the fidelity term (operator processes; None otherwise).
    """

    level: torch.Tensor
    g_in: torch.Tensor
    x_real: torch.Tensor
    y: torch.Tensor
    sigma_y: Optional[torch.Tensor] = None


def _per_sample(values: torch.Tensor, index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like)[index].view(-1, *([1] * (like.dim() - 1)))


def _time_labels(x0: torch.Tensor, T: int, same_level: bool) -> torch.Tensor:
    """t uniform in {0..T-1}, per sample or one for the batch (DSWD, as the official code)."""
    if same_level:
        return torch.randint(0, T, (1,), device=x0.device).repeat(x0.shape[0])
    return torch.randint(0, T, (x0.shape[0],), device=x0.device)


class ForwardProcess:
    """Base class: a degradation with ``T`` generator levels."""

    name: str = ""
    conditioning: str = "time"
    conditioned: bool = False  # True when sampling needs a degraded input (no pure-noise start)

    def __init__(self, config: ProcessConfig, shape: tuple[int, int, int], device: torch.device, *,
                 code_operator: Optional[str] = None):
        self.cfg = config
        #: the one ``module:callable`` / ``file.py:callable`` operator this process may import: the one the user
        #: typed (``--operator``); a spec naming code that comes from anywhere else (a model file, a checkpoint,
        #: a config file) is refused, so a file's contents never make pnprgm import or run code.
        self.code_operator = code_operator
        self.T = int(config.T)
        self.shape = tuple(shape)
        self.device = torch.device(device)

    def config(self) -> dict:
        """The resolved process config (JSON-able)."""
        return to_dict(self.cfg)

    @classmethod
    def size_multiple(cls, config: ProcessConfig) -> int:
        """Image sizes must be multiples of this (for a resolved config)."""
        return 1

    def check_shape(self, shape: tuple[int, int, int]) -> None:
        """Raise a :class:`UserError` when images of ``shape`` cannot go through the process."""

    # training -----------------------------------------------------------------------------------------------
    def pairs(self, x0: torch.Tensor, *, same_level: bool = False) -> Pairs:
        """Training batch from clean images (one level for the whole batch if ``same_level``)."""
        raise NotImplementedError

    def renoise(self, x0_hat: torch.Tensor, pairs: Pairs) -> torch.Tensor:
        """The generated counterpart of ``pairs.x_real``: ``x0_hat`` degraded to the discriminator's level."""
        raise NotImplementedError

    def fidelity(self, x0_hat: torch.Tensor, pairs: Pairs) -> torch.Tensor:
        """``1/2 sum ((y - A x0_hat) / sigma_y)^2`` per sample, shape (B,)."""
        raise NotImplementedError

    #: whether :meth:`residual` exists (a measurement with a known noise std)
    has_residual: bool = False

    def residual(self, x: torch.Tensor, pairs: Pairs) -> torch.Tensor:
        """``estimate(y - A x) / sigma_y``: the measurement residual of ``x`` in noise units, image-shaped."""
        raise UserError(f"the {self.name} process has no measurement residual (use train.d_cond_input=measurement).")

    # sampling and validation ----------------------------------------------------------------------------------
    def init_sample(self, n: int, shape: tuple[int, int, int]) -> torch.Tensor:
        """Start of the T-step sampler (pure noise), for unconditioned processes."""
        raise UserError(f"the {self.name} process restores degraded inputs; give images to sample from.")

    def step_back(self, x0_hat: torch.Tensor, i: int) -> torch.Tensor:
        """Sampler transition after predicting x0 at label i: x0_hat degraded to level i (noise factor 0.999)."""
        raise NotImplementedError

    def validation_input(self, x0: torch.Tensor, sigma01: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g_in, level)`` of the one-step validation restoration (seeded by the caller)."""
        raise NotImplementedError


PROCESSES: Registry[type[ForwardProcess]] = Registry("forward process")


# ------------------------------------------------------------------------------------------------ ddpm


@PROCESSES.register("ddpm", "RGM noising: x_k = a_k x0 + s_k eps, T steps of the official VP schedule")
class DDPMProcess(ForwardProcess):
    name = "ddpm"

    def __init__(self, config: ProcessConfig, shape, device, **kwargs):
        super().__init__(config, shape, device, **kwargs)
        self.schedule = DDPMSchedule(T=self.T, beta_min=config.beta_min, beta_max=config.beta_max)
        self.a = self.schedule.signal().to(self.device)
        self.s = self.schedule.noise().to(self.device)

    def sample(self, x0: torch.Tensor, t: torch.Tensor, noise: Optional[torch.Tensor] = None,
               noise_factor: float = 1.0) -> torch.Tensor:
        """``x_t = a_t x0 + s_t noise_factor eps`` (the official ``sample``)."""
        if noise is None:
            noise = noise_factor * torch.randn_like(x0)
        return _per_sample(self.a, t, x0) * x0 + _per_sample(self.s, t, x0) * noise

    def pairs(self, x0, *, same_level=False):
        t = _time_labels(x0, self.T, same_level)
        x_t = self.sample(x0, t)
        x_tp1 = self.sample(x0, t + 1)  # independent noise, as the official sample_pairs
        return Pairs(level=t, g_in=x_tp1, x_real=x_t, y=x_tp1)

    def renoise(self, x0_hat, pairs):
        return self.sample(x0_hat, pairs.level)

    def fidelity(self, x0_hat, pairs):
        t1 = pairs.level + 1
        mean = _per_sample(self.a, t1, x0_hat) * x0_hat
        std = _per_sample(self.s, t1, x0_hat)
        return ((pairs.y - mean) / std).pow(2).flatten(1).sum(1) / 2

    def init_sample(self, n, shape):
        return torch.randn(n, *shape, device=self.device)

    def step_back(self, x0_hat, i):
        t = torch.full((x0_hat.shape[0],), i, dtype=torch.long, device=x0_hat.device)
        return self.sample(x0_hat, t, noise_factor=0.999)

    def validation_input(self, x0, sigma01):
        t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        return self.sample(x0, t + 1), t


# ------------------------------------------------------------------------------------------------ sr


@PROCESSES.register("sr", "RGM super-resolution process: block averaging interleaved with noise (official sr)")
class SRProcess(ForwardProcess):
    """Official ``sr`` process: ``x_t = downup_d(a_k x0 + r^k s_k eps)`` with ``k = (t+1)//2``, ``d = t//2``,
    ``r`` the block size and ``downup_d`` d block averagings followed by nearest upsampling to full size.

    The noise schedule has ``(T+1)//2`` levels. ``r x r`` block averaging is what the official bilinear
    ``scale_factor=1/2`` (align_corners False) computes for r = 2; larger r use block averaging.
    """

    name = "sr"

    def __init__(self, config: ProcessConfig, shape, device, **kwargs):
        super().__init__(config, shape, device, **kwargs)
        self.scale = int(config.sr_scale)
        self.schedule = DDPMSchedule(T=(self.T + 1) // 2, beta_min=config.beta_min, beta_max=config.beta_max)
        coeffs = self.coefficients()
        self.a = coeffs["a_s_cum"].to(self.device)
        self.s = coeffs["sigmas_cum"].to(self.device)
        self.s_sample = coeffs["sigmas_sample_cum"].to(self.device)

    def coefficients(self) -> dict[str, torch.Tensor]:
        """The official arrays (float32): sigmas, a_s, a_s_cum, sigmas_cum, a_s_prev, sigmas_sample_cum."""
        betas = self.schedule.betas()
        a_s = torch.sqrt(1 - betas)
        a_s_cum = torch.cumprod(a_s, 0)
        sigmas_cum = torch.sqrt(1 - a_s_cum**2)
        a_s_prev = a_s.clone()
        a_s_prev[-1] = 1.0
        powers = float(self.scale) ** torch.arange(len(sigmas_cum), dtype=torch.float32)
        return {"sigmas": betas.sqrt(), "a_s": a_s, "a_s_cum": a_s_cum, "sigmas_cum": sigmas_cum,
                "a_s_prev": a_s_prev, "sigmas_sample_cum": powers * sigmas_cum}

    def max_downups(self) -> int:
        return self.T // 2

    @classmethod
    def size_multiple(cls, config: ProcessConfig) -> int:
        return int(config.sr_scale) ** (int(config.T) // 2)

    def check_shape(self, shape):
        factor = self.scale ** self.max_downups()
        if shape[-1] % factor or shape[-2] % factor:
            raise UserError(f"the sr process with T={self.T} needs image sizes divisible by {factor}; "
                            f"got {shape[-2]}x{shape[-1]}: change the crop.")

    def downup(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Per sample, ``d`` block averagings then nearest upsampling to full size."""
        out = x.clone()
        for level in range(1, int(d.max().item()) + 1 if d.numel() else 1):
            mask = d == level
            if mask.any():
                r = self.scale**level
                low = F.avg_pool2d(x[mask], r)
                out[mask] = nearest_upsample(low, r)
        return out

    def sample(self, x0, t, noise=None, noise_factor=1.0):
        if noise is None:
            noise = noise_factor * torch.randn_like(x0)
        k = torch.div(t + 1, 2, rounding_mode="floor")
        x = _per_sample(self.a, k, x0) * x0 + _per_sample(self.s_sample, k, x0) * noise
        return self.downup(x, torch.div(t, 2, rounding_mode="floor"))

    def noise_std_per_lowres_pixel(self, t: int) -> float:
        """Predicted noise std of one effective (low-resolution) pixel at level t: ``r^(k-d) s_k``."""
        k, d = (t + 1) // 2, t // 2
        return float(self.scale ** (k - d) * self.s[k])

    def pairs(self, x0, *, same_level=False):
        t = _time_labels(x0, self.T, same_level)
        x_t = self.sample(x0, t)
        x_tp1 = self.sample(x0, t + 1)
        return Pairs(level=t, g_in=x_tp1, x_real=x_t, y=x_tp1)

    def renoise(self, x0_hat, pairs):
        return self.sample(x0_hat, pairs.level)

    def fidelity(self, x0_hat, pairs):
        t = pairs.level
        mean = self.sample(x0_hat, t + 1, noise=torch.zeros_like(x0_hat))
        std = _per_sample(self.s, torch.div(t + 2, 2, rounding_mode="floor"), x0_hat)
        odd = ((t + 1) % 2).to(x0_hat.dtype).view(-1, 1, 1, 1)
        std = (1 + odd * (self.scale - 1)) * std  # level t+1 odd: noise not yet averaged, r times larger
        return ((pairs.y - mean) / std).pow(2).flatten(1).sum(1) / 2

    def init_sample(self, n, shape):
        r = self.scale ** self.max_downups()
        self.check_shape(shape)
        # The official start: std 2 (= r for r = 2) noise at the coarsest resolution, nearest-upsampled.
        low = float(self.scale) * torch.randn(n, shape[0], shape[1] // r, shape[2] // r, device=self.device)
        return nearest_upsample(low, r)

    def step_back(self, x0_hat, i):
        t = torch.full((x0_hat.shape[0],), i, dtype=torch.long, device=x0_hat.device)
        return self.sample(x0_hat, t, noise_factor=0.999)

    def validation_input(self, x0, sigma01):
        t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        return self.sample(x0, t + 1), t


# ------------------------------------------------------------------------------------------------ operators


class OperatorProcess(ForwardProcess):
    """``y = A x0 + sigma n`` with sigma log-uniform in ``[noise_min, noise_max]`` (given in [0, 1] units,
    doubled in the model's [-1, 1] units); one level; G gets an image-shaped estimate of x0 and sigma."""

    conditioning = "sigma"
    conditioned = True

    def __init__(self, config: ProcessConfig, shape, device, **kwargs):
        super().__init__(config, shape, device, **kwargs)
        self._ops: dict[tuple[int, ...], Any] = {}
        self.physics(self.shape)  # build now: a bad spec fails before training

    def physics(self, shape: tuple[int, int, int]):
        """The operator for images of ``shape`` (None: identity)."""
        return None

    def A(self, x: torch.Tensor) -> torch.Tensor:
        op = self.physics(tuple(x.shape[1:]))
        return x if op is None else op.A(x)

    def estimate(self, y: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
        """Image-shaped initial estimate from a measurement (the generator's input)."""
        op = self.physics(shape)
        if op is None:
            return y
        own = getattr(op, "initial_estimate", None)
        if callable(own):
            return own(y)
        if tuple(y.shape[1:]) == tuple(shape):
            return y
        return op.A_dagger(y)

    def draw_sigma(self, n: int, device) -> torch.Tensor:
        """Per-sample noise std in [-1, 1] units, log-uniform over the configured range."""
        low, high = math.log(2 * self.cfg.noise_min), math.log(2 * self.cfg.noise_max)
        return torch.exp(low + (high - low) * torch.rand(n, device=device))

    def measure(self, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        clean = self.A(x0)
        return clean + sigma.view(-1, *([1] * (clean.dim() - 1))) * torch.randn_like(clean)

    def pairs(self, x0, *, same_level=False):
        sigma = self.draw_sigma(1 if same_level else x0.shape[0], x0.device).expand(x0.shape[0]).contiguous()
        y = self.measure(x0, sigma)
        return Pairs(level=sigma, g_in=self.estimate(y, tuple(x0.shape[1:])), x_real=x0, y=y, sigma_y=sigma)

    def renoise(self, x0_hat, pairs):
        return x0_hat  # one level: the discriminator compares clean images

    def fidelity(self, x0_hat, pairs):
        residual = pairs.y - self.A(x0_hat)
        return (residual / pairs.sigma_y.view(-1, *([1] * (residual.dim() - 1)))).pow(2).flatten(1).sum(1) / 2

    has_residual = True

    def residual(self, x, pairs):
        image = self.estimate(pairs.y - self.A(x), tuple(x.shape[1:]))
        return image / pairs.sigma_y.view(-1, *([1] * (image.dim() - 1)))

    def step_back(self, x0_hat, i):
        return x0_hat

    def validation_input(self, x0, sigma01):
        sigma01 = min(max(sigma01, self.cfg.noise_min), self.cfg.noise_max)
        sigma = torch.full((x0.shape[0],), 2 * sigma01, device=x0.device)
        return self.estimate(self.measure(x0, sigma), tuple(x0.shape[1:])), sigma


@PROCESSES.register("denoise", "Gaussian denoising with a continuous noise std (log-uniform range), one level")
class DenoiseProcess(OperatorProcess):
    name = "denoise"


@PROCESSES.register("operator", "a linear operator (registry spec or module:callable) plus Gaussian noise")
class LinearOperatorProcess(OperatorProcess):
    name = "operator"

    def physics(self, shape):
        shape = tuple(int(s) for s in shape)
        if shape not in self._ops:
            self._ops[shape] = load_operator(self.cfg.operator, shape, self.device,
                                             allow_code=self.code_operator is not None and self.cfg.operator == self.code_operator)
        return self._ops[shape]

    def check_shape(self, shape):
        op = self.physics(tuple(shape))
        probe_operator(self.cfg.operator, shape,
                       lambda: self.estimate(op.A(torch.zeros(1, *shape, device=self.device)), tuple(shape)),
                       fix="change the crop or the operator")


def probe_operator(spec: str, shape: tuple[int, int, int], run: Callable[[], Any], *, fix: str) -> Any:
    """``run()`` (an operator applied to an image of ``shape``, without gradients); an operator that cannot handle
    that size (the user's code, made for others) is a :class:`UserError` saying which, why, and ``fix``."""
    try:
        with torch.no_grad():
            return run()
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"operator {spec!r} fails on {shape[1]}x{shape[2]} images ({first_line(err, 120)}); "
                        f"{fix}.") from None


def load_operator(spec: str, shape: tuple[int, int, int], device: torch.device, *, allow_code: bool = False):
    """A ``LinearPhysics`` from an ``operators`` spec, ``module:callable`` or ``path/file.py:callable``.

    The callable is called as ``fn(shape=(C, H, W), device=device)``. It is imported only with ``allow_code``
    (the spec was typed by the user, e.g. ``--operator``); otherwise a spec naming code is a :class:`UserError`.
    """
    from deepinv.physics import LinearPhysics

    factory = _user_callable(spec, allow_code)
    if factory is None:
        try:
            from pnprgm import operators
        except ImportError as err:
            raise UserError(f"cannot build operator {spec!r}: the operators package does not import ({err}); "
                            f"reinstall pnprgm (pip install -e .) or give module:callable.") from None
        return operators.build(spec, tuple(shape), device=device)
    try:
        op = factory(shape=tuple(shape), device=device)
    except UserError:
        raise
    except Exception as err:
        first = first_line(err)
        raise UserError(f"operator callable {spec!r} failed for shape {tuple(shape)}: {first[:160]}.") from None
    if not isinstance(op, LinearPhysics):
        raise UserError(f"operator callable {spec!r} returned {type(op).__name__}, not a deepinv LinearPhysics.")
    return op


def _refuse_code(spec: str, parse_error: Optional[UserError] = None) -> UserError:
    """The refusal of a code-naming operator spec that did not come from the command line."""
    unparsed = f"is not an operator spec ({str(parse_error).rstrip('.')}) and, as module:callable, " if parse_error else ""
    return UserError(f"operator {spec!r} {unparsed}names Python code, which pnprgm imports only when you type it: "
                     f"give --operator {spec!r} on the command line if you trust that code.")


def typed_operator_callable(spec: str) -> Optional[Callable]:
    """The callable of a ``file.py:callable`` or ``module:callable`` spec the user typed (imported now, so that a
    missing file, module or callable is one error before any work); None for an ``operators`` spec."""
    return _user_callable(spec, allow_code=True)


def _user_callable(spec: str, allow_code: bool = False) -> Optional[Callable]:
    """The callable named by ``file.py:callable`` or ``module:callable``; None when spec is an ``operators`` spec.

    A spec that ``operators`` parses is always an operator spec; otherwise ``module:callable`` is tried, and if
    that is not importable either, the operator parser's error is raised. Without ``allow_code`` nothing is
    imported: a spec naming code is a :class:`UserError` (it came from a file's contents, not from the user).
    """
    left, _, right = spec.rpartition(":")
    if left.endswith(".py") and right.isidentifier():
        if not allow_code:
            raise _refuse_code(spec)
        path = Path(left)
        if not path.is_file():
            raise UserError(f"operator file {path} does not exist; check the path in {spec!r}.")
        module = _load_code_file(path)
        return _callable_of(module, left, right)
    parse_error: Optional[UserError] = None
    try:
        from pnprgm import operators

        operators.parse(spec)
        return None
    except UserError as err:
        parse_error = err
    except ImportError:
        pass
    if left and right.isidentifier() and all(part.isidentifier() for part in left.split(".")):
        if not allow_code:
            raise _refuse_code(spec, parse_error)
        module = _import_user_module(left)
        if module is not None:
            return _callable_of(module, left, right)
    if parse_error is not None:
        raise parse_error
    return None


#: ``file.py`` modules loaded, by (resolved path, mtime, size): a batch runs the file's top-level code once, and
#: again only when the file changed (as ``import`` does for a module, which caches it in ``sys.modules``)
_CODE_FILES: dict[tuple, Any] = {}


def _load_code_file(path: Path):
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _CODE_FILES:
        module_spec = importlib.util.spec_from_file_location(f"_pnprgm_user_op_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        before = set(sys.modules)
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:
            raise UserError(f"cannot import {path}: {first_line(err, 160, named=True)}.") from None
        _LOCAL_IMPORTS[str(path.resolve())] = _local_modules_loaded(before, path.resolve().parent)
        _CODE_FILES[key] = module
    return _CODE_FILES[key]


#: The user's own modules that importing a code file or module brought in (source files in the code's folder tree),
#: by the code's resolved source path: hashed with it by :func:`code_sha256`, so that a helper module the operator
#: imports counts as part of its code.
_LOCAL_IMPORTS: dict[str, list[str]] = {}


def _local_modules_loaded(before: set, folder: Path) -> list[str]:
    """The ``.py`` sources under ``folder`` of the modules imported since ``before`` (a ``sys.modules`` snapshot)."""
    found = set()
    for name in set(sys.modules) - before:
        origin = getattr(getattr(sys.modules.get(name), "__spec__", None), "origin", None)
        if origin and str(origin).endswith(".py") and Path(origin).resolve().is_relative_to(folder):
            found.add(str(Path(origin).resolve()))
    return sorted(found)


def code_sha256(spec: str) -> Optional[str]:
    """The sha256 of the source behind a typed ``file.py:callable`` or ``module:callable`` spec (imported by
    :func:`typed_operator_callable` first): its file's, or, where importing it brought in modules of its own folder
    tree (a helper module), the sha256 of those files' digests in order; None where there is no source file (a
    compiled module)."""
    from pnprgm.io import sha256_bytes, sha256_file

    left, _, _ = spec.rpartition(":")
    if left.endswith(".py"):
        source = left
    else:
        origin = getattr(getattr(sys.modules.get(left), "__spec__", None), "origin", None)
        if not (origin and str(origin).endswith(".py") and Path(origin).is_file()):
            return None
        source = origin
    resolved = str(Path(source).resolve())
    helpers = [f for f in _LOCAL_IMPORTS.get(resolved, []) if f != resolved and Path(f).is_file()]
    if not helpers:
        return sha256_file(source)
    return sha256_bytes("\n".join(sha256_file(f) for f in [resolved, *helpers]).encode())


def _import_user_module(name: str):
    """The module the user named in ``--operator module:callable``, found as ``python -m`` would (the current folder
    first); None when it does not exist. A module that exists but fails to import is a :class:`UserError` with the
    real cause (a syntax error, a module it imports that is missing), not "unknown operator"."""
    here = os.getcwd()  # kept: the module may change folder as it is imported
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    before = set(sys.modules)
    try:
        module = importlib.import_module(name)
        origin = getattr(getattr(module, "__spec__", None), "origin", None)
        top = sys.modules.get(name.split(".")[0])
        top_file = getattr(top, "__file__", None)
        if origin and top_file and name not in before:  # imported now: what came with it is known
            # the top package's folder (a package: its own; a single module: the folder it sits in)
            folder = Path(top_file).resolve().parent
            _LOCAL_IMPORTS[str(Path(origin).resolve())] = _local_modules_loaded(before, folder)
        return module
    except ModuleNotFoundError as err:
        missing = err.name or ""
        package, _, module = name.rpartition(".")
        if missing == name and package and importlib.util.find_spec(package) is not None:
            raise UserError(f"cannot import {name}: the package {package} has no module {module!r}; check the "
                            f"name in --operator.") from None
        if missing and (name == missing or name.startswith(missing + ".")):
            return None
        raise UserError(f"cannot import {name}: it imports {missing or 'a module'}, which is not installed "
                        f"({str(err)[:120]}).") from None
    except Exception as err:  # its own code failed: a SyntaxError, an exception at import time
        where = f" ({err.filename}, line {err.lineno})" if isinstance(err, SyntaxError) and err.filename else ""
        raise UserError(f"cannot import {name}: {first_line(err, 160, named=True)}{where}.") from None
    finally:
        if added and here in sys.path:
            sys.path.remove(here)


def _callable_of(module, left: str, right: str) -> Callable:
    factory = getattr(module, right, None)
    if not callable(factory):
        raise UserError(f"{left} has no callable {right!r}; give module:callable returning a LinearPhysics.")
    return factory


def operator_files(config: ProcessConfig) -> list[dict]:
    """``[{"path", "sha256"}]`` of the files the process's operator spec reads (``blur:file``, ``mask:file``), as the
    spec names them: recorded with a run and its model, since the spec holds only the path. Empty for other specs."""
    from pnprgm import operators
    from pnprgm.io import sha256_file

    if config.name != "operator" or not isinstance(config.operator, str):
        return []
    try:
        paths = operators.files_read(config.operator)
    except (UserError, ImportError):  # module:callable, whose code reads what it reads
        return []
    return [{"path": str(path), "sha256": sha256_file(path) if Path(path).is_file() else None} for path in paths]


#: operator files (kernels, masks) up to this many bytes in all travel inside the model file, so that the model
#: restores on any machine; larger ones are recorded by path and sha256 only
EMBEDDED_FILES_LIMIT = 8 * 2**20


def operator_file_data(config: ProcessConfig) -> dict[str, torch.Tensor]:
    """``{sha256: the file's bytes as a uint8 tensor}`` of the files the operator reads, read now, for the model file
    (tensors load with ``weights_only=True``); empty when they are together above :data:`EMBEDDED_FILES_LIMIT`."""
    from pnprgm.io import sha256_bytes

    data: dict[str, torch.Tensor] = {}
    for entry in operator_files(config):
        path = Path(entry["path"])
        if entry["sha256"] is None or entry["sha256"] in data:
            continue
        if sum(t.numel() for t in data.values()) + path.stat().st_size > EMBEDDED_FILES_LIMIT:
            return {}
        content = path.read_bytes()
        if sha256_bytes(content) != entry["sha256"]:
            raise UserError(f"{path} changed while the training started; leave it alone and start again.")
        data[entry["sha256"]] = torch.frombuffer(bytearray(content), dtype=torch.uint8) if content else \
            torch.zeros(0, dtype=torch.uint8)
    return data


def check_operator_files(recorded: list[dict], config: ProcessConfig, *, when: str) -> None:
    """A :class:`UserError` when a file the operator read at training is missing now or has other contents (the
    spec names it by path, so another file there would silently make another operator)."""
    now = {entry["path"]: entry["sha256"] for entry in operator_files(config)}
    for entry in recorded or []:
        path = entry.get("path")
        if path not in now:
            continue  # another --operator was given, whose files are its own
        if now[path] is None:
            raise UserError(f"the operator reads {path}, which is not there ({when}); run from the folder the model "
                            f"was trained in, or give --operator with the file's path.")
        if entry.get("sha256") and now[path] != entry["sha256"]:
            raise UserError(f"{path} has changed since the training started (sha256 {str(entry['sha256'])[:12]}... "
                            f"then, {now[path][:12]}... now); put the original back ({when}).")


def process_size_multiple(config: ProcessConfig) -> int:
    """Size multiple images of a process need (1 for most; ``sr``: ``sr_scale^(T//2)``)."""
    config = resolve_process(config)
    return PROCESSES.get(config.name).size_multiple(config)


def build_process(config: ProcessConfig, shape: tuple[int, int, int], device: str | torch.device = "cpu", *,
                  code_operator: Optional[str] = None) -> ForwardProcess:
    """The forward process of a (resolved or not) config for training images of ``shape`` (C, H, W).

    :param code_operator: the ``module:callable`` or ``file.py:callable`` operator spec the user typed (``--operator``),
        the only one that may be imported; a config whose operator names other code is refused (never imported).
    """
    config = resolve_process(config)
    process = PROCESSES.get(config.name)(config, tuple(shape), torch.device(device), code_operator=code_operator)
    process.check_shape(tuple(shape))
    return process
