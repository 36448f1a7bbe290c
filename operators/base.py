"""The operator base class, the registry of operator variants, and the shared least-squares machinery.

Every operator is a :class:`deepinv.physics.LinearPhysics` for images of one shape ``in_shape = (C, H, W)``,
with measurements of shape ``out_shape``. Besides ``A`` / ``A_adjoint`` it provides a pseudo-inverse, the prox
of ``f(x) = 1/2 ||Ax - y||^2`` (deepinv's convention: ``argmin_x gamma/2 ||Ax-y||^2 + 1/2 ||x-z||^2``), a cheap
initial estimate, its canonical ``spec`` and a record (parameters + arrays) from which it is rebuilt exactly.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import numpy as np
import torch
from deepinv.optim.linear import conjugate_gradient, lsqr
from deepinv.physics import LinearPhysics

from pnprgm.errors import UserError
from pnprgm.registry import Registry

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class Variant:
    """One buildable operator kind, e.g. ``blur:gaussian``: its parameter dataclass and its factory.

    ``factory(params, in_shape, arrays=None|dict, device=..., dtype=...)`` derives its arrays (kernels, masks)
    from the parameters when ``arrays`` is None, else uses the given ones (rebuilding from a record).
    """

    name: str
    params: type
    factory: Callable[..., "Operator"]
    default: bool = False  # the variant used when the spec names only the family

    @property
    def family(self) -> str:
        return self.name.split(":")[0]

    @property
    def variant(self) -> Optional[str]:
        return self.name.split(":")[1] if ":" in self.name else None

    def buildable_with_defaults(self) -> bool:
        return all(
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            for f in dataclasses.fields(self.params)
        )


@dataclass(frozen=True)
class Alias:
    """A short name for a spec, e.g. ``sr4`` -> ``sr:factor=4``."""

    name: str
    spec: str


#: Every operator variant and alias; drives ``operators.names()``, ``pnprgm operators``, the tests and the docs.
registry: Registry[Variant | Alias] = Registry("operator")


def add_variant(name: str, params: type, summary: str, factory: Callable[..., "Operator"], *, default: bool = False) -> None:
    """Register the operator variant ``name`` built by ``factory(params, in_shape, arrays=..., device=..., dtype=...)``."""
    registry.add(name, Variant(name, params, factory, default), summary)


def register_variant(name: str, params: type, summary: str, *, default: bool = False):
    """Class decorator: register ``cls`` (its constructor is the factory) as the operator variant ``name``."""

    def decorate(cls):
        add_variant(name, params, summary, cls, default=default)
        return cls

    return decorate


def register_alias(name: str, spec: str, summary: str) -> None:
    registry.add(name, Alias(name, spec), summary)


def param(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a one-line description (shown by ``pnprgm operators``)."""
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def required(help: str) -> Any:
    return dataclasses.field(metadata={"help": help})


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def format_spec(name: str, params: Any) -> str:
    """Canonical spec of one operator: its variant name and every parameter that is not None, in field order."""
    items = [
        f"{f.name}={format_value(getattr(params, f.name))}"
        for f in dataclasses.fields(params)
        if getattr(params, f.name) is not None
    ]
    if not items:
        return name
    return f"{name},{','.join(items)}" if ":" in name else f"{name}:{','.join(items)}"


def check_shape(shape: Any) -> Shape:
    """``shape`` as a (C, H, W) tuple of positive ints; anything else is a :class:`UserError`."""
    try:
        values = tuple(int(v) for v in shape)
        whole = all(v == w for v, w in zip(shape, values))  # 32.5 is not a size (int() would make it 32 in silence)
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise UserError(f"image shape must be (C, H, W) integers, got {shape!r}.") from None
    if len(values) != 3 or min(values) < 1:
        raise UserError(f"image shape must be (C, H, W) with positive sizes, got {shape!r}.")
    return values  # type: ignore[return-value]


