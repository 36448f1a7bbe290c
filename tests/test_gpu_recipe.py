"""The GPU recipe (scripts/train_gpu.sh -> pnprgm train-denoisers) rehearsed on the CPU on a tiny pack, and the
DRUNet architecture it trains behind the generator protocol."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pnprgm.errors import UserError
from pnprgm.rgm.model_file import load_model, read_model_file
from pnprgm.rgm.drunet import DRUNetConfig, DRUNetGenerator

REPO = Path(__file__).resolve().parent.parent


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour image with edges (uint8)."""
    base = rng.random((h // 8 + 2, w // 8 + 2, 3))
    image = np.kron(base, np.ones((8, 8, 1)))[:h, :w]
    return (image * 255).astype(np.uint8)


def _photo_folder(folder: Path, count: int, seed: int, h: int = 200, w: int = 300) -> Path:
    """``folder`` (made) with ``count`` photos p0.png, p1.png..."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(_photo(rng, h, w)).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> Path:
    pack = tmp_path_factory.mktemp("pack")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        (pack / split).mkdir()
        for i in range(count):
            Image.fromarray(_photo(rng, 72 + 8 * i, 96)).save(pack / split / f"{split}{i}.jpg", quality=95)
    (pack / "manifest.json").write_text(json.dumps({"pack": {"long_side": 96}, "train": [{"name": "train0.png",
                                                                                          "sha256": "0" * 64}], "val": []}))
    return pack


@pytest.fixture(scope="module")
def recipe_run(tiny_pack, tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe") / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "train_gpu.sh"), str(out), "0.05", "--device", "cpu", "--data", str(tiny_pack),
         "--size", "tiny", "--batch-size", "2", "--crop", "32", "--workers", "1", "--save-every", "1", "--threads", "1"],
        capture_output=True, text=True, env=env, timeout=180)
    return result, out


@pytest.mark.slow
def test_recipe_rehearsal_writes_loadable_models(recipe_run):
    result, out = recipe_run
    assert result.returncode == 0, result.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["drunet-denoiser-color.pt", "drunet-denoiser-gray.pt", "recipe_log.jsonl"]
    assert all((out / f).stat().st_size < 16 * 2**20 for f in files)
    for name, channels in (("drunet-denoiser-color", 3), ("drunet-denoiser-gray", 1)):
        content = read_model_file(out / f"{name}.pt")
        assert content["generator"]["config"]["arch"] == "drunet"
        assert all(v.dtype == torch.float16 for v in content["generator"]["state_dict"].values() if v.is_floating_point())
        record = content["record"]
        assert record["final"] and record["steps"] > 0 and record["objective"].startswith("L1 denoising")
        assert set(record["val_psnr_by_sigma255"]) == {"15", "25", "50"}
        assert record["data"]["train_images_used"] == 4 and record["data"]["pack"] == {"long_side": 96}
        model = load_model(out / f"{name}.pt")
        assert next(model.parameters()).dtype == torch.float32
        assert model.config["channels"] == channels
    log = [json.loads(line) for line in (out / "recipe_log.jsonl").read_text().splitlines()]
    assert log[-1]["final"] and len([e for e in log if "saved" in e]) >= 2  # periodic saves, then the final one
    # Steps interleave: with gray_share 0.4 the gray model gets 40 % of them (within one step).
    steps_c, steps_g = log[-1]["drunet-denoiser-color"]["steps"], log[-1]["drunet-denoiser-gray"]["steps"]
    assert abs(steps_g - 0.4 * (steps_c + steps_g)) <= 1


@pytest.mark.slow
def test_rgm_recipe_rehearsal_leaves_a_small_rgm_model_and_its_record(tiny_pack, tmp_path):
    """scripts/train_rgm_gpu.sh on the CPU: the MSE UNet fine-tuned with RGM's objective (KL prior, fidelity, no
    supervised term) for a few seconds; OUTDIR/rgm holds a loadable model, its record (prior, lineage, the
    discriminator's recent loss) and no file over 16 MiB."""
    out = tmp_path / "out"
    (out / "rgm" / "checkpoints").mkdir(parents=True)
    (out / "rgm" / "checkpoints" / "step_best.pt").write_text("mine")  # a user's file: the script once rm -rf'd it
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "train_rgm_gpu.sh"), str(out), "0.02", "--device", "cpu", "--data",
         str(tiny_pack / "train"), "--val", str(tiny_pack / "val"), "--batch-size", "2", "--crop", "32", "--threads", "1",
         "--set", "train.lr_d=1e-4", "--overwrite"],  # given options (and --set keys) replace the script's defaults
        capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    # no snapshot (G's step 250 is not reached), no resume files, and the user's file kept
    assert files == ["rgm/checkpoints/step_best.pt", "rgm/log.csv", "rgm/model.pt", "rgm/record.json"]
    assert (out / "rgm" / "checkpoints" / "step_best.pt").read_text() == "mine"
    files.remove("rgm/checkpoints/step_best.pt")
    assert all((out / f).stat().st_size < 16 * 2**20 for f in files)
    record = read_model_file(out / "rgm" / "model.pt")["record"]
    assert record["train"]["prior"] == "kld" and record["train"]["supervised"] == 0 and record["train"]["lmbda"] == 1e-4
    assert record["train"]["lr_d"] == 1e-4 and record["train"]["lr_g"] == 5e-6 and record["train"]["crop"] == 32
    assert record["init_from"]["source"] == "unet-denoiser-color" and record["steps"] >= 1
    assert record["train"]["data_downscale"] == 2 and record["train"]["d_warmup"] == 1000
    assert list(record["train"]["model_at_steps"]) == [1250, 1500] and record["train"]["d_renoise"] == 0.5
    process = read_model_file(out / "rgm" / "model.pt")["process"]
    assert (process["noise_min"], process["noise_max"]) == (0.01, 0.04)
    assert 0 < record["recent_d_loss"] < 10
    model = load_model(out / "rgm" / "model.pt")
    assert model.config["channels"] == 3


