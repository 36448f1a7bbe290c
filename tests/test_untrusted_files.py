"""A file's contents never make pnprgm import or run code: model files and checkpoints naming a custom operator,
and files that are not models at all (one-line refusals, never torch's advice to load with weights_only=False)."""
from __future__ import annotations

import pickle
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pnprgm.cli.main import app
from pnprgm.rgm import model_file
from pnprgm.training import checkpoint as ckpt
from pnprgm.rgm.architectures import build_generator_from_config
from pnprgm.rgm.unet import sized_config

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """A module and a .py file that leave a marker when imported, and a photo."""
    marker = tmp_path / "imported"
    code = textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("ran")
        from pnprgm import operators
        def make(shape, device):
            return operators.build("blur:gaussian,sigma=1", shape, device=device)
    """)
    (tmp_path / "hostile_op.py").write_text(code)
    (tmp_path / "hostile_mod.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    yield marker
    sys.modules.pop("hostile_mod", None)  # imported from this tmp_path: the next test's module is another file


def operator_model(path, operator: str):
    """A model file of the operator process whose operator is ``operator`` (untrained tiny generator)."""
    torch.manual_seed(0)
    generator = build_generator_from_config(sized_config("tiny", channels=3, conditioning="sigma"))
    model_file.save_model(path, generator.state_dict(), dict(generator.config),
                    {"name": "operator", "operator": operator, "noise_min": 0.05}, {})
    return path


@pytest.mark.parametrize("kind", ["file", "module"])
def test_restore_never_imports_the_operator_a_model_file_names(tmp_path, hostile, kind):
    """``restore --model`` with a model of the operator process restores in one step with the model's operator: one
    that names code runs only when the user types it."""
    spec = f"{tmp_path / 'hostile_op.py'}:make" if kind == "file" else "hostile_mod:make"
    model = operator_model(tmp_path / "model.pt", spec)
    result = invoke("restore", tmp_path / "photo.png", "--model", model, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 2, result.output
    assert not hostile.exists(), "a model file made pnprgm import code"
    assert "names Python code" in result.output and f"--operator {spec!r}" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    result = invoke("restore", tmp_path / "photo.png", "--model", model, "-o", tmp_path / "out", "-q",
                    "--operator", spec, "--noise", "0.05")
    assert result.exit_code == 0, result.output
    assert hostile.read_text() == "ran" and (tmp_path / "out/photo.png").is_file()


def test_a_model_of_code_refuses_a_registry_operator(tmp_path, hostile):
    """A model trained for the user's code cannot be compared with an operator of the registry without running that
    code, so ``--operator sr2`` (or ``restore(y, "sr2", denoiser=model)``) is refused in one line instead of giving
    the model measurements it never saw; the code itself is not imported."""
    import pnprgm
    from pnprgm.errors import UserError

    spec = f"{tmp_path / 'hostile_op.py'}:make"
    model = operator_model(tmp_path / "model.pt", spec)
    result = invoke("restore", tmp_path / "photo.png", "--model", model, "-o", tmp_path / "out", "-q",
                    "--operator", "sr2", "--noise", "0.05")
    assert result.exit_code == 2, result.output
    assert "cannot compare with sr2" in result.output and f"--operator {spec!r}" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="cannot compare with sr2"):
        pnprgm.restore(torch.rand(3, 12, 12), "sr2", image_shape=(3, 24, 24), denoiser=str(model), noise_sigma=0.05)
    assert not hostile.exists(), "a model file made pnprgm import code"


@pytest.mark.parametrize("kind", ["file", "module"])
def test_sample_never_imports_the_operator_a_model_file_names(tmp_path, hostile, kind):
    spec = f"{tmp_path / 'hostile_op.py'}:make" if kind == "file" else "hostile_mod:make"
    model = operator_model(tmp_path / "model.pt", spec)
    result = invoke("sample", model, "--input", tmp_path / "photo.png", "-o", tmp_path / "grid.png")
    assert result.exit_code == 2, result.output
    assert not hostile.exists(), "a model file made pnprgm import code"
    assert "names Python code" in result.output and f"--operator {spec!r}" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "grid.png").exists()
    # the same code, typed by the user, runs
    result = invoke("sample", model, "--input", tmp_path / "photo.png", "-o", tmp_path / "grid.png", "--operator", spec)
    assert result.exit_code == 0, result.output
    assert hostile.read_text() == "ran" and (tmp_path / "grid.png").is_file()


def test_sample_operator_option_needs_an_operator_model(tmp_path):
    torch.manual_seed(0)
    generator = build_generator_from_config(sized_config("tiny", channels=3, conditioning="sigma"))
    model = model_file.save_model(tmp_path / "m.pt", generator.state_dict(), dict(generator.config),
                            {"name": "denoise", "noise_min": 0.01, "noise_max": 0.2}, {})
    result = invoke("sample", model, "-o", tmp_path / "grid.png", "--operator", "sr2")
    assert result.exit_code == 2 and "drop --operator" in result.output


def test_train_resume_never_imports_the_operator_a_checkpoint_names(tmp_path, hostile):
    from pnprgm.training.loop import train

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray((rng.random((20, 20, 3)) * 255).astype(np.uint8)).save(data / f"{i}.png")
    tiny = dict(batch_size=2, crop=16, d_nf=8, d_ch_mult=(1, 2), val_crop=16, val_images=1, log_every=1,
                checkpoint_every=0, val_every=0, sample_every=0, prior="mmd", mmd_features="pixels", steps=1)
    run = tmp_path / "run"
    train(data, run, process={"name": "operator", "operator": "blur:gaussian,sigma=1", "noise_min": 0.05},
          train=tiny, size="tiny", progress=False)
    content = torch.load(run / "last.pt", weights_only=True)
    spec = f"{tmp_path / 'hostile_op.py'}:make"
    content["config"]["process"]["operator"] = spec  # a checkpoint edited (or sent) by someone else
    ckpt.save_checkpoint({k: v for k, v in content.items() if k not in ("format", "version")}, run / "last.pt")
    result = invoke("train", "--data", data, "--out", run, "--resume", "--steps", 2, "-q")
    assert result.exit_code == 2, result.output
    assert not hostile.exists(), "a checkpoint made pnprgm import code"
    assert "names Python code" in result.output and "--operator" in result.output
    result = invoke("train", "--data", data, "--out", run, "--resume", "--steps", 2, "-q", "--operator", spec)
    assert result.exit_code == 0, result.output
    assert hostile.read_text() == "ran"


def _not_models(folder):
    torch.save({"layer": torch.nn.Linear(2, 2)}, folder / "pickled_module.pt")
    with open(folder / "plain_pickle.pt", "wb") as handle:
        pickle.dump({"a": [1, 2]}, handle)
    with zipfile.ZipFile(folder / "other_zip.pt", "w") as archive:
        archive.writestr("a.txt", "hi")
    (folder / "random.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (folder / "text.pt").write_text("hello world\n")
    (folder / "yaml.pt").write_text("model: foo\nweights: [1, 2, 3]\n")
    (folder / "empty.pt").write_bytes(b"")


@pytest.mark.parametrize("name", ["pickled_module", "plain_pickle", "other_zip", "random", "text", "yaml", "empty"])
@pytest.mark.parametrize("command", ["sample", "restore"])
def test_a_file_that_is_not_a_model_is_refused_in_one_line(tmp_path, name, command):
    _not_models(tmp_path)
    model = tmp_path / f"{name}.pt"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    if command == "sample":
        result = invoke("sample", model, "-o", tmp_path / "grid.png")
    else:
        result = invoke("restore", tmp_path / "photo.png", "--operator", "sr2", "--model", model, "-o", tmp_path / "out", "-q")
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code in (1, 2) and len(errors) == 1, result.output
    assert "Traceback" not in result.output and "weights_only" not in result.output
    assert f"refused {model}" in errors[0] and "pnprgm train" in errors[0]
    expected = "pickled Python objects (torch.nn.modules.linear.Linear)" if name == "pickled_module" else "not a pnprgm or official model"
    assert expected in errors[0]


@pytest.mark.parametrize("flag", ["--denoiser", "--model"])
def test_bare_weights_without_a_config_point_to_model_config(tmp_path, flag):
    """A state dict alone (as the official RGM code saves netG_*.pth) was "not a pnprgm RGM model file; give the
    model.pt written by pnprgm train": the fix is the generator config beside it."""
    torch.save({"module.conv.weight": torch.zeros(2, 2)}, tmp_path / "netG_1.pth")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "photo.png")
    result = invoke("restore", tmp_path / "photo.png", "--operator", "sr2", flag, tmp_path / "netG_1.pth",
                    "-o", tmp_path / "out", "-q")
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    # said once for the batch, before any image (status 2: the option is what is wrong)
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output, result.output
    assert "bare weights" in errors[0] and f"{tmp_path / 'netG_1.pth'}#celebahq256" in errors[0]


