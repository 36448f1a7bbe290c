"""The layers stay apart: restoring never imports the training package, and the model package imports no solver."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

RESTORE_A_PHOTO = """
import sys, torch
import pnprgm
from pnprgm.restoration import restore
x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
restore(x, "identity", image_shape=(3, 16, 16), noise_sigma=0.05, denoiser="{denoiser}", iterations=1)
print(sorted(name for name in sys.modules if name.startswith("pnprgm.")))
"""


@pytest.mark.parametrize("denoiser", ["rgm", "tv"])
def test_restoring_does_not_import_training(denoiser):
    """A restoration with the shipped model (or a classical one) loads pnprgm.rgm, never pnprgm.training."""
    out = subprocess.run([sys.executable, "-c", RESTORE_A_PHOTO.format(denoiser=denoiser)], capture_output=True,
                         text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    loaded = eval(out.strip().splitlines()[-1])
    assert not [name for name in loaded if name.startswith("pnprgm.training")], loaded
    if denoiser == "rgm":
        assert "pnprgm.rgm.models" in loaded and "pnprgm.rgm.model_file" in loaded


def test_model_package_imports_no_solver_and_no_training():
    code = ("import sys; import pnprgm.rgm.models, pnprgm.rgm.model_file, pnprgm.rgm.architectures; "
            "print(sorted(n for n in sys.modules if n.startswith('pnprgm.')))")
    loaded = eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert not [name for name in loaded if name.startswith(("pnprgm.training", "pnprgm.solvers", "pnprgm.denoisers"))], loaded
