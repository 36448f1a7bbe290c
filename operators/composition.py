"""Composition ``a+b``: apply ``a`` first, then ``b`` (``A = B A_a``), e.g. ``blur:gaussian,sigma=1.6+sr2``.

The prox and pseudo-inverse are closed-form when every part is a circular convolution and only the last one
decimates with a factor dividing the image size (a circular blur followed by the block mean or anti-aliased SR
on divisible sizes); otherwise conjugate gradient. The initial estimate undoes the parts in reverse order with
their own initial estimates (e.g. nearest replication, then the blurred image as is).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from pnprgm.operators.base import Operator
from pnprgm.operators.fourier import fourier_dagger, fourier_prox


class Composed(Operator):
    """Chain of operators applied in order; ``parts[i].out_shape == parts[i + 1].in_shape``."""

    def __init__(self, parts: Sequence[Operator]):
        parts = list(parts)
        if len(parts) < 2:
            raise ValueError("a composition needs at least two operators")
        for first, second in zip(parts, parts[1:]):
            if tuple(first.out_shape) != tuple(second.in_shape):
                raise ValueError(f"cannot compose {first.spec} (output {first.out_shape}) with {second.spec} (input {second.in_shape})")
        super().__init__("compose", None, parts[0].in_shape, parts[-1].out_shape, device=parts[0]._device_holder.device)
        self.parts = torch.nn.ModuleList(parts)
        self._fourier_cache: dict = {}

    @property
    def spec(self) -> str:  # type: ignore[override]
        return "+".join(part.spec for part in self.parts)

    @property
    def closed_form_prox(self) -> bool:  # type: ignore[override]
        return self._fourier_parts() is not None

    def _fourier_parts(self) -> Optional[list]:
        forms = [part.fourier_form() for part in self.parts]
        if any(form is None for form in forms) or any(r != 1 for _, r in forms[:-1]):
            return None
        return forms

    def fourier_form(self):
        forms = self._fourier_parts()
        if forms is None:
            return None
        transfer = forms[0][0]
        for other, _ in forms[1:]:
            transfer = transfer * other.to(transfer)
        return transfer, forms[-1][1]

    def _transfer(self, like: torch.Tensor):
        key = (like.device, like.dtype)
        if key not in self._fourier_cache:
            form = self.fourier_form()
            complex_dtype = torch.complex128 if like.dtype == torch.float64 else torch.complex64
            self._fourier_cache = {key: None if form is None else (form[0].to(like.device, complex_dtype), form[1])}
        return self._fourier_cache[key]

    def image_size_for(self, size):
        for part in reversed(self.parts):
            size = part.image_size_for(size)
        return size

    def visible_window(self):
        """The measurement's rows and columns mapped back to image pixels through every part: shifted into the
        window of a part that has one ('valid' blur), scaled by the size ratio of the others (exact for
        decimations of divisible sizes); None when no part has a window."""
        if all(part.visible_window() is None for part in self.parts):
            return None
        rows, cols = slice(0, self.out_shape[1]), slice(0, self.out_shape[2])
        for part in reversed(self.parts):
            window = part.visible_window()
            if window is not None:
                rows = slice(window[0].start + rows.start, window[0].start + rows.stop)
                cols = slice(window[1].start + cols.start, window[1].start + cols.stop)
            else:
                sy, sx = part.in_shape[1] / part.out_shape[1], part.in_shape[2] / part.out_shape[2]
                rows = slice(round(rows.start * sy), round(rows.stop * sy))
                cols = slice(round(cols.start * sx), round(cols.stop * sx))
        return rows, cols

    def A(self, x, **kwargs):
        for part in self.parts:
            x = part.A(x)
        return x

    def A_adjoint(self, y, **kwargs):
        for part in reversed(self.parts):
            y = part.A_adjoint(y)
        return y

    def prox_l2(self, z, y, gamma, **kwargs):
        form = self._transfer(y)
        if form is None:
            return super().prox_l2(z, y, gamma, **kwargs)
        return fourier_prox(form[0], form[1], self._as_image(z, y), y, gamma)

    def A_dagger(self, y, **kwargs):
        form = self._transfer(y)
        if form is None:
            return super().A_dagger(y, **kwargs)
        return fourier_dagger(form[0], form[1], y)

    def initial_estimate(self, y):
        for part in reversed(self.parts):
            y = part.initial_estimate(y)
        return y