@pytest.mark.parametrize("where, said", [("/dev/null", r"is not a regular file \(a device or pipe\)"), ("folder", "is a folder"),
                                         ("missing.pt", "does not exist")])
def test_a_checkpoint_path_that_is_no_file_is_named_for_what_it_is(tmp_path, where, said):
    """``--init-from /dev/null`` said "does not exist"."""
    from pnprgm import io
    from pnprgm.errors import UserError

    (tmp_path / "folder").mkdir()
    path = where if where.startswith("/") else tmp_path / where
    with pytest.raises(UserError, match=f"checkpoint {path} {said}; check the path"):
        io.torch_load(path)


def test_an_unknown_official_config_is_one_error_for_the_batch(tmp_path):
    """--model netG.pth --model-config nosuch was refused once per image, after the batch had started."""
    torch.save({"module.conv.weight": torch.zeros(2, 2)}, tmp_path / "netG_1.pth")
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / name)
    result = invoke("restore", tmp_path / "a.png", tmp_path / "b.png", "--operator", "sr2", "--model",
                    tmp_path / "netG_1.pth", "--model-config", "nosuch", "-o", tmp_path / "out", "-q")
    assert result.exit_code == 2 and result.output.count("unknown official RGM generator config 'nosuch'") == 1, \
        result.output
    assert "image 1/2" not in result.output
