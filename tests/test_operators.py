"""Operator contract tests, parametrised over the registry (``operators.names()``) plus extra specs and shapes.

Adjointness, prox optimality and dense solves, pseudo-inverses, shapes, records, seeds, deepinv's own checks,
reference values from deepinv's classes, and one-line errors for bad specs and files.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from pnprgm import operators
from pnprgm.operators.base import Operator
from pnprgm.errors import UserError

SHAPES = [(3, 37, 53), (1, 64, 64), (3, 64, 48)]
EXTRA = [
    "sr:factor=2,kernel=bicubic",
    "sr:factor=3,kernel=bicubic",
    "sr:factor=4,kernel=gaussian",
    "blur:gaussian,sigma=2,boundary=valid",
    "blur:box,size=4",
    "blur:box,size=4,boundary=valid",
    "blur:motion,length=9,seed=1,boundary=valid",
    "blur:gaussian,sigma=1.6+sr2",
    "sr2+blur:box,size=3",
    "mask:random,rate=0.3,seed=1+gray",
    "blur:file={kernel}",
    "blur:file={kernel},boundary=valid",
    "mask:file={mask}",
]
SPECS = operators.names() + EXTRA
F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> Path:
    """A 7x5 kernel (.npy) and masks (.png) of every test size."""
    folder = tmp_path_factory.mktemp("operator_files")
    rng = np.random.default_rng(0)
    np.save(folder / "kernel.npy", rng.random((7, 5)))
    from PIL import Image

    for height, width in {(s[1], s[2]) for s in SHAPES} | {(13, 14)}:
        Image.fromarray(((rng.random((height, width)) > 0.4) * 255).astype(np.uint8)).save(folder / f"mask_{height}x{width}.png")
    return folder


def resolve(spec: str, shape, folder: Path) -> str:
    return spec.format(kernel=folder / "kernel.npy", mask=folder / f"mask_{shape[1]}x{shape[2]}.png")


def skip_invalid(spec: str, shape) -> None:
    if "gray" in spec and shape[0] != 3:
        pytest.skip("gray maps RGB to one channel: a 1-channel image has no colour (a UserError, tested below)")


@lru_cache(maxsize=None)
def _cached(spec: str, shape) -> Operator:
    return operators.build(spec, shape, dtype=F64)


@pytest.fixture
def op_for(files):
    def make(spec: str, shape) -> Operator:
        skip_invalid(spec, shape)
        return _cached(resolve(spec, shape, files), tuple(shape))

    return make


def rand(shape, seed: int, batch: int = 2) -> torch.Tensor:
    return torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed), dtype=F64)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


contract = pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
every_spec = pytest.mark.parametrize("spec", SPECS)


# ---- contract tests -------------------------------------------------------------------------------------------
@every_spec
@contract
def test_shapes(op_for, spec, shape):
    op = op_for(spec, shape)
    assert op.in_shape == tuple(shape)
    x, y = rand(op.in_shape, 1), rand(op.out_shape, 2)
    assert op.A(x).shape == (2, *op.out_shape)
    assert op.A_adjoint(y).shape == (2, *op.in_shape)
    assert op.initial_estimate(y).shape == (2, *op.in_shape)
    assert op.prox_l2(x, y, 0.5).shape == (2, *op.in_shape)


@every_spec
@contract
def test_adjointness_float64(op_for, spec, shape):
    op = op_for(spec, shape)
    x, y = rand(op.in_shape, 3), rand(op.out_shape, 4)
    lhs, rhs = (op.A(x) * y).sum(), (x * op.A_adjoint(y)).sum()
    assert abs(lhs - rhs) / abs(lhs) < 1e-6


@every_spec
@contract
@pytest.mark.filterwarnings("ignore:Power iteration")
def test_deepinv_physics_checks(op_for, spec, shape):
    op = op_for(spec, shape)
    torch.manual_seed(5)
    assert op.adjointness_test(torch.zeros((1, *op.in_shape), dtype=F64), num_samples=2) < 1e-6
    sqnorm = float(op.compute_sqnorm(torch.zeros((1, *op.in_shape), dtype=F64), max_iter=100, tol=1e-6, verbose=False))
    assert 0 < sqnorm <= 1.05  # kernels sum to 1, gray weights sum to 1, masks and means: no operator amplifies
    if isinstance(op, operators.DiagonalGram):  # ||A||^2 = max diag(A A^T) exactly
        expected = float(op.gram_diagonal(torch.zeros((1, *op.out_shape), dtype=F64)).max())
        assert sqnorm == pytest.approx(expected, rel=1e-3)


@every_spec
@contract
def test_prox_optimality(op_for, spec, shape):
    """The gradient A^T(Ax - y) + (x - z)/gamma of the prox objective vanishes at the returned point."""
    op = op_for(spec, shape)
    z, y = rand(op.in_shape, 6), rand(op.out_shape, 7)
    for gamma in (0.05, 2.0, torch.tensor([0.3, 30.0], dtype=F64)):
        x = op.prox_l2(z, y, gamma)
        g = gamma.view(-1, 1, 1, 1) if isinstance(gamma, torch.Tensor) else gamma
        gradient = op.A_adjoint(op.A(x) - y) + (x - z) / g
        scale = op.A_adjoint(y).norm() + (z / g).norm()
        assert gradient.norm() / scale < 1e-8, f"gamma={gamma}"


@every_spec
@contract
def test_pseudo_inverse_consistency(op_for, spec, shape):
    """A A^+ y = y on the range of A (every y when A has full row rank)."""
    op = op_for(spec, shape)
    y = op.A(rand(op.in_shape, 8))
    if op.closed_form_prox:
        assert rel(op.A(op.A_dagger(y)), y) < 1e-6
    else:  # LSQR on an ill-conditioned blur: an approximation by design
        assert rel(op.A(op.A_dagger(y, max_iter=100)), y) < 2e-2
    if isinstance(op, operators.DiagonalGram) and not isinstance(op, operators.masking.Mask):
        y = rand(op.out_shape, 9)  # block mean, gray, identity: full row rank
        assert rel(op.A(op.A_dagger(y)), y) < 1e-10


@every_spec
@contract
def test_record_round_trip(op_for, spec, shape, tmp_path):
    op = op_for(spec, shape)
    meta, arrays = operators.to_record(op)
    meta = json.loads(json.dumps(meta))
    copies = [operators.from_record(meta, arrays, dtype=F64),
              operators.load(operators.save(op, tmp_path / "op.json"), dtype=F64)]
    x, y = rand(op.in_shape, 10), rand(op.out_shape, 11)
    for copy in copies:
        assert copy.spec == op.spec and copy.out_shape == op.out_shape
        assert torch.equal(copy.A(x), op.A(x))
        assert torch.equal(copy.A_adjoint(y), op.A_adjoint(y))
        assert torch.allclose(copy.prox_l2(x, y, 0.7), op.prox_l2(x, y, 0.7), rtol=0, atol=1e-12)


@every_spec
@contract
def test_canonical_spec_rebuilds_identically(op_for, spec, shape):
    """Twice from the same spec (seeds included) and from op.spec: the same operator."""
    op = op_for(spec, shape)
    x = rand(op.in_shape, 12)
    for again in (operators.build(op.spec, shape, dtype=F64), operators.build(op.spec, shape, dtype=F64)):
        assert again is not op and torch.equal(again.A(x), op.A(x))


@every_spec
@contract
def test_initial_estimate_is_consistent(op_for, spec, shape):
    op = op_for(spec, shape)
    x = torch.rand((1, *op.in_shape), generator=torch.Generator().manual_seed(13), dtype=F64)
    y = op.A(x)
    estimate = op.initial_estimate(y)
    assert estimate.shape == x.shape and torch.isfinite(estimate).all()
    if op.variant_name in ("identity", "gray:flat", "gray:rec601") or spec in ("sr", "sr2", "sr4", "sr8"):
        assert rel(op.A(estimate), y) < 1e-12  # replication is consistent with the measurement
    # no worse than returning zeros, and finite
    assert (estimate - x).norm() < x.norm()


# ---- dense checks on a tiny size ------------------------------------------------------------------------------
TINY = (3, 13, 14)  # 546 unknowns: dense solves stay fast; a 13x13 valid blur still fits


def dense(fn, shape) -> torch.Tensor:
    n = math.prod(shape)
    return fn(torch.eye(n, dtype=F64).reshape(n, *shape)).reshape(n, -1).T


@every_spec
def test_dense_prox_and_pseudo_inverse(files, spec):
    spec = resolve(spec, TINY, files)
    try:
        op = operators.build(spec, TINY, dtype=F64)
    except UserError as err:
        assert "does not fit" in str(err)  # a 13x13 valid blur on 16x18 leaves no room: stated, not silent
        pytest.skip(str(err))
    A = dense(op.A, TINY)
    assert torch.allclose(dense(op.A_adjoint, op.out_shape), A.T, atol=1e-12)
    z, y = rand(TINY, 14, 1), rand(op.out_shape, 15, 1)
    gamma = 0.8
    expected = torch.linalg.solve(A.T @ A + torch.eye(A.shape[1], dtype=F64) / gamma, A.T @ y.flatten() + z.flatten() / gamma)
    assert rel(op.prox_l2(z, y, gamma).flatten(), expected) < 1e-8
    if op.closed_form_prox:
        cutoff = math.sqrt(10 * torch.finfo(F64).eps)  # fourier_dagger drops s < cutoff * s_max
        expected = torch.linalg.pinv(A, rtol=cutoff) @ y.flatten()
        assert rel(op.A_dagger(y).flatten(), expected) < 1e-6


def test_closed_form_prox_matches_conjugate_gradient():
    """The closed forms (diagonal Gram, Zhao's Fourier formula, composed) agree with the generic CG prox."""
    for spec in ("sr4", "blur:gaussian,sigma=1.5", "sr:factor=4,kernel=bicubic", "blur:gaussian,sigma=1.6+sr2",
                 "mask:strokes", "gray:rec601"):
        op = operators.build(spec, (3, 32, 48), dtype=F64)
        assert op.closed_form_prox
        z, y = rand(op.in_shape, 16), rand(op.out_shape, 17)
        assert rel(op.prox_l2(z, y, 1.3), Operator.prox_l2(op, z, y, 1.3)) < 1e-8


# ---- sizes and reference values -------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [2, 3, 4, 8])
@pytest.mark.parametrize("kernel", ["box", "bicubic", "gaussian"])
def test_sr_output_size_is_ceil(factor, kernel):
    for shape in SHAPES + [(1, 5, 7), (3, 9, 2)]:
        op = operators.build(f"sr:factor={factor},kernel={kernel}", shape)
        assert op.out_shape == (shape[0], math.ceil(shape[1] / factor), math.ceil(shape[2] / factor))


def test_block_mean_partial_blocks_average_existing_pixels():
    x = torch.arange(35, dtype=F64).reshape(1, 1, 5, 7)
    y = operators.build("sr4", (1, 5, 7), dtype=F64).A(x)[0, 0]
    assert y.shape == (2, 2)
    assert y[0, 0] == x[0, 0, :4, :4].mean() and y[0, 1] == x[0, 0, :4, 4:].mean()
    assert y[1, 0] == x[0, 0, 4:, :4].mean() and y[1, 1] == x[0, 0, 4:, 4:].mean()


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_block_mean_equals_deepinv_valid_downsampling(factor):
    """REFERENCE.md: deepinv's Downsampling with a box filter and 'valid' padding is RGM's block mean."""
    from deepinv.physics import Downsampling

    shape = (3, 8 * 5, 8 * 3)
    ours = operators.build(f"sr{factor}", shape, dtype=F64)
    theirs = Downsampling(img_size=shape, filter=torch.ones(1, 1, factor, factor, dtype=F64) / factor**2,
                          factor=factor, padding="valid")
    x, y = rand(shape, 18), rand(ours.out_shape, 19)
    assert torch.allclose(ours.A(x), theirs.A(x), atol=1e-12)
    assert torch.allclose(ours.A_adjoint(y), theirs.A_adjoint(y), atol=1e-12)


def test_circular_blur_equals_deepinv_blurfft():
    from deepinv.physics import BlurFFT

    shape = (3, 37, 53)
    ours = operators.build("blur:gaussian,sigma=1.5", shape, dtype=F64)
    kernel = ours.kernel[None, None]
    theirs = BlurFFT(img_size=shape, filter=kernel)
    x = rand(shape, 20)
    assert torch.allclose(ours.A(x), theirs.A(x).to(F64), atol=1e-6)  # BlurFFT keeps its spectrum in float32


def test_mask_and_gray_equal_deepinv():
    from deepinv.physics import Decolorize, Inpainting

    shape = (3, 37, 53)
    x = rand(shape, 21)
    mask = operators.build("mask:random,rate=0.4,seed=3", shape, dtype=F64)
    theirs = Inpainting(img_size=shape, mask=mask.mask[0].expand(shape).clone())
    assert torch.equal(mask.A(x), theirs.A(x))
    flat = operators.build("gray", shape, dtype=F64)
    assert torch.allclose(flat.A(x), Decolorize(srf="flat").A(x.float()).to(F64), atol=1e-5)
    rec601 = operators.build("gray:rec601", shape, dtype=F64)
    assert torch.allclose(rec601.A(x), Decolorize(srf="rec601").A(x.float()).to(F64), atol=1e-3)  # deepinv rounds


def test_antialiased_sr_is_centred_on_blocks():
    """On a linear ramp, bicubic, Gaussian and block-mean SR agree away from the (periodic) border."""
    ramp = torch.arange(64, dtype=F64).view(1, 1, 1, 64).expand(1, 1, 48, 64) / 64
    for factor in (2, 3, 4):
        box = operators.build(f"sr:factor={factor}", (1, 48, 64), dtype=F64).A(ramp)
        for kernel in ("bicubic", "gaussian"):
            smooth = operators.build(f"sr:factor={factor},kernel={kernel}", (1, 48, 64), dtype=F64).A(ramp)
            inner = slice(4, -4)
            assert torch.allclose(smooth[..., inner, inner], box[..., inner, inner], atol=1e-9), (factor, kernel)


def test_bicubic_initial_estimate_beats_nearest_on_smooth_images():
    shape = (1, 64, 64)
    grid = torch.linspace(0, 3, 64, dtype=F64)
    x = (torch.sin(grid[:, None]) * torch.cos(grid[None, :]))[None, None]
    op = operators.build("sr:factor=4,kernel=bicubic", shape, dtype=F64)
    y = op.A(x)
    nearest = y.repeat_interleave(4, -2).repeat_interleave(4, -1)
    inner = (..., slice(8, -8), slice(8, -8))
    assert (op.initial_estimate(y) - x)[inner].norm() < 0.5 * (nearest - x)[inner].norm()


def test_mask_initial_estimate_keeps_observed_and_fills_holes():
    op = operators.build("mask:box,size=0.5", (3, 37, 53), dtype=F64)
    x = torch.full((1, 3, 37, 53), 0.25, dtype=F64)
    estimate = op.initial_estimate(op.A(x))
    assert torch.allclose(estimate, x)  # a constant image is filled exactly


def test_composition_applies_left_operator_first():
    shape = (3, 37, 53)
    blur = operators.build("blur:gaussian,sigma=1.6", shape, dtype=F64)
    sr = operators.build("sr2", blur.out_shape, dtype=F64)
    both = operators.build("blur:gaussian,sigma=1.6+sr2", shape, dtype=F64)
    x = rand(shape, 22)
    assert torch.equal(both.A(x), sr.A(blur.A(x)))
    assert both.spec == f"{blur.spec}+{sr.spec}"
    other = operators.build("sr2+blur:gaussian,sigma=1.6", shape, dtype=F64)
    assert other.out_shape == both.out_shape and not torch.allclose(other.A(x), both.A(x))
    assert both.closed_form_prox is False  # 37 x 53 is not divisible by 2: CG
    assert operators.build("blur:gaussian,sigma=1.6+sr2", (3, 38, 54)).closed_form_prox


# ---- seeds and noise ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["mask:random,rate=0.5", "mask:strokes", "blur:motion,length=15"])
def test_random_operators_are_determined_by_seed(spec):
    shape = (3, 64, 48)
    first, again = operators.build(f"{spec},seed=1", shape), operators.build(f"{spec},seed=1", shape)
    other = operators.build(f"{spec},seed=2", shape)
    key = next(iter(first.arrays()))
    assert np.array_equal(first.arrays()[key], again.arrays()[key])
    assert not np.array_equal(first.arrays()[key], other.arrays()[key])


def test_random_mask_rate_is_the_missing_fraction():
    op = operators.build("mask:random,rate=0.7,seed=0", (1, 64, 64))
    assert abs(1 - float(op.mask.mean()) - 0.7) < 0.03


def test_measure_is_seeded_gaussian_noise():
    op = operators.build("sr2", (3, 64, 48), dtype=F64)
    x = torch.rand((1, 3, 64, 48), dtype=F64)
    assert torch.equal(operators.measure(op, x, 0.0, seed=0), op.A(x))
    first, again = operators.measure(op, x, 0.1, seed=3), operators.measure(op, x, 0.1, seed=3)
    assert torch.equal(first, again) and not torch.equal(first, operators.measure(op, x, 0.1, seed=4))
    assert abs(float((first - op.A(x)).std()) - 0.1) < 0.01
    with pytest.raises(UserError):
        operators.measure(op, x, -0.1, seed=0)


def test_float32_default_matches_float64():
    for spec in ("sr4", "blur:gaussian,sigma=2", "blur:gaussian,sigma=2,boundary=valid", "mask:strokes", "gray"):
        op32, op64 = operators.build(spec, (3, 37, 53)), operators.build(spec, (3, 37, 53), dtype=F64)
        z, y = rand(op64.in_shape, 23), rand(op64.out_shape, 24)
        assert op32.kernel.dtype == torch.float32 if hasattr(op32, "kernel") else True
        assert rel(op32.prox_l2(z.float(), y.float(), 0.5).double(), op64.prox_l2(z, y, 0.5)) < 1e-4


# ---- registry, grammar and errors -----------------------------------------------------------------------------
def test_every_name_builds_and_is_documented():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "operators.md").read_text()
    assert set(operators.names()) >= {"identity", "sr2", "sr4", "sr8", "blur:gaussian", "mask:random", "gray:flat"}
    for name in operators.names():
        assert isinstance(operators.build(name, (3, 32, 32)), Operator)
    for family in operators.families():
        assert f"`{family}`" in docs
    for entry in operators.registry.entries():
        assert entry.name.split(":")[-1] in docs, entry.name