def as_lambda(gamma: Any, like: torch.Tensor) -> Any:
    """``1/gamma`` broadcastable against a (B, C, H, W) tensor (gamma: number, 0-d or (B,) tensor)."""
    if isinstance(gamma, torch.Tensor):
        gamma = gamma.to(device=like.device, dtype=like.real.dtype if like.is_complex() else like.dtype)
        if gamma.dim() == 1:
            gamma = gamma.view(-1, *([1] * (like.dim() - 1)))
        if torch.any(gamma <= 0):
            raise ValueError("prox_l2 needs gamma > 0")
        return 1.0 / gamma
    if gamma <= 0:
        raise ValueError("prox_l2 needs gamma > 0")
    return 1.0 / float(gamma)


def default_tol(dtype: torch.dtype) -> float:
    """Relative residual at which CG stops: near the precision the dtype can reach."""
    return 1e-11 if dtype == torch.float64 else 1e-5


def cg_solve(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, *, max_iter: int, tol: float) -> torch.Tensor:
    """Solve ``apply(x) = b`` (symmetric positive (semi-)definite) per batch item with deepinv's CG.

    deepinv adds ``eps=1e-8`` to the step denominator, which stalls float64 solves long before the tolerance;
    the smallest normal number of the dtype only guards against an exact 0/0.
    """
    return conjugate_gradient(apply, b, max_iter=max_iter, tol=tol, eps=torch.finfo(b.dtype).tiny, parallel_dim=[0])


class Operator(LinearPhysics):
    """Base class of pnprgm operators: a linear map from (B, *in_shape) images to (B, *out_shape) measurements.

    Subclasses define ``A`` and ``A_adjoint``; ``prox_l2`` and ``A_dagger`` default to conjugate gradient and are
    overridden by closed forms where they exist.

    :param name: registry variant name (``sr``, ``blur:gaussian``, ...).
    :param params: the variant's frozen parameter dataclass.
    :param in_shape: image shape (C, H, W).
    :param out_shape: measurement shape (C', H', W').
    :param cg_max_iter: iteration cap of the CG solves.
    """

    closed_form_prox: ClassVar[bool] = False

    def __init__(self, name: str, params: Any, in_shape: Shape, out_shape: Shape, *, device="cpu",
                 cg_max_iter: int = 500):
        # solver/max_iter/tol are read by deepinv's generic routines; ours use cg_max_iter and default_tol.
        super().__init__(device=device, max_iter=cg_max_iter, tol=1e-6, solver="CG", implicit_backward_solver=False)
        self.variant_name = name
        self.params = params
        self.in_shape: Shape = tuple(in_shape)  # type: ignore[assignment]
        self.out_shape: Shape = tuple(out_shape)  # type: ignore[assignment]
        self.img_size = self.in_shape  # deepinv's tests and adjoint helpers read img_size
        self.cg_max_iter = cg_max_iter

    # ---- description ---------------------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        """Canonical spec string: ``operators.build(op.spec, op.in_shape)`` rebuilds this operator
        (file-based and seeded operators rebuild identically as long as the file is unchanged)."""
        return format_spec(self.variant_name, self.params)

    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays (kernels, masks) needed to rebuild this operator exactly; see :func:`operators.to_record`."""
        return {}

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, in_shape={self.in_shape}, out_shape={self.out_shape}"

    def __repr__(self) -> str:  # nn.Module's repr would list deepinv's internals
        return f"{type(self).__name__}({self.extra_repr()})"

    def fourier_form(self) -> Optional[tuple[torch.Tensor, int]]:
        """``(T, r)`` when ``A x = decimate_r(ifft2(T * fft2(x)))`` on the (H, W) grid with r dividing H and W, else None.

        Lets a composition of circular blurs and a final decimation use the closed-form prox.
        """
        return None

    # ---- shapes ----------------------------------------------------------------------------------------------
    def image_size_for(self, size: tuple[int, int]) -> tuple[int, int]:
        """The image (H, W) whose measurement has ``size`` (h, w) under this operator's parameters (same size by
        default; decimations and 'valid' blurs override). Used to size the image behind a plain measurement."""
        return (int(size[0]), int(size[1]))

    def visible_window(self) -> Optional[tuple[slice, slice]]:
        """Rows and columns of the image that the measurement shows (the field of view of a real photo), or None
        when it shows the whole image. A 'valid' blur measures a larger scene than it shows: restoring a photo
        with it recovers that scene, and the output is cropped back to this window."""
        return None

    def _check(self, t: torch.Tensor, shape: Shape, what: str) -> None:
        if t.dim() != 4 or tuple(t.shape[1:]) != shape:
            raise ValueError(f"{self.spec}: {what} expects a (B, {', '.join(map(str, shape))}) tensor, got {tuple(t.shape)}")

    # ---- algebra ---------------------------------------------------------------------------------------------
    def A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor, **kwargs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _as_image(self, z: Any, y: torch.Tensor) -> torch.Tensor:
        if z is None or isinstance(z, (int, float)):
            return torch.full((y.shape[0], *self.in_shape), 0.0 if z is None else float(z), dtype=y.dtype, device=y.device)
        return z

    def prox_l2(self, z, y, gamma, *, max_iter: Optional[int] = None, tol: Optional[float] = None, **kwargs) -> torch.Tensor:
        """``argmin_x 1/2||Ax - y||^2 + 1/(2 gamma)||x - z||^2`` by CG on ``(A^T A + I/gamma) d = A^T (y - A z)``, ``x = z + d``.

        Solving for the correction from z (rather than deepinv's generic solve for x) keeps the warm start and
        the tolerance meaningful when the data term is weak.
        """
        z = self._as_image(z, y)
        lam = as_lambda(gamma, z)
        rhs = self.A_adjoint(y - self.A(z))
        step = cg_solve(lambda d: self.A_adjoint(self.A(d)) + lam * d, rhs,
                        max_iter=max_iter or self.cg_max_iter, tol=tol or default_tol(z.dtype))
        return z + step

    def A_dagger(self, y, *, max_iter: Optional[int] = None, tol: Optional[float] = None, **kwargs) -> torch.Tensor:
        """Minimum-norm least-squares solution by deepinv's LSQR from 0 (its residual decreases monotonically, unlike
        CG on ``A A^T u = y``, which matters for the ill-conditioned blurs that use this default)."""
        x, _ = lsqr(self.A, self.A_adjoint, y, max_iter=max_iter or self.cg_max_iter, tol=tol or default_tol(y.dtype),
                    parallel_dim=[0])
        return x

    def initial_estimate(self, y: torch.Tensor) -> torch.Tensor:
        """A cheap, good starting point in image space (the benchmark's baseline); default: the pseudo-inverse."""
        return self.A_dagger(y)


