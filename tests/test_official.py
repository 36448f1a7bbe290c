"""The official RGM generator: layout equal to the official state_dicts, reference output, checkpoint formats."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from pnprgm.errors import UserError
from pnprgm.official import PRESETS, build_generator, get_preset, load_generator, save_generator
from pnprgm.schedules import DDPMSchedule

SMALL = dict(image_size=16, num_channels_dae=16, n_mlp=1, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[8],
             z_emb_dim=16, nz=8)


def _layout(shared_dir, name: str) -> dict:
    return json.loads((shared_dir / "reference" / "rgm_official" / f"layout_{name}.json").read_text())


@pytest.fixture
def ref_a(shared_dir) -> dict:
    return torch.load(shared_dir / "reference" / "rgm_official" / "ref_A.pt", weights_only=True)


@pytest.fixture
def ref_gen(ref_a):
    gen = build_generator(ref_a["config"])
    gen.load_state_dict(ref_a["state_dict"])
    return gen.eval()


def _run(gen, ref_a) -> torch.Tensor:
    with torch.no_grad():
        return gen(ref_a["x"], ref_a["t"], ref_a["z"])


@pytest.mark.parametrize("name", PRESETS.names())
def test_preset_config_equals_official(shared_dir, name):
    assert get_preset(name) == _layout(shared_dir, name)["config"]


@pytest.mark.parametrize("name", PRESETS.names())
def test_state_dict_layout_equals_official(shared_dir, name):
    layout = _layout(shared_dir, name)
    with torch.device("meta"):
        gen = build_generator(get_preset(name))
    state = gen.state_dict()
    assert [[key, list(value.shape)] for key, value in state.items()] == layout["state_dict"]
    assert sum(value.numel() for value in state.values()) == layout["num_parameters"]
    names = [getattr(module, "official_name", type(module).__name__) for module in gen.all_modules]
    assert names == [module for _, module in layout["all_modules"]]


def test_reference_output(ref_a, ref_gen):
    shapes = [(key, value.shape) for key, value in ref_a["state_dict"].items()]
    assert [(key, value.shape) for key, value in ref_gen.state_dict().items()] == shapes
    out = _run(ref_gen, ref_a)
    assert (out - ref_a["out"]).abs().max().item() < 1e-5


def test_protocol_attributes(ref_a, ref_gen):
    assert ref_gen.nz == ref_a["config"]["nz"]
    assert ref_gen.conditioning == "time"
    assert ref_gen.schedule == DDPMSchedule(T=4, beta_min=0.1, beta_max=20.0)
    assert ref_gen.config["num_channels_dae"] == ref_a["config"]["num_channels_dae"]
    json.dumps(ref_gen.config)  # a plain, serialisable dict


def test_save_load_round_trip(tmp_path, ref_a, ref_gen):
    path = save_generator(ref_gen, tmp_path / "gen.pt")
    loaded = load_generator(path)
    assert not loaded.training
    assert loaded.config == ref_gen.config
    assert torch.equal(_run(loaded, ref_a), _run(ref_gen, ref_a))


def test_official_file_formats(tmp_path, ref_a, ref_gen):
    expected = _run(ref_gen, ref_a)
    prefixed = {"module." + key: value for key, value in ref_a["state_dict"].items()}
    torch.save(prefixed, tmp_path / "netG_100.pth")
    torch.save(ref_a["state_dict"], tmp_path / "plain.pth")
    args = argparse.Namespace(**ref_a["config"])
    torch.save({"epoch": 3, "args": args, "netG_dict": prefixed, "optimizerG": {"state": {}, "param_groups": []}},
               tmp_path / "content.pth")
    for name, preset in [("netG_100.pth", ref_a["config"]), ("plain.pth", ref_a["config"]), ("content.pth", None)]:
        gen = load_generator(tmp_path / name, preset=preset)
        assert torch.allclose(_run(gen, ref_a), expected, atol=0, rtol=0), name


def test_mismatch_names_keys(ref_a):
    state = dict(ref_a["state_dict"])
    del state["all_modules.3.Conv_0.bias"]
    state["all_modules.99.weight"] = torch.zeros(1)
    state["z_transform.1.weight"] = torch.zeros(3, 3)
    with pytest.raises(UserError) as info:
        load_generator(state, preset=ref_a["config"])
    message = str(info.value)
    assert "\n" not in message
    assert "1 missing (all_modules.3.Conv_0.bias)" in message
    assert "1 unexpected (all_modules.99.weight)" in message
    assert "1 wrongly shaped" in message and "z_transform.1.weight [3, 3] vs [16, 8]" in message


def test_mismatch_suggests_matching_preset():
    with torch.device("meta"):
        state = build_generator(get_preset("cifar10")).state_dict()
    with pytest.raises(UserError, match="matches preset 'cifar10'") as info:
        load_generator(state, preset="celebahq256")
    assert "... " in str(info.value) and len(str(info.value)) < 1500  # long lists are truncated


def test_stored_config_conflicts_with_preset(tmp_path, ref_gen):
    path = save_generator(ref_gen, tmp_path / "gen.pt")
    with pytest.raises(UserError, match="different generator config"):
        load_generator(path, preset="cifar10")


VARIANTS = [
    {}, {"fir": False}, {"resblock_type": "ddpm"}, {"resblock_type": "ddpm", "resamp_with_conv": False, "fir": False},
    {"progressive": "output_skip"}, {"progressive": "residual"}, {"progressive_input": "input_skip"},
    {"progressive_input": "input_skip", "progressive_combine": "cat"}, {"progressive_input": "none"},
    {"embedding_type": "fourier"}, {"conditional": False}, {"not_use_tanh": True}, {"centered": False},
    {"skip_rescale": False}, {"fir_kernel": [1, 2, 1]},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={v[k]}" for k in v) or "default")
def test_architecture_options(variant):
    gen = build_generator({**SMALL, **variant}).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        out = gen(x, torch.tensor([1, 3]), torch.randn(2, 8))
    assert out.shape == x.shape and torch.isfinite(out).all()
    if not variant.get("not_use_tanh"):
        assert out.abs().max() <= 1


@pytest.mark.parametrize("bad, name", [
    ({"resblock_type": "unet"}, "resblock_type"), ({"progressive": "skip"}, "progressive"),
    ({"forward_name": "sr"}, "forward_name"), ({"embedding_type": "learned"}, "embedding_type"),
    ({"num_channels_dae": 10}, "num_channels_dae"), ({"image_size": 18}, "image_size"),
])
def test_unsupported_values_are_user_errors(bad, name):
    with pytest.raises(UserError, match=name):
        build_generator({**SMALL, **bad})


def test_bad_inputs_are_user_errors(ref_a, ref_gen):
    with pytest.raises(UserError, match="latent z"):
        ref_gen(ref_a["x"], ref_a["t"], torch.zeros(2, 3))
    with pytest.raises(UserError, match="multiple of 2"):
        ref_gen(torch.zeros(1, 3, 15, 16), torch.tensor([0]), torch.zeros(1, 8))