@pytest.mark.parametrize("spec,canonical", [
    ("sr4", "sr:factor=4,kernel=box"),
    ("SR:factor=3, kernel=bicubic", "sr:factor=3,kernel=bicubic"),
    ("sr4,kernel=gaussian", "sr:factor=4,kernel=gaussian"),
    ("blur", "blur:gaussian,sigma=2.0,boundary=circular"),
    ("blur:gaussian,sigma=1e+0", "blur:gaussian,sigma=1.0,boundary=circular"),
    ("gray", "gray:flat"),
    ("mask:box", "mask:box,size=0.3,cy=0.5,cx=0.5"),
    ("blur:box,size=3+sr2+gray", "blur:box,size=3,boundary=circular+sr:factor=2,kernel=box+gray:flat"),
])
def test_spec_grammar(spec, canonical):
    assert operators.build(spec, (3, 32, 32)).spec == canonical


def test_file_variant_is_selected_by_its_key(files):
    op = operators.build(f"blur:file={files / 'kernel.npy'}", (3, 32, 32))
    assert op.variant_name == "blur:file" and op.kernel.shape == (7, 5)
    assert float(op.kernel.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("spec,words", [
    ("blurr", ["unknown operator 'blurr'", "Did you mean 'blur'", "Valid:", "sr4"]),
    ("", ["empty operator spec"]),
    ("blur:gauss", ["unknown blur variant 'gauss'", "gaussian, box, motion, file"]),
    ("blur:gaussian,sigm=2", ["unknown parameter 'sigm'", "valid: sigma, size, boundary"]),
    ("blur:box,sigma=2", ["unknown parameter 'sigma'", "valid: size, boundary"]),
    ("sr:factor=two", ["factor must be an integer", "'two'"]),
    ("sr:factor=4,kernel=lanczos", ["kernel must be one of box, bicubic, gaussian"]),
    ("sr:factor=1", ["at least 2"]),
    ("sr4,sigma=1", ["kernel=gaussian only"]),
    ("sr4,factor=2", ["given twice"]),
    ("blur:gaussian,2", ["expected key=value"]),
    ("blur:gaussian,boundary=reflect", ["boundary must be one of circular, valid"]),
    ("mask:random,rate=1", ["[0, 1)"]),
    ("blur:file", ["file"]),
    ("sr4+", ["'+' must join two operators"]),
    ("sr4:x", ["takes no variant"]),
])
def test_bad_specs_are_one_line_user_errors(spec, words):
    with pytest.raises(UserError) as info:
        operators.build(spec, (3, 32, 32))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_bad_shapes_are_user_errors():
    with pytest.raises(UserError, match="3-channel"):
        operators.build("gray", (1, 32, 32))
    with pytest.raises(UserError, match="does not fit"):
        operators.build("blur:gaussian,sigma=3,boundary=valid", (3, 12, 40))
    with pytest.raises(UserError, match="image shape"):
        operators.build("sr4", (32, 32))


def _expect(spec: str, shape, *words):
    with pytest.raises(UserError) as info:
        operators.build(spec, shape)
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_bad_kernel_files(tmp_path):
    shape = (3, 32, 32)
    _expect(f"blur:file={tmp_path / 'missing.npy'}", shape, "missing.npy", "does not exist")
    (tmp_path / "corrupt.npy").write_bytes(b"not numpy")
    _expect(f"blur:file={tmp_path / 'corrupt.npy'}", shape, "corrupt.npy", "not a .npy file (it lacks NumPy's header)")
    np.save(tmp_path / "cut.npy", np.ones((5, 5)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "cut.npy").read_bytes()[:100])
    _expect(f"blur:file={tmp_path / 'cut.npy'}", shape, "cut.npy", "cannot read")
    np.save(tmp_path / "objects.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    _expect(f"blur:file={tmp_path / 'objects.npy'}", shape, "objects.npy", "Python objects, which pnprgm never loads")
    np.save(tmp_path / "complex.npy", np.ones((3, 3), dtype=complex))
    _expect(f"blur:file={tmp_path / 'complex.npy'}", shape, "complex.npy", "real numbers")
    np.save(tmp_path / "empty.npy", np.zeros((0, 0)))
    _expect(f"blur:file={tmp_path / 'empty.npy'}", shape, "empty.npy", "at least one value")
    for name in ("corrupt.npy", "objects.npy"):  # never numpy's advice to load the file unsafely
        with pytest.raises(UserError) as info:
            operators.build(f"blur:file={tmp_path / name}", shape)
        assert "allow_pickle" not in str(info.value)
    (tmp_path / "corrupt.png").write_bytes(b"not png")
    _expect(f"blur:file={tmp_path / 'corrupt.png'}", shape, "corrupt.png", "not a readable image")
    np.save(tmp_path / "zeros.npy", np.zeros((5, 5)))
    _expect(f"blur:file={tmp_path / 'zeros.npy'}", shape, "zeros.npy", "all zeros")
    np.save(tmp_path / "big.npy", np.ones((40, 5)))
    _expect(f"blur:file={tmp_path / 'big.npy'}", shape, "big.npy", "larger than the 32x32 image")
    np.save(tmp_path / "cube.npy", np.ones((3, 5, 5)))
    _expect(f"blur:file={tmp_path / 'cube.npy'}", shape, "cube.npy", "2-D")
    np.save(tmp_path / "nan.npy", np.full((3, 3), np.nan))
    _expect(f"blur:file={tmp_path / 'nan.npy'}", shape, "nan.npy", "NaN")
    np.save(tmp_path / "negative.npy", -np.ones((3, 3)))
    _expect(f"blur:file={tmp_path / 'negative.npy'}", shape, "negative.npy", "positive")
    _expect(f"blur:file={tmp_path}", shape, "is not a file")


def test_kernel_from_png(tmp_path):
    from PIL import Image

    array = np.zeros((5, 5), dtype=np.uint8)
    array[2, :] = 255
    Image.fromarray(array).save(tmp_path / "k.png")
    op = operators.build(f"blur:file={tmp_path / 'k.png'}", (1, 16, 16), dtype=F64)
    assert torch.allclose(op.kernel, torch.from_numpy(array / array.sum()))


@pytest.mark.parametrize("kind", ["blur", "mask"])
def test_a_colour_kernel_or_mask_image_is_refused_and_a_gray_one_saved_as_rgb_is_read(tmp_path, kind):
    """One kernel (one mask) serves every channel: a colour picture would be averaged into a kernel nobody drew."""
    from PIL import Image

    gray = np.zeros((9, 9), dtype=np.uint8)
    gray[4, :] = 255
    gray[2:7, 4] = 128
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "gray_as_rgb.png")
    colour = np.stack([gray, gray, np.zeros_like(gray)], axis=-1)  # the horizontal line lacks blue
    Image.fromarray(colour).save(tmp_path / "colour.png")
    shape = (3, 9, 9)
    _expect(f"{kind}:file={tmp_path / 'colour.png'}", shape, "colour.png", "channels differ (by up to 1.00)",
            "save it as a gray image")
    op = operators.build(f"{kind}:file={tmp_path / 'gray_as_rgb.png'}", shape, dtype=F64)
    if kind == "blur":
        assert torch.allclose(op.kernel, torch.from_numpy(gray / gray.sum()))
    else:
        assert torch.equal(op.mask[0, 0].bool(), torch.from_numpy(gray > 127))


@pytest.mark.parametrize("kind", ["blur", "mask"])
def test_a_kernel_or_mask_drawn_with_transparency_is_refused_and_an_opaque_alpha_is_ignored(tmp_path, kind):
    """Reading drops the alpha: the colours an editor keeps under transparent pixels would become the values."""
    from PIL import Image

    gray = np.zeros((9, 9), dtype=np.uint8)
    gray[4, :] = 255
    hidden = np.stack([gray, 255 - gray, gray, np.where(gray > 0, 255, 0).astype(np.uint8)], axis=-1)
    Image.fromarray(hidden, "RGBA").save(tmp_path / "drawn.png")
    opaque = np.stack([gray] * 3 + [np.full_like(gray, 255)], axis=-1)
    Image.fromarray(opaque, "RGBA").save(tmp_path / "opaque.png")
    Image.fromarray(np.stack([gray, np.full_like(gray, 255)], axis=-1), "LA").save(tmp_path / "gray_alpha.png")
    shape = (3, 9, 9)
    _expect(f"{kind}:file={tmp_path / 'drawn.png'}", shape, "drawn.png", "has transparent pixels",
            "save it without transparency")
    for name in ("opaque.png", "gray_alpha.png"):
        with pytest.warns(UserWarning, match="alpha channel dropped"):
            op = operators.build(f"{kind}:file={tmp_path / name}", shape, dtype=F64)
        if kind == "blur":
            assert torch.allclose(op.kernel, torch.from_numpy(gray / gray.sum()))
        else:
            assert torch.equal(op.mask[0, 0].bool(), torch.from_numpy(gray > 127))


@pytest.mark.parametrize("spec, hint", [("mask:box", "choose a smaller box"),
                                        ("mask:strokes", "use fewer or thinner strokes")])
def test_a_mask_that_hides_every_pixel_says_what_to_change(spec, hint):
    _expect(spec, (3, 1, 1), "observes no pixel of the 1x1 image", hint)


def test_bad_mask_files(tmp_path):
    from PIL import Image

    shape = (3, 32, 40)
    _expect(f"mask:file={tmp_path / 'missing.png'}", shape, "missing.png", "does not exist")
    Image.fromarray(np.full((32, 41), 255, dtype=np.uint8)).save(tmp_path / "size.png")
    _expect(f"mask:file={tmp_path / 'size.png'}", shape, "size.png", "32x41 but the image is 32x40")
    Image.fromarray(np.zeros((32, 40), dtype=np.uint8)).save(tmp_path / "black.png")
    _expect(f"mask:file={tmp_path / 'black.png'}", shape, "observes no pixel", "the file is all black")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    _expect(f"mask:file={tmp_path / 'broken.png'}", shape, "broken.png", "not a readable image")
    np.save(tmp_path / "m.npy", np.ones((32, 40), dtype=bool))
    assert operators.build(f"mask:file={tmp_path / 'm.npy'}", shape).mask.all()


def test_bad_records_are_user_errors():
    op = operators.build("mask:random", (3, 16, 16))
    meta, arrays = operators.to_record(op)
    with pytest.raises(UserError, match="lacks the array"):
        operators.from_record(meta, {})
    with pytest.raises(UserError, match="expected"):
        operators.from_record(meta, {"0.mask": np.ones((3, 3))})
    with pytest.raises(UserError, match="not a pnprgm operator record"):
        operators.from_record({"spec": "sr4"}, {})
    with pytest.raises(UserError, match="unknown operator"):
        operators.from_record({**meta, "parts": [{**meta["parts"][0], "name": "warp"}]}, arrays)


def test_deepinv_data_fidelity_uses_our_prox_and_adjoint():
    from deepinv.optim.data_fidelity import L2

    op = operators.build("blur:gaussian,sigma=1.6+sr2", (3, 32, 40), dtype=F64)
    x = rand(op.in_shape, 25)
    y = op.A(x)
    assert torch.equal(L2().prox(x, y, op, gamma=0.5), op.prox_l2(x, y, 0.5))
    assert torch.equal(L2().grad(x, y, op), op.A_adjoint(op.A(x) - y))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("spec", ["sr4", "sr:factor=3,kernel=bicubic", "blur:gaussian,sigma=1.6+sr2",
                                  "blur:motion,boundary=valid", "mask:strokes", "gray"])
def test_cuda_matches_cpu(spec):
    shape = (3, 37, 53)
    cpu, gpu = operators.build(spec, shape, dtype=F64), operators.build(spec, shape, device="cuda", dtype=F64)
    x, y = rand(shape, 26), rand(cpu.out_shape, 27)
    assert torch.allclose(gpu.A(x.cuda()).cpu(), cpu.A(x), atol=1e-10)
    assert torch.allclose(gpu.prox_l2(x.cuda(), y.cuda(), 0.5).cpu(), cpu.prox_l2(x, y, 0.5), atol=1e-8)
    noise_gpu = operators.measure(gpu, x.cuda(), 0.1, 3).cpu() - gpu.A(x.cuda()).cpu()
    assert torch.allclose(noise_gpu, operators.measure(cpu, x, 0.1, 3) - cpu.A(x), atol=1e-10)  # the same draw
    meta, arrays = operators.to_record(gpu)
    assert torch.equal(operators.from_record(meta, arrays, device="cuda", dtype=F64).A(x.cuda()), gpu.A(x.cuda()))


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("shape", SHAPES)
def test_image_shape_inverts_the_operator(op_for, files, spec, shape):
    """``image_shape`` sizes the image behind a measurement exactly (a 'valid' blur adds the kernel, SR multiplies)."""
    op = op_for(spec, shape)
    if "mask:file" in spec:  # the mask fixes the size: it must be the measurement's
        assert operators.image_shape(resolve(spec, shape, files), op.out_shape) == tuple(shape)
        return
    found = operators.image_shape(resolve(spec, shape, files), op.out_shape)
    assert operators.build(resolve(spec, shape, files), found).out_shape == op.out_shape
    if op.image_size_for(op.out_shape[1:]) == tuple(shape[1:]):
        assert found == (shape[0] if "gray" not in spec else 3, *shape[1:])


def test_visible_window_is_where_a_centred_delta_kernel_copies_the_image(tmp_path):
    kernel = np.zeros((5, 4))
    kernel[2, 1] = 1.0  # the centre ((k - 1) // 2): the blur is the identity, the valid part a crop
    np.save(tmp_path / "delta.npy", kernel)
    for spec, after in ((f"blur:file={tmp_path / 'delta.npy'},boundary=valid", lambda v: v),
                        (f"blur:file={tmp_path / 'delta.npy'},boundary=valid+sr2", lambda v: torch.nn.functional.avg_pool2d(v, 2)),
                        ("blur:gaussian", None)):
        op = operators.build(spec, (3, 20, 25) if after is None else (3, 20, 27), dtype=F64)
        window = op.visible_window()
        if after is None:
            assert window is None
            continue
        image = torch.rand((2, *op.in_shape), dtype=F64)
        torch.testing.assert_close(op.A(image), after(image[..., window[0], window[1]]))


def test_photo_defaults_apply_only_where_the_spec_is_silent():
    assert operators.build("blur:gaussian", (3, 30, 30), defaults=operators.PHOTO_DEFAULTS).out_shape == (3, 18, 18)
    assert operators.build("blur:gaussian,boundary=circular", (3, 30, 30), defaults=operators.PHOTO_DEFAULTS).out_shape == (3, 30, 30)
    assert operators.build("sr2+blur:box,size=3", (3, 30, 30), defaults=operators.PHOTO_DEFAULTS).out_shape == (3, 13, 13)
    assert operators.build("mask:box", (3, 30, 30), defaults=operators.PHOTO_DEFAULTS).out_shape == (3, 30, 30)


@pytest.mark.parametrize("spec, words", [
    ("blur:gaussian,sigma=1e6", ("does not fit a 48x40 image", "at most 1025 px")),
    ("blur:box,size=100000", ("blur:box", "does not fit")),
    ("blur:motion,length=100000", ("blur:motion", "does not fit")),
    ("sr:factor=2,kernel=gaussian,sigma=1e9", ("sr:", "does not fit")),
    ("mask:strokes,count=1000000", ("between 1 and 1000",)),
])
def test_kernels_larger_than_the_image_are_refused_before_allocation(spec, words):
    """A kernel side beyond twice the image is refused by name (these asked for terabytes or ran for minutes)."""
    _expect(spec, (3, 48, 40), *words)
    operators.build("blur:gaussian,size=1025", (3, 48, 40))  # the bound itself is allowed


@pytest.mark.parametrize("spec, words", [
    ("sr:kernel=gaussian,sigma=0.01", ("sigma 0.01", "no usable weight", "larger sigma")),  # every tap underflowed
    ("blur:gaussian,sigma=0.01,size=2", ("sigma 0.01 on 2x2", "no usable weight")),
    ("blur:gaussian,sigma=1e-160", ("no usable weight",)),  # 0/0 at the centre tap
    ("blur:gaussian,sigma=1e308", ("does not fit",)),  # was OverflowError in ceil()
    ("blur:motion,spread=1e200", ("spread must be in (0, 50]",)),  # was OverflowError inside deepinv
    ("blur:motion,spread=50", ("spread 50 (its trajectory left", "smaller spread")),  # said "use another seed"
])
def test_degenerate_kernels_are_refused_in_one_line_not_written_as_nan(spec, words):
    """A kernel with no weight once gave a NaN measurement and an all-black 'restoration' with exit code 0."""
    _expect(spec, (3, 48, 48), *words)


def test_a_kernel_file_whose_sum_overflows_is_refused(tmp_path):
    """Values of 1e308 sum to infinity: every weight became 0 and the measurement all black, with exit 0."""
    np.save(tmp_path / "huge.npy", np.full((3, 3), 1e308))
    _expect(f"blur:file={tmp_path / 'huge.npy'}", (3, 16, 16), "huge.npy", "no usable weight", "scale its values down")


def test_a_sharp_gaussian_with_odd_size_is_the_identity():
    """The refusal is for no weight at all: a tiny sigma on an odd grid keeps its centre tap."""
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    op = operators.build("blur:gaussian,sigma=0.01", (3, 16, 16))
    assert torch.allclose(op.A(x), x, atol=1e-6)


def test_an_operator_that_gives_nan_is_refused_before_a_measurement_is_made():
    from pnprgm.operators.noise import measure

    op = operators.build("blur:gaussian,sigma=1", (3, 16, 16))
    with pytest.raises(UserError, match="NaN or infinite"):
        measure(op, torch.full((1, 3, 16, 16), float("nan")), 0.01)


def test_python_api_misuse_is_one_named_error():
    """A numpy array made measure raise AttributeError, a fractional size was truncated in silence, a number as a spec
    was "empty", and an unknown solver was named as a missing preset 'sr-foo'."""
    import numpy as np

    import pnprgm

    op = operators.build("sr2", (3, 8, 8))
    with pytest.raises(UserError, match="x must be a torch.Tensor .* not ndarray"):
        operators.measure(op, np.zeros((1, 3, 8, 8)), 0.1)
    one = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(operators.measure(op, one, 0.1, seed=3), operators.measure(op, one[None], 0.1, seed=3)[0])
    with pytest.raises(UserError, match=r"an image \(C, H, W\) or a batch"):
        operators.measure(op, torch.zeros(8, 8), 0.1)
    for shape in ((3, 32.5, 32), (3.7, 32, 32)):
        with pytest.raises(UserError, match="must be \\(C, H, W\\) integers"):
            operators.build("sr2", shape)
    assert operators.build("sr2", (3, 32.0, 32)).out_shape == (3, 16, 16)
    with pytest.raises(UserError, match="an operator spec is text such as 'sr4'"):
        operators.build(4, (3, 8, 8))
    with pytest.raises(UserError, match="unknown solver 'foo'"):
        pnprgm.restore(torch.rand(3, 8, 8), "sr2", image_shape=(3, 16, 16), solver="foo")


def test_a_value_where_a_variant_would_go_names_the_key_form():
    with pytest.raises(UserError, match=r"^sr has no variants; give its parameters as key=value \(factor, kernel, "
                                        r"sigma\): pnprgm operators shows sr's with an example\.$"):
        operators.parse("sr:0")
    with pytest.raises(UserError, match=r"^identity takes no variant or parameter \('3'\); give just identity\.$"):
        operators.parse("identity:3")
    with pytest.raises(UserError, match="unknown blur variant 'gausian'; valid: gaussian"):
        operators.parse("blur:gausian")
