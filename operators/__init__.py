"""Linear degradation operators for pnprgm, built from short spec strings (grammar: docs/operators.md).

>>> from pnprgm import operators
>>> op = operators.build("blur:gaussian,sigma=1.6+sr2", (3, 37, 53))
>>> op.out_shape
(3, 19, 27)

Every operator is a :class:`deepinv.physics.LinearPhysics` with ``A``, ``A_adjoint``, ``A_dagger``, ``prox_l2``,
``initial_estimate``, ``spec``, ``in_shape`` and ``out_shape``; ``registry`` lists every variant and alias.
"""
from __future__ import annotations

if __name__ == "operators":  # the pre-namespace name, found only from a checkout: warn, then alias pnprgm.operators
    from pnprgm._checkout import redirect_old_name

    redirect_old_name(__name__)

# Importing the family modules registers their variants (order = listing order).
from pnprgm.operators import identity, downsampling, blur, masking, grayscale  # noqa: F401  isort: skip
from pnprgm.operators.base import Alias, DiagonalGram, Operator, Variant, registry
from pnprgm.operators.composition import Composed
from pnprgm.operators.noise import measure
from pnprgm.operators.record import from_record, load, save, to_record
from pnprgm.operators.blur import PHOTO_DEFAULTS
from pnprgm.operators.spec import (ParsedOperator, build, closest_name, families, files_read, image_shape, last_variant,
                                   names, names_code, parse, with_files)

__all__ = [
    "Alias", "Composed", "DiagonalGram", "Operator", "PHOTO_DEFAULTS", "ParsedOperator", "Variant", "build",
    "closest_name", "families", "files_read", "from_record", "image_shape", "last_variant", "load", "measure", "names", "names_code", "parse", "registry", "save", "to_record", "with_files",
]