class DiagonalGram(Operator):
    """Operators whose ``A A^T`` is diagonal (block mean, masks, gray, identity): closed-form prox and pseudo-inverse.

    With ``d = diag(A A^T)``: ``prox = z + A^T ((y - A z) / (d + 1/gamma))`` and ``A^+ y = A^T (y / d)`` (0 where d = 0).
    The first form avoids the cancellation of the textbook ``(A^T A + I/gamma)^{-1}(A^T y + z/gamma)`` for large gamma.
    """

    closed_form_prox = True

    def gram_diagonal(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``diag(A A^T)``, broadcastable against a measurement batch like ``y``."""
        raise NotImplementedError

    def prox_l2(self, z, y, gamma, **kwargs) -> torch.Tensor:
        z = self._as_image(z, y)
        lam = as_lambda(gamma, y)
        return z + self.A_adjoint((y - self.A(z)) / (self.gram_diagonal(y) + lam))

    def A_dagger(self, y, **kwargs) -> torch.Tensor:
        d = self.gram_diagonal(y)
        inverse = torch.where(d > 0, 1.0 / torch.where(d > 0, d, torch.ones_like(d)), torch.zeros_like(d))
        return self.A_adjoint(y * inverse)


def from_numpy(array: np.ndarray, *, device, dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float64)).to(device=device, dtype=dtype)


def require_array(arrays: dict, key: str, shape: Optional[tuple[int, ...]], owner: str) -> np.ndarray:
    """Array ``key`` of an operator record, checked for presence, finiteness and (if given) shape."""
    if key not in arrays:
        raise UserError(f"operator record of {owner} lacks the array {key!r}; the sidecar is incomplete, degrade again.")
    array = np.asarray(arrays[key])
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise UserError(f"operator record of {owner}: array {key!r} has shape {array.shape}, expected {tuple(shape)}.")
    if not np.all(np.isfinite(array.astype(np.float64))):
        raise UserError(f"operator record of {owner}: array {key!r} holds non-finite values.")
    return array
