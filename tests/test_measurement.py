"""Measurement sidecars: exact round trip, absence, and one-line errors for damaged or edited files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pnprgm import operators
from pnprgm import io
from pnprgm.errors import UserError
from pnprgm.measurement import SourceInfo, load_measurement, save_measurement, sidecar_paths


pytestmark = pytest.mark.usefixtures("one_thread")


def make(tmp_path, spec="mask:strokes,seed=3+sr2", shape=(3, 37, 53), sigma=0.05):
    op = operators.build(spec, shape)
    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(0))
    y = operators.measure(op, x, sigma, seed=11)
    image = tmp_path / "meas" / "photo.png"
    written = save_measurement(image, y, op, noise_sigma=sigma, seed=11, source=SourceInfo("in/photo.png", "ab" * 32, shape))
    return op, x, y, image, written


def test_round_trip_is_exact(tmp_path):
    op, x, y, image, written = make(tmp_path)
    assert [p.name for p in written] == ["photo.png", "photo.measurement.npz", "photo.measurement.json"]
    assert io.read_image(image).shape == op.out_shape  # the image is written at the measurement's own size
    loaded = load_measurement(image)
    assert torch.equal(loaded.y, y)  # the float measurement, not the clipped 8-bit PNG
    assert loaded.noise_sigma == 0.05 and loaded.seed == 11
    assert loaded.source == SourceInfo("in/photo.png", "ab" * 32, (3, 37, 53))
    assert loaded.operator.spec == op.spec and loaded.operator.in_shape == (3, 37, 53)
    assert torch.equal(loaded.operator.A(x), op.A(x))
    assert loaded.sidecar_path == sidecar_paths(image)[0]


def test_float64_and_device_arguments(tmp_path):
    _, x, _, image, _ = make(tmp_path, spec="blur:motion,seed=2", sigma=0.0)
    loaded = load_measurement(image, device="cpu", dtype=torch.float64)
    assert loaded.y.dtype == torch.float64 and loaded.operator.kernel.dtype == torch.float64


def test_no_sidecar_is_none(tmp_path):
    io.write_image(tmp_path / "plain.png", torch.rand(3, 8, 8))
    assert load_measurement(tmp_path / "plain.png") is None


def test_edited_image_is_refused(tmp_path):
    _, _, _, image, _ = make(tmp_path)
    io.write_image(image, torch.zeros(3, 19, 27))
    with pytest.raises(UserError, match="changed after pnprgm degrade"):
        load_measurement(image)


@pytest.mark.parametrize("damage,words", [
    (lambda j, n: j.write_text("{broken"), "cannot read the sidecar"),
    (lambda j, n: j.write_text(json.dumps({"format": "other"})), "not a pnprgm measurement sidecar"),
    (lambda j, n: n.unlink(), "is missing"),
    (lambda j, n: n.write_bytes(b"tampered"), "sha256 differs"),
    (lambda j, n: j.write_text(json.dumps({**json.loads(j.read_text()), "version": 99})), "sidecar version"),
    (lambda j, n: j.write_text(json.dumps({k: v for k, v in json.loads(j.read_text()).items() if k != "source"})), "incomplete"),
    (lambda j, n: j.write_text(json.dumps({**json.loads(j.read_text()), "operator": {
        **json.loads(j.read_text())["operator"], "spec": "sr:factor=4,kernel=box"}})), "its spec says"),
])
def test_damaged_sidecars_are_one_line_errors(tmp_path, damage, words):
    _, _, _, image, _ = make(tmp_path)
    json_path, npz_path = sidecar_paths(image)
    damage(json_path, npz_path)
    with pytest.raises(UserError) as info:
        load_measurement(image)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_inputs_are_never_overwritten(tmp_path):
    op = operators.build("sr2", (3, 8, 8))
    source = tmp_path / "photo.png"
    io.write_image(source, torch.rand(3, 8, 8))
    before = source.read_bytes()
    with pytest.raises(UserError, match="refusing to overwrite"):
        save_measurement(source, op.A(torch.rand(1, 3, 8, 8)), op, noise_sigma=0, seed=0,
                         source=SourceInfo(str(source), io.sha256_file(source), (3, 8, 8)), protect=[source])
    assert source.read_bytes() == before


def test_operator_save_and_load_files(tmp_path):
    op = operators.build("mask:random,rate=0.3,seed=4+gray", (3, 20, 24))
    path = operators.save(op, tmp_path / "op")
    assert path.name == "op.json" and (tmp_path / "op.npz").is_file()
    again = operators.load(path)
    assert again.spec == op.spec
    assert np.array_equal(again.parts[0].arrays()["mask"], op.parts[0].arrays()["mask"])
    (tmp_path / "op.npz").write_bytes(b"junk")
    with pytest.raises(UserError, match="does not match"):
        operators.load(path)
    # a record without the arrays' hash (written by hand): junk and pickles are refused in words, never with
    # numpy's advice to load the file unsafely
    meta = json.loads(path.read_text())
    del meta["arrays_sha256"]
    path.write_text(json.dumps(meta))
    np.savez(tmp_path / "pickled.npz", mask=np.array([object()], dtype=object))
    for content, words in ((b"junk", "lacks NumPy's header"), ((tmp_path / "pickled.npz").read_bytes(), "Python objects")):
        (tmp_path / "op.npz").write_bytes(content)
        with pytest.raises(UserError, match=words) as info:
            operators.load(path)
        assert "allow_pickle" not in str(info.value) and "\n" not in str(info.value)
