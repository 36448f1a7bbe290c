"""The official RGM generator: layout equal to the official state_dicts, reference output, checkpoint formats."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from pnprgm.errors import UserError
from pnprgm.rgm.official import CONFIGS, build_generator, official_config, load_generator, save_generator
from pnprgm.rgm.schedules import DDPMSchedule

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


@pytest.mark.parametrize("name", CONFIGS.names())
def test_official_config_equals_the_reference(shared_dir, name):
    assert official_config(name) == _layout(shared_dir, name)["config"]


@pytest.mark.parametrize("name", CONFIGS.names())
def test_state_dict_layout_equals_official(shared_dir, name):
    layout = _layout(shared_dir, name)
    with torch.device("meta"):
        gen = build_generator(official_config(name))
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
        gen = load_generator(tmp_path / name, config=preset)
        assert torch.allclose(_run(gen, ref_a), expected, atol=0, rtol=0), name


def test_mismatch_names_keys(ref_a):
    state = dict(ref_a["state_dict"])
    del state["all_modules.3.Conv_0.bias"]
    state["all_modules.99.weight"] = torch.zeros(1)
    state["z_transform.1.weight"] = torch.zeros(3, 3)
    with pytest.raises(UserError) as info:
        load_generator(state, config=ref_a["config"])
    message = str(info.value)
    assert "\n" not in message
    assert "1 missing (all_modules.3.Conv_0.bias)" in message
    assert "1 unexpected (all_modules.99.weight)" in message
    assert "1 wrongly shaped" in message and "z_transform.1.weight [3, 3] vs [16, 8]" in message


def test_mismatch_suggests_matching_config():
    with torch.device("meta"):
        state = build_generator(official_config("cifar10")).state_dict()
    with pytest.raises(UserError, match="matches the official config 'cifar10'") as info:
        load_generator(state, config="celebahq256")
    assert "... " in str(info.value) and len(str(info.value)) < 1500  # long lists are truncated


def test_stored_config_conflicts_with_the_requested_config(tmp_path, ref_gen):
    path = save_generator(ref_gen, tmp_path / "gen.pt")
    with pytest.raises(UserError, match="different generator config"):
        load_generator(path, config="cifar10")


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
    if not variant:
        return
    # the option acts: either the layout differs from the default's, or with the default's weights the output does
    # (weights moved off their initialisation, whose zero last layers give outputs of about 1e-5, tanh's linear part)
    torch.manual_seed(1)
    base = build_generator(SMALL).eval()
    with torch.no_grad():
        for parameter in base.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    theirs, ours = base.state_dict(), gen.state_dict()
    if {k: v.shape for k, v in theirs.items()} != {k: v.shape for k, v in ours.items()}:
        return
    gen.load_state_dict(theirs)
    with torch.no_grad():
        expected = base(x, torch.tensor([1, 3]), torch.randn(2, 8, generator=torch.Generator().manual_seed(0)))
        out = gen(x, torch.tensor([1, 3]), torch.randn(2, 8, generator=torch.Generator().manual_seed(0)))
    assert float(expected.abs().max()) > 0.05  # large enough that tanh and every option show
    if variant.get("not_use_tanh"):
        torch.testing.assert_close(torch.tanh(out), expected)  # the same network without its last tanh
        assert float((out - expected).abs().max()) > 1e-3
    else:
        assert float((out - expected).abs().max()) > 1e-3 * float(expected.abs().max()), f"{variant} changed nothing"


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


def test_restoration_schedule_and_noise_injection_match_the_official_arrays(shared_dir):
    """RGM's restoration re-noises to level j with ``a_j x + 0.99 s_j eps`` (schedule_T4.json's float32 arrays)."""
    from pnprgm.denoisers.rgm import RGMDenoiser

    official = json.loads((shared_dir / "reference" / "rgm_official" / "schedule_T4.json").read_text())
    config = dict(SMALL, num_timesteps=4)
    gen = build_generator(config).eval()
    torch.testing.assert_close(gen.schedule.signal().float(), torch.tensor(official["a_s_cum"]["values"]), rtol=0, atol=1e-6)
    torch.testing.assert_close(gen.schedule.noise().float(), torch.tensor(official["sigmas_cum"]["values"]), rtol=0, atol=1e-6)
    seen = []
    gen.register_forward_pre_hook(lambda module, args: seen.append(args))
    x = torch.full((1, 3, 64, 64), 0.75)
    RGMDenoiser(gen).stochastic_restore(x, 2, noise_scale=0.99, generator=torch.Generator().manual_seed(0))
    given, t, _ = seen[-1]
    a2, s2 = official["a_s_cum"]["values"][2], official["sigmas_cum"]["values"][2]
    assert t.tolist() == [1]  # level j is the generator's time label j - 1
    assert float(given.mean()) == pytest.approx(a2 * 0.5, abs=0.02)  # x = 0.75 is 0.5 in [-1, 1]
    assert float(given.std()) == pytest.approx(0.99 * s2, rel=0.02)


def test_official_checkpoint_restores_from_the_cli(tmp_path):
    """A netG_*.pth (EMA weights, ``module.`` keys) restores with one command and the official SR x4 preset."""
    from click.testing import CliRunner

    from pnprgm.cli.main import app
    from pnprgm import io

    torch.manual_seed(0)
    gen = build_generator(SMALL).eval()
    torch.save({f"module.{k}": v for k, v in gen.state_dict().items()}, tmp_path / "netG_1.pth")
    (tmp_path / "args.json").write_text(json.dumps(SMALL))
    face = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    io.write_image(tmp_path / "face.png", face)
    runner = CliRunner()
    degraded = runner.invoke(app, ["degrade", str(tmp_path / "face.png"), "--operator", "sr4", "-o", str(tmp_path / "m")])
    assert degraded.exit_code == 0, degraded.output
    measurement = next((tmp_path / "m").glob("*.png"))
    common = ["restore", str(measurement), "--model", str(tmp_path / "netG_1.pth"), "--preset", "official-sr4",
              "--iters", "2", "-q"]
    result = runner.invoke(app, [*common, "--model-config", str(tmp_path / "args.json"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    restored = io.read_image(tmp_path / "out" / f"{measurement.stem}.png")
    assert restored.shape == face.shape
    record = json.loads((tmp_path / "out" / f"{measurement.stem}.json").read_text())
    assert record["settings"]["solver"] == "rgm-drs" and record["settings"]["params"]["alpha"] == 0.05
    # the wrong architecture is a one-line error naming the mismatch, and nothing is written
    wrong = runner.invoke(app, [*common, "--model-preset", "cifar10", "-o", str(tmp_path / "bad")])
    assert wrong.exit_code != 0 and "Traceback" not in wrong.output
    assert "cifar10" in wrong.output and not list((tmp_path / "bad").glob("*.png"))
    assert "--model-preset is now called --model-config" in wrong.output  # the old flag name still works


def test_an_official_config_file_of_other_keys_or_suffix_is_named(tmp_path):
    """``--model-config`` with ``{"foo": 1}`` was read as the official defaults (a misleading "does not fit"), a typo
    was dropped in silence, and ``config.txt`` was "unknown official RGM generator config"."""
    from pnprgm.rgm import models

    (tmp_path / "other.json").write_text('{"foo": 1}')
    with pytest.raises(UserError, match=r"other.json holds none of the official RGM train.py arguments \(it has foo\)"):
        models.load_generator_file(tmp_path / "netG.pth", official_config=str(tmp_path / "other.json"))
    (tmp_path / "typo.json").write_text('{"image_size": 256, "num_chanels_dae": 64}')
    # unknown keys are errors, each named (a warning before, and the run went on without them)
    with pytest.raises(UserError, match=r"num_chanels_dae \(did you mean num_channels_dae\?\) is not an argument of "
                                        r"the official RGM train.py; correct or remove it"):
        models.load_generator_file(tmp_path / "netG.pth", official_config=str(tmp_path / "typo.json"))
    with pytest.raises(UserError, match=r"numbers.yaml: 2 is not an argument"):  # YAML gives such a key as a number
        models._official_arguments("numbers.yaml", {"image_size": 256, 2: 1})
    assert models._official_arguments("fine.yaml", {"image_size": 256}) == {"image_size": 256}
    with pytest.raises(UserError, match=r"config.txt: a file of the official arguments is .json, .yaml or .yml"):
        models.load_generator_file(tmp_path / "netG.pth", official_config=str(tmp_path / "config.txt"))


def test_an_official_config_file_is_never_replaced_by_an_output(tmp_path):
    """`sample netG.pth#celeb.json -o celeb.png --overwrite` wrote the grid's record over the config it had just read,
    and `restore --model-config` did not count its config among the inputs either."""
    from click.testing import CliRunner

    from pnprgm.cli.main import app
    from pnprgm import io

    torch.manual_seed(0)
    gen = build_generator(SMALL).eval()
    torch.save({f"module.{k}": v for k, v in gen.state_dict().items()}, tmp_path / "netG_1.pth")
    config = tmp_path / "celeb.json"
    config.write_text(json.dumps(SMALL))
    before = config.read_text()
    result = CliRunner().invoke(app, ["sample", f"{tmp_path / 'netG_1.pth'}#{config}", "-n", "1", "--size", "32",
                                      "-o", str(tmp_path / "celeb.png"), "--overwrite"])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert config.read_text() == before and not (tmp_path / "celeb.png").exists()
    io.write_image(tmp_path / "in" / "celeb.png", torch.rand(3, 8, 8))
    result = CliRunner().invoke(app, ["restore", str(tmp_path / "in" / "celeb.png"), "--operator", "sr4", "--model",
                                      str(tmp_path / "netG_1.pth"), "--model-config", str(config), "--preset",
                                      "official-sr4", "--iters", "1", "-q", "-o", str(tmp_path), "--overwrite"])
    assert result.exit_code == 1 and f"refusing to overwrite {config}, which this run reads" in result.output, \
        result.output
    assert config.read_text() == before, result.output
    plain = CliRunner().invoke(app, ["sample", f"{tmp_path / 'netG_1.pth'}#{config}", "-n", "1", "--size", "32",
                                     "-o", str(tmp_path / "celeb.png")])  # refused as read, not "pass --overwrite"
    assert plain.exit_code != 0 and "which this run reads" in plain.output, plain.output
