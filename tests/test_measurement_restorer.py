"""A model trained for an operator (``pnprgm train --forward operator``) restores users' real measurements of that
operator in one step: ``pnprgm restore --model`` and ``pnprgm.restore(..., denoiser=model)``, with the input the
model saw in training, its latent drawn per seed, and every solver option or other operator refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import pnprgm
from pnprgm import io, operators
from pnprgm.cli.main import app
from pnprgm.denoisers.rgm import run_padded
from pnprgm.errors import UserError
from pnprgm.rgm import model_file
from pnprgm.rgm.architectures import build_generator_from_config
from pnprgm.rgm.restorer import MeasurementRestorer
from pnprgm.rgm.unet import sized_config
from pnprgm.training.config import ProcessConfig
from pnprgm.training.processes import build_process

pytestmark = pytest.mark.usefixtures("one_thread")


def operator_model(path, operator: str, *, channels: int = 3, noise=(0.01, 0.05)):
    """A model file of the operator process: a tiny generator whose weights are perturbed so that its latent z
    changes the output (a fresh generator's z path starts at zero)."""
    torch.manual_seed(0)
    generator = build_generator_from_config(sized_config("tiny", channels=channels, conditioning="sigma"))
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model_file.save_model(path, generator.state_dict(), dict(generator.config),
                          {"name": "operator", "operator": operator, "noise_min": noise[0], "noise_max": noise[1]}, {})
    return path


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


HALF = """
from deepinv.physics import LinearPhysics
def make(shape, device):
    return LinearPhysics(A=lambda x: 0.5 * x, A_adjoint=lambda y: 0.5 * y)
"""


@pytest.mark.parametrize("spec", ["blur:gaussian,sigma=1", "sr2", "mask:random,rate=0.5,seed=1", "half"])
def test_the_generator_sees_what_training_gave_it(tmp_path, spec):
    """y in [0, 1] units becomes the training's y = A(2x - 1) + 2 sigma n exactly, through the process's own
    estimate; a missing ``- A 1`` (A 1 = 1 where the registry's operators observe, 1/2 for ``half``) or an
    undoubled sigma fails here."""
    code = None
    if spec == "half":
        (tmp_path / "half.py").write_text(HALF)
        spec = code = f"{tmp_path / 'half.py'}:make"
    model = operator_model(tmp_path / "m.pt", spec)
    generator = model_file.load_model(model)
    shape, sigma01 = (3, 16, 16), 0.03
    process = build_process(ProcessConfig(name="operator", operator=spec, noise_min=0.01, noise_max=0.05), shape,
                            code_operator=code)
    physics = process.physics(shape)
    clean = torch.rand(1, *shape)
    noise = torch.randn_like(physics.A(clean))
    y01 = physics.A(clean) + sigma01 * noise
    y_training = physics.A(2 * clean - 1) + 2 * sigma01 * noise
    restorer = MeasurementRestorer(generator, seed=7, operator=code)
    z = torch.randn(1, generator.nz, generator=torch.Generator().manual_seed(7))
    expected = run_padded(generator, process.estimate(y_training, shape),
                          torch.full((1,), 2 * sigma01), z, 4)
    torch.testing.assert_close(restorer(y01, physics, sigma=sigma01), expected, atol=1e-5, rtol=0)


def test_restore_cli_from_a_sidecar_with_samples(tmp_path):
    model = operator_model(tmp_path / "deblur.pt", "blur:gaussian,sigma=1")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    assert run("degrade", tmp_path / "photo.png", "--operator", "blur:gaussian,sigma=1", "--noise", "0.02",
               "-o", tmp_path / "meas").exit_code == 0
    result = run("restore", tmp_path / "meas", "--model", model, "-o", tmp_path / "out", "--samples", "3", "-q")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out/photo.json").read_text())
    assert record["settings"]["solver"] == "one-step" and record["settings"]["params"] == {"model_noise_sigma": 0.02}
    assert record["settings"]["noise_sigma"] == pytest.approx(0.02) and not record["settings"]["noise_estimated"]
    assert record["settings"]["model"]["sha256"] == io.sha256_file(model)
    assert record["operator"].startswith("blur:gaussian,sigma=1") and len(record["trace"]) == 1
    assert io.read_image(tmp_path / "out/photo.png").shape == (3, 24, 32)
    assert record["std_map"]["mean"] > 1e-4, "different seeds drew the same latent"
    # the same seed gives the same image; another seed another one
    again = run("restore", tmp_path / "meas", "--model", model, "-o", tmp_path / "again", "-q", "--samples", "3")
    assert again.exit_code == 0 and io.sha256_file(tmp_path / "again/photo.png") == record["output_sha256"]
    other = run("restore", tmp_path / "meas", "--model", model, "-o", tmp_path / "other", "-q", "--seed", "5")
    one = run("restore", tmp_path / "meas", "--model", model, "-o", tmp_path / "one", "-q")
    assert other.exit_code == one.exit_code == 0
    assert (io.read_image(tmp_path / "other/photo.png") - io.read_image(tmp_path / "one/photo.png")).abs().max() > 1e-3


def test_library_restore_and_estimated_noise(tmp_path):
    model = operator_model(tmp_path / "sr.pt", "sr2")
    physics = operators.build("sr2", (3, 16, 16))
    y = (physics.A(torch.rand(1, 3, 16, 16)) + 0.02 * torch.randn(1, 3, 8, 8))[0]
    x = pnprgm.restore(y, "sr2", image_shape=(3, 16, 16), denoiser=str(model), noise_sigma=0.02, seed=1)
    other = pnprgm.restore(y, "sr2", image_shape=(3, 16, 16), denoiser=str(model), noise_sigma=0.02, seed=2)
    assert x.shape == (3, 16, 16) and (x - other).abs().max() > 1e-3
    # an estimate outside the trained range is clamped into it, with a warning; a level given there is refused
    with pytest.warns(UserWarning, match=r"outside the 0.01 \(2.55/255\) to 0.05 \(12.8/255\)"):
        _, _, settings = pnprgm.restore(y + 0.3 * torch.randn_like(y), "sr2", image_shape=(3, 16, 16),
                                        denoiser=str(model), noise_sigma=None, return_trace=True)
    assert settings.params == {"model_noise_sigma": 0.05} and settings.noise_sigma > 0.1
    with pytest.raises(UserError, match="trained at noise std 0.01"):
        pnprgm.restore(y, "sr2", image_shape=(3, 16, 16), denoiser=str(model), noise_sigma=0.2)
    with pytest.raises(UserError, match=r"restores measurements of sr2, and the measurement's operator \(blur"):
        pnprgm.restore(torch.rand(3, 16, 16), "blur:gaussian,sigma=1", image_shape=(3, 16, 16), denoiser=str(model))


@pytest.mark.parametrize("args, message", [
    (("--solver", "hqs"), "--solver does not apply"),
    (("--preset", "sr-drs", "--iters", "3"), "--preset, --iters do not apply"),
    (("--tile", "64"), "--tile does not apply"),
    (("--noise", "0.2"), "trained at noise std 0.01"),
    (("--operator", "sr4"), "restores measurements of sr2, the operator it was trained for, not of sr4"),
])
def test_options_that_do_not_apply_are_one_line_before_any_work(tmp_path, args, message):
    model = operator_model(tmp_path / "sr.pt", "sr2")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "small.png")
    result = run("restore", tmp_path / "small.png", "--model", model, "-o", tmp_path / "out", "-q", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_sidecar_of_another_operator_and_a_channel_mismatch(tmp_path):
    model = operator_model(tmp_path / "deblur.pt", "blur:gaussian,sigma=1")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "photo.png")
    assert run("degrade", tmp_path / "photo.png", "--operator", "sr2", "-o", tmp_path / "meas").exit_code == 0
    result = run("restore", tmp_path / "meas", "--model", model, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 1 and "its sidecar records the operator sr" in result.output, result.output
    gray = operator_model(tmp_path / "gray.pt", "blur:gaussian,sigma=1", channels=1)
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "red.png")
    result = run("restore", tmp_path / "red.png", "--model", gray, "-o", tmp_path / "out2", "-q", "--noise", "0.02")
    assert result.exit_code == 1 and "restores gray images and the measurement is of colour ones" in result.output
    # a black-and-white photo saved as RGB (equal channels) is a gray measurement for it
    result = run("restore", tmp_path / "photo.png", "--model", gray, "-o", tmp_path / "out3", "-q", "--noise", "0.02")
    assert result.exit_code == 0 and io.read_image(tmp_path / "out3/photo.png").shape == (1, 16, 16), result.output