@pytest.mark.parametrize("given, present, absent", [
    ([], ["--forward denoise", "--lmbda 1e-4", "--set train.lr_g=5e-6"], []),
    (["--operator", "blur:gaussian,sigma=2"], ["--operator blur:gaussian,sigma=2"], ["--forward"]),
    (["--lmbda", "5e-5", "--set", "train.lr_g=1e-5"], ["--lmbda 5e-5", "--set train.lr_g=1e-5"],
     ["--lmbda 1e-4", "train.lr_g=5e-6"]),
])
def test_rgm_recipe_passes_each_option_once_and_the_callers_win(tmp_path, given, present, absent):
    """`pnprgm train` refuses an option given twice, so train_rgm_gpu.sh leaves out each default the caller gave; an
    --operator replaces the default denoising process (``--forward`` beside it is a contradiction). Checked with a
    stand-in python that records the command line instead of training."""
    stub, seen = tmp_path / "python", tmp_path / "argv.txt"
    stub.write_text('#!/usr/bin/env bash\nif [ "$1" = -m ]; then printf "%s\\n" "$@" > "$SEEN"\n'
                    '  while [ $# -gt 0 ]; do [ "$1" = --out ] && mkdir -p "$2"; shift; done; fi\nexit 0\n')
    stub.chmod(0o755)
    env = {**os.environ, "PYTHON": str(stub), "SEEN": str(seen)}
    result = subprocess.run(["bash", str(REPO / "scripts" / "train_rgm_gpu.sh"), str(tmp_path / "out"), "1", *given],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    argv = seen.read_text().splitlines()
    line = " ".join(argv)
    options = [a for a in argv if a.startswith("--") and a != "--set"]
    assert len(options) == len(set(options)), line  # no option twice
    keys = [argv[i + 1].split("=")[0] for i, a in enumerate(argv) if a == "--set"]
    assert len(keys) == len(set(keys)), line
    assert all(p in line for p in present) and not any(a in line for a in absent), line


def test_recipe_model_runs_as_denoiser(recipe_run):
    from pnprgm.denoisers.rgm import load_denoiser

    _, out = recipe_run
    denoiser = load_denoiser(str(out / "drunet-denoiser-color.pt"))
    x = torch.rand(1, 3, 37, 50)
    y = denoiser(x, 0.1)
    assert y.shape == x.shape and torch.isfinite(y).all()
    # the trained network acts, and reads its noise level: not the identity, not sigma-blind
    assert float((y - x).abs().mean()) > 1e-4
    assert float((denoiser(x, 0.02) - denoiser(x, 0.2)).abs().mean()) > 1e-4


def test_drunet_generator_maps_ranges_and_ignores_z():
    torch.manual_seed(0)
    g = DRUNetGenerator(DRUNetConfig(channels=3, nc=(8, 8, 16, 16), nb=1)).eval()
    x01 = torch.rand(2, 3, 32, 32)
    sigma = torch.tensor([0.1, 0.2])
    with torch.no_grad():
        direct = g.denoise01(x01, sigma)
        via_protocol = g(2 * x01 - 1, 2 * sigma, torch.randn(2, 5))
        other_z = g(2 * x01 - 1, 2 * sigma, None)
    torch.testing.assert_close((via_protocol + 1) / 2, direct, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(via_protocol, other_z)
    assert g.nz == 0 and g.conditioning == "sigma"


def test_float16_storage_costs_under_a_hundredth_of_a_db():
    """Half-precision storage of trained-like weights changes a denoised image by far less than 0.01 dB."""
    from pnprgm.metrics.fidelity import psnr

    torch.manual_seed(0)
    g = DRUNetGenerator(DRUNetConfig(channels=3, nc=(16, 16, 32, 32), nb=1)).eval()
    # Random weights: float16 rounds every weight by a relative 2^-11 whatever its value, trained or not.
    clean = torch.rand(1, 3, 64, 64)
    noisy = clean + 0.1 * torch.randn_like(clean)
    half = DRUNetGenerator(DRUNetConfig(channels=3, nc=(16, 16, 32, 32), nb=1)).eval()
    half.load_state_dict({k: v.half() for k, v in g.state_dict().items()})
    with torch.no_grad():
        a = g.denoise01(noisy, torch.tensor([0.1])).clamp(0, 1)
        b = half.denoise01(noisy, torch.tensor([0.1])).clamp(0, 1)
    assert abs(float(psnr(a, clean) - psnr(b, clean))) < 0.01
    assert float((a - b).abs().max()) > 0  # the rounding is real: the test compares two different weight sets


def test_recipe_continues_from_a_model_and_keeps_the_lineage(recipe_run, tiny_pack, tmp_path):
    """--init-from starts from the given weights (architecture taken from the file) and records where they came from."""
    from pnprgm.cli.main import app
    from click.testing import CliRunner
    from pnprgm.io import sha256_file

    _, first = recipe_run
    source = first / "drunet-denoiser-color.pt"
    out = tmp_path / "continued"
    result = CliRunner().invoke(app, ["train-denoisers", "--data", str(tiny_pack), "--out", str(out), "--minutes", "0.01",
                                      "--device", "cpu", "--gray-share", "0", "--batch-size", "2", "--crop", "32",
                                      "--workers", "0", "--init-from", str(source), "--lr", "1e-12",
                                      "--noise", "5/255:30/255"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["drunet-denoiser-color.pt", "recipe_log.jsonl"]
    before, after = read_model_file(source), read_model_file(out / "drunet-denoiser-color.pt")
    assert after["generator"]["config"] == before["generator"]["config"]  # the tiny size came from the file
    record = after["record"]
    assert record["init_from"]["sha256"] == sha256_file(source)
    assert record["steps_total"] == record["steps"] + before["record"]["steps"]
    assert (after["process"]["noise_min"], after["process"]["noise_max"]) == pytest.approx((5 / 255, 30 / 255))
    # With a vanishing learning rate the continued weights are the source's (EMA of unchanged weights).
    for key, value in before["generator"]["state_dict"].items():
        torch.testing.assert_close(after["generator"]["state_dict"][key].float(), value.float(), atol=1e-3, rtol=0)
    wrong = CliRunner().invoke(app, ["train-denoisers", "--data", str(tiny_pack), "--out", str(tmp_path / "x"),
                                     "--minutes", "0.01", "--device", "cpu", "--init-from", "rgm-denoiser-color"])
    assert wrong.exit_code == 2 and "not a 3-channel DRUNet model file" in wrong.output
    continued = (out / source.name).read_bytes()  # its own output folder: the file it starts from is never replaced
    for overwrite in (["--overwrite"], []):  # without it too: not advised to pass the flag that is then refused
        again = CliRunner().invoke(app, ["train-denoisers", "--data", str(tiny_pack), "--out", str(out), "--minutes",
                                         "0.01", "--device", "cpu", "--gray-share", "0", "--init-from",
                                         str(out / source.name), *overwrite])
        assert again.exit_code == 2 and "which this run reads" in again.output and "another --out" in again.output, \
            again.output
    assert (out / source.name).read_bytes() == continued


def test_pack_script_holds_out_a_tenth_and_records_sources(tmp_path):
    """scripts/pack_gpu.py: the training loop's hold-out rule, JPEGs at the chosen long side, sources with sha256 and
    licence in manifest.json; a budget too small for any side is refused."""
    from pnprgm.io import sha256_file
    from pnprgm.training.data import split_validation

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    rows = ["file\tsource\toriginal_size\tlicense\tsha256"]
    for i in range(10):
        Image.fromarray(_photo(rng, 200, 300)).save(photos / f"p{i}.png")
        rows.append(f"p{i}.png\ttest\t300x200\tCC0-1.0\t-")
    (photos / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "pack"
    script = REPO / "scripts" / "pack_gpu.py"
    result = subprocess.run([sys.executable, str(script), str(photos), "--out", str(out), "--no-wheels",
                             "--budget-mb", "1000", "--sides", "256,128"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    expected_train, expected_val = split_validation(sorted(photos.glob("*.png")), 0.1, 0)
    assert [e["name"] for e in manifest["val"]] == [p.name for p in expected_val] and len(manifest["val"]) == 1
    assert len(manifest["train"]) == 9 and manifest["pack"]["long_side"] == 256
    entry = manifest["train"][0]
    assert entry["license"] == "CC0-1.0" and entry["sha256"] == sha256_file(photos / entry["name"])
    with Image.open(out / "data" / "train" / entry["packed"]) as packed:
        assert packed.format == "JPEG" and max(packed.size) == 256
    refused = subprocess.run([sys.executable, str(script), str(photos), "--out", str(tmp_path / "small"), "--no-wheels",
                              "--budget-mb", "0.001", "--sides", "64"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "do not fit" in refused.stderr


def test_recipe_on_a_plain_photo_folder_holds_out_the_validation_tenth(tmp_path):
    """Given photos rather than a pack, the recipe trains on the same 90 % as `pnprgm train` and validates on the rest,
    and its record names both lists with their sha256."""
    from click.testing import CliRunner
    from pnprgm.cli.main import app
    from pnprgm.io import sha256_file
    from pnprgm.training.data import split_validation

    photos = _photo_folder(tmp_path / "photos", 10, seed=2, h=64, w=64)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["train-denoisers", "--data", str(photos), "--out", str(out), "--minutes", "0.005",
                                      "--device", "cpu", "--size", "tiny", "--gray-share", "0", "--batch-size", "2",
                                      "--crop", "32", "--workers", "0"])
    assert result.exit_code == 0, result.output
    expected_train, expected_val = split_validation(sorted(photos.glob("*.png")), 0.1, 0)
    record = read_model_file(out / "drunet-denoiser-color.pt")["record"]
    assert sorted(f["name"] for f in record["files"]) == sorted(p.name for p in expected_train)
    assert [f["name"] for f in record["data"]["val_files"]] == [p.name for p in expected_val]
    assert record["data"]["val_files"][0]["sha256"] == sha256_file(expected_val[0])
    assert "1 validation" in result.output and "9 training photos" in result.output
    # the same photos as a pack's train/ without val/: the same tenth held out, with a warning (it validated on none)
    (tmp_path / "pack").mkdir()
    photos.rename(tmp_path / "pack" / "train")
    with pytest.warns(UserWarning, match="has train/ but no val/: 10 % of train/ are held out"):
        result = CliRunner().invoke(app, ["train-denoisers", "--data", str(tmp_path / "pack"), "--out",
                                          str(tmp_path / "out2"), "--minutes", "0.005", "--device", "cpu", "--size",
                                          "tiny", "--gray-share", "0", "--batch-size", "2", "--crop", "32",
                                          "--workers", "0"])
    assert result.exit_code == 0 and "1 validation" in result.output and "9 training photos" in result.output


def test_recipe_never_replaces_an_earlier_runs_models_unless_told(recipe_run, tiny_pack):
    from click.testing import CliRunner
    from pnprgm.cli.main import app

    _, out = recipe_run
    before = (out / "drunet-denoiser-color.pt").read_bytes()
    args = ["train-denoisers", "--data", str(tiny_pack), "--out", str(out), "--minutes", "0.005", "--device", "cpu",
            "--size", "tiny", "--gray-share", "0", "--batch-size", "2", "--crop", "32", "--workers", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "already holds drunet-denoiser-color.pt" in result.output, result.output
    assert (out / "drunet-denoiser-color.pt").read_bytes() == before


@pytest.mark.parametrize("option, message", [
    (["--lr", "-1"], "--lr must be a learning rate > 0"),
    (["--noise", "0:0"], "learns nothing"),
    (["--save-every", "0"], "--save-every must be a number of seconds > 0"),
    (["--workers", "100000"], "--workers 100000 is more than this machine's"),  # once took all memory
    (["--jpeg-share", "1.5"], "--jpeg-share"),
    (["--jpeg-quality", "95:60"], "need 1 <= MIN <= MAX <= 100"),
    (["--jpeg-quality", "high"], "is not a range"),
    (["--precision", "fp8"], "'fp8' is not one of"),
])
def test_train_denoisers_refuses_bad_settings_in_one_line(tiny_pack, tmp_path, option, message):
    from pnprgm.cli.main import app

    result = CliRunner().invoke(app, ["train-denoisers", "--data", str(tiny_pack), "--out", str(tmp_path / "out"),
                                      "--device", "cpu", "--size", "tiny", *option])
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["train", "train-denoisers"])
def test_an_empty_out_is_refused_not_the_current_folder(tiny_pack, tmp_path, monkeypatch, command):
    """``--out ""`` (an unset $OUT) trained into the current folder."""
    from pnprgm.cli.main import app

    monkeypatch.chdir(tmp_path)
    extra = ["--size", "tiny", "--device", "cpu"] + (["--steps", "1"] if command == "train" else [])
    result = CliRunner().invoke(app, [command, "--data", str(tiny_pack / "train"), "--out", "", *extra])
    assert result.exit_code == 2 and result.output.startswith("error: --out is empty"), result.output
    assert list(tmp_path.iterdir()) == []


def test_train_denoisers_names_an_out_it_cannot_write_before_reading_photos(tiny_pack, tmp_path):
    from pnprgm.cli.main import app

    (tmp_path / "file.txt").write_text("mine")
    out = tmp_path / "file.txt" / "out"
    result = CliRunner().invoke(app, ["train-denoisers", "--data", str(tiny_pack), "--out", str(out), "--device", "cpu",
                                      "--size", "tiny"])
    assert result.exit_code == 2 and f"cannot write {out}" in result.output and "--out" in result.output
    assert (tmp_path / "file.txt").read_text() == "mine"


def test_ctrl_c_stops_the_recipe_with_its_models_saved(tiny_pack, tmp_path, monkeypatch):
    import os
    import signal

    from pnprgm.training import recipe

    original = recipe.Member.update_ema
    calls = []

    def interrupt_on_the_third_step(self, decay):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, decay)

    monkeypatch.setattr(recipe.Member, "update_ema", interrupt_on_the_third_step)
    cfg = recipe.RecipeConfig(minutes=5, size="tiny", batch_size=2, crop=32, workers=0, save_every=3600)
    # a terminal's Ctrl-C, even where the test runner was started with SIGINT ignored (nohup, a background job)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            recipe.train_denoisers(tiny_pack, tmp_path / "out", cfg, device="cpu", echo=lambda line: None)
    finally:
        signal.signal(signal.SIGINT, before)
    assert len(calls) == 3, "stopped after the step in progress, not 5 minutes later"
    for name in ("drunet-denoiser-color", "drunet-denoiser-gray"):
        record = read_model_file(tmp_path / "out" / f"{name}.pt")["record"]
        assert record["final"] and record["interrupted"] and record["val_psnr_by_sigma255"]
    assert sum(read_model_file(tmp_path / "out" / f"{n}.pt")["record"]["steps"]
               for n in ("drunet-denoiser-color", "drunet-denoiser-gray")) == 3


def _dihedral_windows(image: torch.Tensor, crop: int) -> list[torch.Tensor]:
    windows = []
    for top in range(image.shape[1] - crop + 1):
        for left in range(image.shape[2] - crop + 1):
            patch = image[:, top:top + crop, left:left + crop]
            for k in range(8):
                turned = torch.rot90(patch, k % 4, (1, 2))
                windows.append(turned.flip(2) if k >= 4 else turned)
    return windows


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_random_crops_reencode_the_asked_share_as_jpeg(share):
    from pnprgm.training.recipe import RandomCrops

    image = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 40, 40), dtype=np.uint8))
    windows = torch.stack(_dihedral_windows(image, 32))
    crops = RandomCrops([image], 32, seed=3, jpeg_share=share, jpeg_quality=(60, 95))
    exact = []
    for crop, _ in zip(crops, range(60)):
        assert crop.shape == (3, 32, 32) and crop.dtype == torch.uint8
        distance = (windows.float() - crop.float()).abs().mean(dim=(1, 2, 3)).min()
        exact.append(bool(distance == 0))
        assert distance < 60  # a JPEG of a window (noise at q 60-95: 20-50 levels), not another picture (about 85)
    reencoded = 1 - sum(exact) / len(exact)
    assert (reencoded == share) if share in (0.0, 1.0) else 0.3 < reencoded < 0.7


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16])
@pytest.mark.parametrize("channels", [3, 1])
def test_jpeg_round_trip_leaves_8x8_blocks_in_the_stored_dtype(dtype, channels):
    from pnprgm.training.recipe import jpeg_round_trip

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 64)[None, :] * np.linspace(0.2, 1, 64)[:, None]
    # smooth colour (as in photos: 4:2:0 chroma keeps it) and fine luma texture
    tint = np.array([1.0, 0.8, 0.6])[:channels, None, None]
    smooth = np.clip(ramp[None] * tint + 0.03 * rng.standard_normal((1, 64, 64)), 0, 1)
    patch = torch.from_numpy((smooth * 255).round().astype(np.uint8))
    if dtype == torch.float16:
        patch = (patch.float() / 255).to(torch.float16)
    out = jpeg_round_trip(patch, 20)
    assert out.dtype == dtype and out.shape == patch.shape
    values = out.float()[0] * (255 if dtype == torch.float16 else 1)
    steps = (values[:, 1:] - values[:, :-1]).abs().mean(0)  # step between column j and j + 1
    across = steps[7::8].mean()  # block boundaries sit after columns 7, 15, ...
    inside = torch.cat([steps[i::8] for i in range(7)]).mean()
    assert across > 1.5 * inside, (across, inside)
    high = jpeg_round_trip(patch, 100).float() * (255 if dtype == torch.float16 else 1)
    original = patch.float() * (255 if dtype == torch.float16 else 1)
    assert (high - original).abs().mean() < 0.5 * (out.float() * (255 if dtype == torch.float16 else 1) - original).abs().mean()


@pytest.mark.parametrize("asked, native, device, expected", [
    ("auto", True, "cpu", "bf16"), ("auto", False, "cpu", "float32"), ("float32", True, "cpu", "float32"),
    ("bf16", False, "cpu", "bf16"), ("auto", True, "cuda", "bf16"), ("auto", False, "cuda", "float32")])
def test_precision_auto_takes_bf16_only_where_the_hardware_has_it(monkeypatch, asked, native, device, expected):
    from pnprgm.training import recipe

    import pnprgm.device as device_module

    monkeypatch.setattr(device_module, "native_bf16", lambda d: native)
    assert device_module.resolve_precision(recipe.RecipeConfig(precision=asked).precision, torch.device(device)) == expected
    with pytest.raises(Exception, match="--precision must be one of auto, bf16, float32"):
        recipe.RecipeConfig(precision="half")


def test_the_cli_offers_the_recipes_precisions_and_cpu_bf16_needs_its_instructions(monkeypatch):
    from pnprgm.cli.main import app
    from pnprgm.training import recipe

    command = app.get_command(None, "train-denoisers")
    option = next(p for p in command.params if p.name == "precision")
    assert tuple(option.type.choices) == recipe.PRECISIONS  # the CLI names them without importing torch
    import pnprgm.device as device_module

    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"avx512f", "avx512bw"}))  # Skylake: emulated
    assert not device_module.native_bf16(torch.device("cpu"))
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert device_module.native_bf16(torch.device("cpu"))