def test_a_kernel_file_counts_by_its_contents(tmp_path, monkeypatch):
    """A model of ``blur:file=k.npy`` records the kernel's sha256: a copy elsewhere given as --operator is the same
    operator, the model's own spec runs from the training folder, and another kernel is refused either way."""
    train_dir, elsewhere = tmp_path / "train", tmp_path / "elsewhere"
    train_dir.mkdir(), elsewhere.mkdir()
    kernel = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32)
    np.save(train_dir / "k.npy", kernel)
    np.save(elsewhere / "copy.npy", kernel)
    np.save(elsewhere / "other.npy", np.ones((3, 3), np.float32))
    model = operator_model(tmp_path / "m.pt", "blur:file=k.npy")
    content = torch.load(model, weights_only=True)
    content["record"] = {"operator_files": [{"path": "k.npy", "sha256": io.sha256_file(train_dir / "k.npy")}]}
    torch.save(content, model)
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tmp_path / "photo.png")
    base = ("restore", tmp_path / "photo.png", "--model", model, "--noise", "0.02", "-q")
    monkeypatch.chdir(elsewhere)
    result = run(*base, "-o", tmp_path / "a")
    assert result.exit_code == 1 and "reads k.npy, which is not there" in result.output, result.output
    result = run(*base, "-o", tmp_path / "b", "--operator", "blur:file=copy.npy")
    assert result.exit_code == 0, result.output
    # another kernel cannot be compared without the model's own: its absence is the error
    result = run(*base, "-o", tmp_path / "c", "--operator", "blur:file=other.npy")
    assert result.exit_code == 1 and "reads k.npy, which is not there" in result.output, result.output
    monkeypatch.chdir(train_dir)
    result = run(*base, "-o", tmp_path / "c", "--operator", f"blur:file={elsewhere / 'other.npy'}")
    assert result.exit_code == 1 and "acts otherwise" in result.output, result.output
    result = run(*base, "-o", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert io.sha256_file(tmp_path / "d/photo.png") == io.sha256_file(tmp_path / "b/photo.png")
    np.save(train_dir / "k.npy", np.ones((3, 3), np.float32))  # replaced after training
    result = run(*base, "-o", tmp_path / "e")
    assert result.exit_code == 1 and "k.npy has changed since the training" in result.output, result.output


def test_the_kernel_the_model_file_holds_restores_anywhere(tmp_path, monkeypatch):
    """A model file holds the files its operator read in training: from another folder, or after k.npy was
    replaced (said once, in one line), it restores with the kernel it was trained with; sidecars are compared
    with that kernel, and the records name the copy that ran."""
    monkeypatch.setenv("PNPRGM_CACHE", str(tmp_path / "cache"))
    train_dir, elsewhere = tmp_path / "train", tmp_path / "elsewhere"
    train_dir.mkdir(), elsewhere.mkdir()
    kernel = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32)
    np.save(train_dir / "k.npy", kernel)
    sha = io.sha256_file(train_dir / "k.npy")
    model = operator_model(tmp_path / "m.pt", "blur:file=k.npy")
    content = torch.load(model, weights_only=True)
    content["record"] = {"operator_files": [{"path": "k.npy", "sha256": sha}]}
    content["operator_file_data"] = {sha: torch.frombuffer(bytearray((train_dir / "k.npy").read_bytes()),
                                                           dtype=torch.uint8)}
    torch.save(content, model)
    for index in range(2):
        Image.fromarray((np.random.default_rng(index).random((16, 16, 3)) * 255).astype(np.uint8)).save(
            tmp_path / f"photo{index}.png")
    base = ("restore", tmp_path / "photo0.png", tmp_path / "photo1.png", "--model", model, "--noise", "0.02", "-q")
    monkeypatch.chdir(train_dir)
    assert run(*base, "-o", tmp_path / "here").exit_code == 0
    assert not (tmp_path / "cache").exists()
    monkeypatch.chdir(elsewhere)
    result = run(*base, "-o", tmp_path / "there")
    assert result.exit_code == 0, result.output
    copy = tmp_path / "cache" / "operator-files" / sha / "k.npy"
    assert np.array_equal(np.load(copy), kernel)
    for name in ("photo0.png", "photo1.png"):
        assert io.sha256_file(tmp_path / "here" / name) == io.sha256_file(tmp_path / "there" / name)
    record = json.loads((tmp_path / "there" / "photo0.json").read_text())
    assert str(copy) in json.dumps(record)
    np.save(elsewhere / "k.npy", np.ones((3, 3), np.float32))  # another kernel under the trained name
    with pytest.warns(UserWarning, match="k.npy has changed since the model was trained") as caught:
        result = run(*base, "-o", tmp_path / "changed")
    assert result.exit_code == 0, result.output
    assert sum("has changed since the model was trained" in str(w.message) for w in caught) == 1
    assert io.sha256_file(tmp_path / "changed/photo1.png") == io.sha256_file(tmp_path / "here/photo1.png")
    # a sidecar made with the trained kernel elsewhere restores; one made with the other kernel is refused
    assert run("degrade", tmp_path / "photo0.png", "--operator", f"blur:file={copy}", "--noise", "0.02",
               "-o", elsewhere / "good").exit_code == 0
    assert run("degrade", tmp_path / "photo0.png", "--operator", "blur:file=k.npy", "--noise", "0.02",
               "-o", elsewhere / "bad").exit_code == 0
    assert run("restore", elsewhere / "good", "--model", model, "-o", tmp_path / "g", "-q").exit_code == 0
    result = run("restore", elsewhere / "bad", "--model", model, "-o", tmp_path / "b", "-q")
    assert result.exit_code == 1 and "acts otherwise" in result.output, result.output


def test_as_a_pnp_denoiser_it_is_refused_with_the_way_to_use_it(tmp_path):
    from pnprgm.denoisers.rgm import RGMDenoiser

    generator = model_file.load_model(operator_model(tmp_path / "m.pt", "sr2"))
    with pytest.raises(UserError, match=r"not for denoising \(it restores measurements of its own operator in one "
                                        r"step: pnprgm restore --model MODEL\)"):
        RGMDenoiser(generator)


def test_a_sidecar_is_compared_by_what_its_operator_does(tmp_path, monkeypatch):
    """A sidecar stores its kernel: one made elsewhere with another kernel of the same file name is refused even
    where the model's kernel.npy is, and an equivalent spec (a Gaussian's default size given) is accepted."""
    train_dir, other_dir = tmp_path / "train", tmp_path / "other"
    train_dir.mkdir(), other_dir.mkdir()
    np.save(train_dir / "kernel.npy", np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32))
    np.save(other_dir / "kernel.npy", np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], np.float32))  # a line
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "im.png")
    model = operator_model(tmp_path / "k.pt", "blur:file=kernel.npy")
    content = torch.load(model, weights_only=True)
    content["record"] = {"operator_files": [{"path": "kernel.npy", "sha256": io.sha256_file(train_dir / "kernel.npy")}]}
    torch.save(content, model)
    for folder in (train_dir, other_dir):
        monkeypatch.chdir(folder)
        assert run("degrade", tmp_path / "im.png", "--operator", "blur:file=kernel.npy", "--noise", "0.02",
                   "-o", folder / "meas").exit_code == 0
    monkeypatch.chdir(train_dir)
    result = run("restore", other_dir / "meas", "--model", model, "-o", tmp_path / "wrong", "-q")
    assert result.exit_code == 1 and "acts otherwise" in result.output, result.output
    result = run("restore", train_dir / "meas", "--model", model, "-o", tmp_path / "right", "-q")
    assert result.exit_code == 0, result.output
    gaussian = operator_model(tmp_path / "g.pt", "blur:gaussian")
    result = run("restore", tmp_path / "im.png", "--model", gaussian, "--operator", "blur:gaussian,size=13",
                 "--noise", "0.02", "-o", tmp_path / "same", "-q")
    assert result.exit_code == 0, result.output
    result = run("restore", tmp_path / "im.png", "--model", gaussian, "--operator", "blur:gaussian,sigma=3",
                 "--noise", "0.02", "-o", tmp_path / "sigma3", "-q")
    assert result.exit_code == 2 and "not of blur:gaussian,sigma=3" in result.output, result.output