@pytest.mark.parametrize("precision", ["bf16", "float32"])
def test_recipe_trains_in_either_precision_and_records_it(tiny_pack, tmp_path, precision):
    from pnprgm.training.recipe import RecipeConfig, train_denoisers

    cfg = RecipeConfig(minutes=0.004, size="tiny", batch_size=2, crop=32, workers=0, gray_share=0, precision=precision,
                       jpeg_share=0.5, save_every=3600)
    summary = train_denoisers(tiny_pack, tmp_path / "out", cfg, device="cpu", echo=lambda line: None)
    record = read_model_file(tmp_path / "out" / "drunet-denoiser-color.pt")["record"]
    assert summary["steps"]["drunet-denoiser-color"] >= 1 and record["hardware"]["precision"] == precision
    assert record["recipe"]["jpeg_share"] == 0.5 and record["recipe"]["precision"] == precision
    assert all(np.isfinite(v) and v > 10 for v in record["val_psnr_by_sigma255"].values())


def test_jpeg_share_is_refused_for_16_bit_photos_in_one_line(tmp_path):
    from pnprgm.errors import UserError
    from pnprgm.training.recipe import RecipeConfig, train_denoisers

    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((48, 48)) * 60000).astype(np.uint16)).save(tmp_path / f"wide{i}.png")
    cfg = RecipeConfig(minutes=0.01, size="tiny", batch_size=2, crop=32, workers=0, jpeg_share=0.3)
    with pytest.raises(UserError, match="16-bit images, which JPEG .8-bit. would posterise; leave out --jpeg-share"):
        train_denoisers(tmp_path, tmp_path / "out", cfg, device="cpu", echo=lambda line: None)
    assert not (tmp_path / "out" / "drunet-denoiser-color.pt").exists()


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_saves_the_models_without_a_traceback(tiny_pack, tmp_path):
    """``pkill -f`` or a job scheduler signals the workers too: a worker killed first used to stop the run with a
    DataLoader traceback before the models were saved."""
    import signal
    import time

    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "pnprgm.cli.main", "train-denoisers", "--data", str(tiny_pack), "--out", str(out),
         "--minutes", "5", "--device", "cpu", "--size", "tiny", "--batch-size", "2", "--crop", "32", "--workers", "1",
         "--save-every", "3600", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout.readline().startswith("recipe: ")  # photos loaded, the worker starting
        time.sleep(4)  # a few steps in, the worker running
        os.killpg(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "Traceback" not in stderr and "killed by signal" not in stderr, stderr
    assert process.returncode in (130, 143), (process.returncode, stderr)
    for name in ("drunet-denoiser-color", "drunet-denoiser-gray"):
        record = read_model_file(out / f"{name}.pt")["record"]
        assert record["final"] and record["interrupted"]


def test_pack_script_keeps_photos_of_one_stem_apart_and_never_deletes_files_it_did_not_write(tmp_path):
    """a.png and a.jpg were both packed as a.jpg (one photo lost, the manifest naming a file no one held), and an
    --out whose data/ held a user's files was deleted whole."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(_photo(rng, 200, 300)).save(photos / "a.png")
    Image.fromarray(_photo(rng, 200, 300)).save(photos / "a.jpg", quality=95)
    for i in range(8):
        Image.fromarray(_photo(rng, 200, 300)).save(photos / f"p{i}.png")
    out = tmp_path / "pack"
    (out / "data").mkdir(parents=True)
    (out / "data" / "precious.txt").write_text("mine")
    command = [sys.executable, str(REPO / "scripts" / "pack_gpu.py"), str(photos), "--out", str(out), "--no-wheels",
               "--budget-mb", "1000", "--sides", "128"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "holds files an earlier pack did not write (precious.txt)" in refused.stderr
    assert (out / "data" / "precious.txt").read_text() == "mine"
    (out / "data" / "precious.txt").unlink()
    assert subprocess.run(command, capture_output=True, text=True, timeout=120).returncode == 0
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    packed = {e["name"]: e["packed"] for split in ("train", "val") for e in manifest[split]}
    assert len(packed) == 10 and len(set(packed.values())) == 10 and packed["a.png"] != packed["a.jpg"]
    assert all((out / "data" / split / e["packed"]).is_file() for split in ("train", "val") for e in manifest[split])
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)  # its own pack is replaced
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in out.iterdir()) == ["data"]  # no staging folder left behind


def test_pack_script_refuses_a_file_at_data_and_leaves_no_half_pack_behind(tmp_path, monkeypatch):
    """A plain file at OUT/data was deleted without --overwrite; a pack failing mid-way left OUT/.data-XXXX (the whole
    pack, travelling to the GPU machine) behind."""
    import runpy

    import pnprgm.io

    photos = _photo_folder(tmp_path / "photos", 3, seed=4)
    out = tmp_path / "pack"
    out.mkdir()
    (out / "data").write_text("precious")
    main = runpy.run_path(str(REPO / "scripts" / "pack_gpu.py"))["main"]
    args = ["pack_gpu.py", str(photos), "--out", str(out), "--no-wheels", "--budget-mb", "1000", "--sides", "128"]
    monkeypatch.setattr(sys, "argv", args)
    assert main() == 1 and (out / "data").read_text() == "precious"
    (out / "data").unlink()
    assert main() == 0
    before = json.loads((out / "data" / "manifest.json").read_text())

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pnprgm.io, "write_json", full_disk)
    with pytest.raises(OSError):
        main()
    assert sorted(p.name for p in out.iterdir()) == ["data"]  # no staging copy, and the old pack in place
    assert json.loads((out / "data" / "manifest.json").read_text()) == before
    mask = os.umask(0)
    os.umask(mask)
    assert (out / "data").stat().st_mode & 0o777 == 0o777 & ~mask  # as mkdir makes it (mkdtemp made 0700)


def test_pack_script_keeps_folders_it_did_not_make_and_answers_bad_input_in_one_line(tmp_path, monkeypatch):
    """It swept every OUT/.data-* and OUT/.old-* (a user's own folders too) as its leftovers; --overwrite deleted
    a user's files inside OUT/data; a missing folder, a MANIFEST.tsv without a file column and one photo that does
    not decode were tracebacks (the last one stopping the whole pack)."""
    import runpy

    photos = _photo_folder(tmp_path / "photos", 10, seed=5)
    out = tmp_path / "pack"
    (out / ".data-mine").mkdir(parents=True)
    (out / ".data-mine" / "keep.txt").write_text("mine")
    (out / ".old-notes").mkdir()
    main = runpy.run_path(str(REPO / "scripts" / "pack_gpu.py"))["main"]

    def pack(*extra):
        monkeypatch.setattr(sys, "argv", ["pack_gpu.py", *extra, "--out", str(out), "--no-wheels", "--budget-mb",
                                          "1000", "--sides", "128"])
        return main()

    assert pack(str(photos)) == 0
    assert (out / ".data-mine" / "keep.txt").read_text() == "mine" and (out / ".old-notes").is_dir()
    assert sorted(p.name for p in out.iterdir()) == [".data-mine", ".old-notes", "data"]
    (out / "data" / "mine.cr2").write_text("raw")
    assert pack(str(photos), "--overwrite") == 1  # the option is gone (one line): nothing deletes a user's files
    assert pack(str(photos)) == 1 and (out / "data" / "mine.cr2").read_text() == "raw"
    (out / "data" / "mine.cr2").unlink()

    assert pack(str(tmp_path / "nowhere")) == 1
    (photos / "MANIFEST.tsv").write_text("name\tlicense\np0.png\tCC0\n")
    assert pack(str(photos)) == 1
    (photos / "MANIFEST.tsv").write_text("file\tlicense\np0.png\tCC0\n")
    (photos / "p9.png").write_bytes((photos / "p9.png").read_bytes()[:200])  # a truncated download
    assert pack(str(photos)) == 0
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    packed = [e["name"] for split in ("train", "val") for e in manifest[split]]
    assert len(packed) == 9 and "p9.png" not in packed
    assert [e["license"] for split in ("train", "val") for e in manifest[split] if e["name"] == "p0.png"] == ["CC0"]


def test_pack_script_errors_are_one_line(tmp_path):
    photos = _photo_folder(tmp_path / "photos", 2, seed=6)
    (photos / "MANIFEST.tsv").write_text("name\tlicense\np0.png\tCC0\n")
    command = [sys.executable, str(REPO / "scripts" / "pack_gpu.py"), "--out", str(tmp_path / "pack"), "--no-wheels",
               "--budget-mb", "1000", "--sides", "128"]
    latin = _photo_folder(tmp_path / "latin", 2, seed=6)
    (latin / "MANIFEST.tsv").write_bytes("file\tlicense\np0.png\tlicence \xe9\n".encode("latin-1"))
    for folder, message, more in ((tmp_path / "nowhere", "is not a folder of photos; give the folder", []),
                                  (photos, "has no 'file' column", []), (latin, "save it as UTF-8", []),
                                  (latin, "--overwrite is gone", ["--overwrite"])):
        done = subprocess.run([*command, str(folder), *more], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_the_rgm_recipe_removes_only_the_runs_own_resume_files(tmp_path):
    """train_rgm_gpu.sh ran rm -rf on OUT/rgm/checkpoints and OUT/rgm/samples: a user's step_best.pt (which `pnprgm
    train` keeps, --overwrite or not) went with them."""
    from pnprgm.training.loop import remove_resume_files

    run = tmp_path / "rgm"
    (run / "checkpoints").mkdir(parents=True)
    (run / "samples").mkdir()
    for name in ("last.pt", "config.json", "model.pt", "record.json", "log.csv", "checkpoints/step_0000500.pt",
                 "checkpoints/step_best.pt", "samples/step_0000500.png"):
        (run / name).write_text(name)
    removed = remove_resume_files(run)
    assert sorted(str(p.relative_to(run)) for p in removed) == [
        "checkpoints/step_0000500.pt", "config.json", "last.pt", "samples/step_0000500.png"]
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == [
        "checkpoints", "checkpoints/step_best.pt", "log.csv", "model.pt", "record.json"]  # samples/ was emptied
    assert (run / "checkpoints" / "step_best.pt").read_text() == "checkpoints/step_best.pt"


def test_a_manifest_json_that_is_not_a_pack_manifest(tmp_path):
    """A photo folder holding an unrelated manifest.json ([{"file": ...}]) crashed train-denoisers with an
    AttributeError; in a pack (train/ and val/) it is an error with the fix, beside plain photos it is ignored."""
    from pnprgm.training.recipe import read_manifest

    folder = _photo_folder(tmp_path / "photos", 2, seed=7)
    for foreign in ('[{"file": "p0.png"}]', '{"pack": {}, "train": [{"file": "p0.png"}]}', '{"train": []}', "{oops"):
        (folder / "manifest.json").write_text(foreign)
        with pytest.warns(UserWarning, match="is not a pack manifest .*ignored"):
            assert read_manifest(folder) == {}
    (folder / "train").mkdir()
    (folder / "val").mkdir()
    with pytest.raises(UserError, match="is not a readable pack manifest .*rebuild the pack with scripts/pack_gpu.sh"):
        read_manifest(folder)
    good = {"pack": {"long_side": 96}, "train": [{"name": "p0.png", "sha256": "0" * 64}], "val": []}
    (folder / "manifest.json").write_text(json.dumps(good))
    assert read_manifest(folder) == good


def test_the_recipe_draws_crops_and_noise_from_streams_no_other_shares():
    """Crops were seeded seed * 1000 + worker and the noise seed + 1: with --seed 0, worker 1's crops and the noise
    drew the same random numbers."""
    from pnprgm.training.recipe import crop_seed, noise_seed

    for seed in (0, 1, 7):
        seeds = [crop_seed(seed, worker) for worker in range(16)] + [noise_seed(seed), seed]
        assert len(set(seeds)) == len(seeds)
        first = [torch.rand(4, generator=torch.Generator().manual_seed(s)).tolist() for s in seeds]
        assert len({tuple(f) for f in first}) == len(first)
    assert crop_seed(0, 1) != crop_seed(1, 0) and noise_seed(0) != noise_seed(1)