CODE_BLUR = """
import torch
from deepinv.physics import BlurFFT
def make(shape, device):
    return BlurFFT(img_size=tuple(shape), filter=torch.ones(1, 1, 3, 3) / 9, device=device)
"""


def test_a_plain_deepinv_operator_from_code(tmp_path):
    (tmp_path / "myop.py").write_text(CODE_BLUR)
    spec = f"{tmp_path / 'myop.py'}:make"
    model = operator_model(tmp_path / "code.pt", spec)
    Image.fromarray(np.full((20, 24, 3), 100, np.uint8)).save(tmp_path / "y.png")
    result = run("restore", tmp_path / "y.png", "--model", model, "--operator", spec, "--noise", "0.02",
                 "-o", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    assert io.read_image(tmp_path / "out/y.png").shape == (3, 20, 24)


def test_noise_levels_from_the_api_default_and_from_sidecars(tmp_path):
    """restore()'s default noise_sigma (0, noiseless) and a sidecar's 0 are lifted to the lowest trained level with
    a warning; a sidecar's level above the range is refused naming the sidecar."""
    model = operator_model(tmp_path / "b.pt", "blur:gaussian,sigma=1")
    y = torch.rand(3, 16, 16)
    with pytest.warns(UserWarning, match="noise std 0 .* it is given 0.01"):
        x = pnprgm.restore(y, "blur:gaussian,sigma=1", image_shape=(3, 16, 16), denoiser=str(model))
    assert x.shape == (3, 16, 16)
    Image.fromarray((np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "im.png")
    for noise in ("0", "0.2"):
        assert run("degrade", tmp_path / "im.png", "--operator", "blur:gaussian,sigma=1", "--noise", noise,
                   "-o", tmp_path / f"m{noise}").exit_code == 0
    with pytest.warns(UserWarning) as caught:  # pytest takes the warnings the CLI prints as one line each
        result = run("restore", tmp_path / "m0", "--model", model, "-o", tmp_path / "o0", "-q")
    assert result.exit_code == 0, result.output
    assert [str(w.message) for w in caught if "noise std 0 " in str(w.message)] == [
        f"{tmp_path / 'm0' / 'im.png'}: the measurement's noise std 0 (0/255) is outside the 0.01 (2.55/255) to 0.05 "
        f"(12.8/255) the model was trained at; it is given 0.01."]
    result = run("restore", tmp_path / "m0.2", "--model", model, "-o", tmp_path / "o2", "-q")
    assert result.exit_code == 1 and "its sidecar records noise std 0.2, above the 0.01" in result.output


def test_size_gray_photos_and_a_changed_model(tmp_path):
    model = operator_model(tmp_path / "sr.pt", "sr2")
    Image.fromarray((np.random.default_rng(2).random((9, 11, 3)) * 255).astype(np.uint8)).save(tmp_path / "odd.png")
    assert run("degrade", tmp_path / "odd.png", "--operator", "sr2", "--noise", "0.02", "-o", tmp_path / "m").exit_code == 0
    result = run("restore", tmp_path / "m", "--model", model, "--size", "10x12", "-o", tmp_path / "o", "-q")
    assert result.exit_code == 1 and "its sidecar restores a 9x11 image, not the --size 10x12" in result.output
    # gray:flat measures one channel of a colour image: a gray photo, or one saved as RGB with equal channels
    gray_model = operator_model(tmp_path / "gray.pt", "gray:flat")
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "rgb.png")
    for name in ("g.png", "rgb.png"):
        result = run("restore", tmp_path / name, "--model", gray_model, "--noise", "0.02", "-o", tmp_path / "c", "-q")
        assert result.exit_code == 0, result.output
    assert io.read_image(tmp_path / "c/g.png").shape == (3, 16, 16)
    # a rerun skips what is done, unless the model file behind the result changed
    args = ("restore", tmp_path / "m", "--model", model, "-o", tmp_path / "again", "-q")
    assert run(*args).exit_code == 0 and "skipped" in run(*args).output
    operator_model(model, "sr2", noise=(0.01, 0.06))
    result = run(*args)
    assert result.exit_code == 1 and "restored with another version of the model file" in result.output, result.output


def test_the_model_is_loaded_once_per_batch(tmp_path, monkeypatch):
    """A model file replaced while a batch runs does not change the method midway: every image is restored by the
    model loaded at the start, and its records carry that file's sha256."""
    from pnprgm import restore_job

    model = operator_model(tmp_path / "m.pt", "blur:gaussian,sigma=1")
    first_sha = io.sha256_file(model)
    for name in ("a", "b", "c"):
        Image.fromarray((np.random.default_rng(len(name)).random((16, 16, 3)) * 255).astype(np.uint8)).save(
            tmp_path / f"{name}.png")
    original, calls = restore_job._restore_one, []

    def then_replace(*args, **kwargs):
        written = original(*args, **kwargs)
        if not calls:  # after the first image: a plain denoise model in its place
            generator = build_generator_from_config(sized_config("tiny", channels=3, conditioning="sigma"))
            model_file.save_model(model, generator.state_dict(), dict(generator.config),
                                  {"name": "denoise", "noise_min": 0.01, "noise_max": 0.05}, {})
        calls.append(1)
        return written

    monkeypatch.setattr(restore_job, "_restore_one", then_replace)
    result = run("restore", tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png", "--model", model,
                 "--noise", "0.02", "-o", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    records = [json.loads((tmp_path / f"out/{n}.json").read_text())["settings"] for n in ("a", "b", "c")]
    assert [r["solver"] for r in records] == ["one-step"] * 3
    assert {r["model"]["sha256"] for r in records} == {first_sha} != {io.sha256_file(model)}


def test_only_noise_level_warnings_are_renamed(tmp_path):
    """_warnings_naming names the image in the noise-level warning and leaves other warnings to their filters."""
    import warnings

    from pnprgm.restore_job import _warnings_naming
    from pnprgm.rgm.restorer import NoiseLevelWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", message="quiet please")
        with _warnings_naming(tmp_path / "x.png"):
            for _ in range(3):
                warnings.warn(NoiseLevelWarning("level lifted"))
                warnings.warn("quiet please", UserWarning)
                warnings.warn("said once", DeprecationWarning)
    messages = [str(w.message) for w in caught]
    assert messages.count(f"{tmp_path / 'x.png'}: level lifted") == 1
    assert "quiet please" not in messages and messages.count("said once") == 1


def test_mistyped_specs_and_failing_code_operators_are_one_line(tmp_path):
    model = operator_model(tmp_path / "b.pt", "blur:gaussian,sigma=1")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "im.png")
    result = run("restore", tmp_path / "im.png", "--model", model, "--operator", "blur:gausian", "-o", tmp_path / "o")
    assert result.exit_code == 2 and "unknown blur variant 'gausian'" in result.output, result.output
    (tmp_path / "fixed.py").write_text(CODE_BLUR.replace("tuple(shape)", "(3, 32, 32)"))
    spec = f"{tmp_path / 'fixed.py'}:make"
    code_model = operator_model(tmp_path / "c.pt", spec)
    result = run("restore", tmp_path / "im.png", "--model", code_model, "--operator", spec, "--noise", "0.02",
                 "-o", tmp_path / "o2", "-q")
    assert result.exit_code == 1 and "fails on 16x16 images" in result.output and "Traceback" not in result.output


def test_the_held_copies_limit_damage_and_a_cache_path_the_spec_cannot_name(tmp_path, monkeypatch):
    from pnprgm.training import processes

    np.save(tmp_path / "k.npy", np.ones((3, 3), np.float32))
    config = ProcessConfig(name="operator", operator=f"blur:file={tmp_path / 'k.npy'}", noise_min=0.01)
    data = processes.operator_file_data(config)
    sha = io.sha256_file(tmp_path / "k.npy")
    assert list(data) == [sha] and data[sha].numpy().tobytes() == (tmp_path / "k.npy").read_bytes()
    monkeypatch.setattr(processes, "EMBEDDED_FILES_LIMIT", (tmp_path / "k.npy").stat().st_size - 1)
    assert processes.operator_file_data(config) == {}  # above the limit: recorded by path and sha256 only
    process = {"name": "operator", "operator": "blur:file=gone.npy"}
    record = {"operator_files": [{"path": "gone.npy", "sha256": sha}]}
    damaged = data[sha].clone()
    damaged[-1] ^= 1
    monkeypatch.setenv("PNPRGM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="copy of gone.npy does not match its recorded sha256; the model file is damaged"):
        model_file.with_embedded_files(process, record, {sha: damaged})
    moved, moved_record = model_file.with_embedded_files(process, record, data)
    copy = tmp_path / "cache" / "operator-files" / sha / "gone.npy"
    assert moved["operator"] == f"blur:file,file={copy},boundary=circular"
    assert moved_record["operator_files"] == [{"path": str(copy), "sha256": sha}]
    assert model_file.with_embedded_files(process, record, {}) == (process, record)  # nothing held: as it was
    monkeypatch.setenv("PNPRGM_CACHE", str(tmp_path / "a,b"))
    with pytest.raises(UserError, match=r"cannot name .*a,b.* in an operator spec .*set PNPRGM_CACHE"):
        model_file.with_embedded_files(process, record, data)


def test_sample_compares_operator_with_the_models(tmp_path):
    """``sample --operator`` used to replace a registry model's operator by any other in silence: the model then
    restored measurements it was never trained for."""
    model = operator_model(tmp_path / "g.pt", "blur:gaussian,sigma=1")
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "p.png")
    base = ("sample", model, "--input", tmp_path / "p.png", "-n", "1", "--size", "16", "--noise", "0.02")
    result = run(*base, "--operator", "blur:gaussian,sigma=3", "-o", tmp_path / "other.png")
    assert result.exit_code == 2 and "--operator blur:gaussian,sigma=3 acts otherwise than blur:gaussian,sigma=1" \
        in result.output, result.output
    assert not (tmp_path / "other.png").exists()
    result = run(*base, "--operator", "blur:gaussian,sigma=1,size=7", "-o", tmp_path / "same.png")
    assert result.exit_code == 0, result.output


def test_a_folder_of_images_reads_the_model_file_once_per_version(tmp_path, monkeypatch):
    """Each image asks whether the --denoiser file is an operator model; the file is read once, and again only
    when it has changed."""
    import os

    from pnprgm.rgm import restorer

    model = operator_model(tmp_path / "m.pt", "sr2")
    reads = []
    original = model_file.read_model_file
    monkeypatch.setattr(model_file, "read_model_file", lambda path: reads.append(path) or original(path))
    assert [restorer.file_process(str(model)).operator for _ in range(3)] == ["sr2"] * 3 and len(reads) == 1
    operator_model(model, "blur:gaussian,sigma=1")
    os.utime(model, ns=(os.stat(model).st_atime_ns, os.stat(model).st_mtime_ns + 10**9))  # another version
    assert restorer.file_process(str(model)).operator == "blur:gaussian,sigma=1" and len(reads) == 2
    generator = build_generator_from_config(sized_config("tiny", channels=3))
    model_file.save_model(tmp_path / "d.pt", generator.state_dict(), dict(generator.config), {"name": "denoise"}, {})
    assert restorer.file_process(str(tmp_path / "d.pt")) is None and restorer.file_process(str(tmp_path / "d.pt")) is None
    assert len(reads) == 3, "a denoiser's answer (None) is kept too"
