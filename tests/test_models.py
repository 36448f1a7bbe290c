"""Shipped models: every entry of pretrained/index.json is present, hash-checked, small, self-describing and
works as a denoiser; publishing writes the file and the index consistently."""
from __future__ import annotations

import json
import re

import pytest
import torch

from pnprgm import denoisers, io
from pnprgm.denoisers.rgm import load_denoiser
from pnprgm.errors import UserError
from pnprgm.io import torch_load
from pnprgm.rgm import models
from pnprgm.rgm.architectures import build_generator_from_config
from pnprgm.rgm.model_file import save_model
from pnprgm.rgm.unet import sized_config

SHIPPED = models.registry.names()


def test_defaults_exist_for_colour_and_gray():
    if not SHIPPED:
        pytest.skip("no shipped models in this checkout")
    assert models.default_model(3).channels == 3 and models.default_model(1).channels == 1


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_file_matches_its_index_entry(name):
    entry = models.registry.get(name)
    models.verify(entry)  # present, sha256 matches
    assert entry.path.stat().st_size <= 16 * 2**20, "a shipped file must stay within 16 MiB"
    content = torch_load(entry.path)  # weights_only=True
    assert content["generator"]["config"]["channels"] == entry.channels
    record = entry.record
    for key in ("command", "steps", "hardware", "files", "final_losses", "val_psnr"):
        assert record.get(key) not in (None, "", []), f"training record lacks {key}"
    assert all(len(f["sha256"]) == 64 for f in record["files"])
    assert models.objective(record) not in ("", "unknown (no training record)")
    assert record.get("objective"), "every shipped record states its objective in words"


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_name_says_rgm_only_for_an_active_rgm_prior(name):
    """Honest names: a model whose objective had no (active) RGM prior is not called rgm-*."""
    objective = models.objective(models.registry.get(name).record)
    without_prior = "no RGM prior" in objective or "no active RGM prior" in objective or "RGM" not in objective
    # either way round: an rgm-* name has an acting prior, and a model without one is named for what it is
    assert name.startswith("rgm") != without_prior, f"{name}: {objective}"


@pytest.fixture
def notices(monkeypatch, capsys):
    """The rename notices printed from now on (each old name announces itself once per process)."""
    from pnprgm import registry as registry_module

    monkeypatch.setattr(registry_module, "_ANNOUNCED", set())
    capsys.readouterr()
    return lambda: [line for line in capsys.readouterr().err.splitlines() if "is now called" in line]


@pytest.mark.parametrize("old", [old for old, new in models.RENAMED.items() if new in models.registry])
def test_an_old_model_name_loads_the_same_file_with_one_notice(old, notices):
    new = models.RENAMED[old]
    assert old not in models.registry.names() and old in models.registry
    assert models.model_path(old) == models.model_path(new) == models.registry.get(new).path
    assert models.source_info(old) == models.source_info(new)  # benchmark --model
    assert models.registry.get(old) is models.registry.get(new)
    assert notices() == [f"pnprgm: model {old!r} is now called {new!r} (trained without an active RGM prior); "
                         f"the old name still works."]
    from pnprgm.rgm.model_file import read_initial_weights

    assert read_initial_weights(old).provenance["sha256"] == models.registry.get(new).sha256  # --init-from
    assert notices() == []  # once per process


@pytest.mark.parametrize("old", [old for old, new in models.RENAMED.items() if new in denoisers.names()])
def test_an_old_denoiser_name_builds_the_same_denoiser_with_one_notice(old, notices):
    """--denoiser / --model / restore(denoiser=...) by an old name: the same model file, the same output."""
    new = models.RENAMED[old]
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        by_old = denoisers.build(old, channels=1)(x, 0.1)
        assert len(notices()) == 1
        by_new = denoisers.build(new, channels=1)(x, 0.1)
        by_old_again = denoisers.build(old, channels=1)(x, 0.1)
    assert torch.equal(by_old, by_new) and torch.equal(by_old, by_old_again)
    assert notices() == []
    assert models.model_behind(old, 1) == models.model_behind(new, 1)  # the restore record names the same file
    assert old not in denoisers.names()


def test_models_command_lists_todays_names_with_their_old_ones():
    from click.testing import CliRunner

    from pnprgm.cli.main import app

    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    blocks: dict[str, str] = {}  # model name -> its lines
    for line in result.output.splitlines():
        if not line.startswith(" "):
            name = line.split(":")[0].split(" ")[0]
        blocks[name] = blocks.get(name, "") + line + "\n"
    assert list(blocks) == SHIPPED
    for old, new in models.RENAMED.items():
        if new in models.registry:
            assert f"formerly {old}" in blocks[new]
    assert "formerly rgm-denoiser-color-perceptual, rgm-perceptual (family)" in blocks["unet-denoiser-color-lpips"]
    # a fine-tuning's source shipped under a name since given to another file is shown by today's name
    assert "fine-tuned from unet-denoiser-color-v1 (recorded as rgm-denoiser-color)" in blocks["unet-denoiser-color"]
    listing = CliRunner().invoke(app, ["denoisers"])
    assert listing.exit_code == 0, listing.output
    assert "rgm -> default" in listing.output and "rgm-perceptual -> unet-lpips" in listing.output


@pytest.mark.parametrize("name", [n for n in SHIPPED if models.registry.get(n).role == "denoiser"])
def test_shipped_denoiser_contract_and_it_denoises(name):
    """x in [0, 1] -> same shape (odd sizes too), and at sigma = 25/255 it removes noise on a smooth image."""
    entry = models.registry.get(name)
    denoiser = denoisers.build(name, channels=entry.channels)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 45), torch.linspace(0, 1, 37), indexing="ij")
    clean = (0.25 + 0.5 * torch.stack([yy, xx, (yy + xx) / 2])[: entry.channels])[None]
    noisy = clean + 25 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = denoiser(noisy, 25 / 255)
    assert out.shape == clean.shape
    error_in, error_out = (noisy - clean).pow(2).mean(), (out - clean).pow(2).mean()
    assert error_out < 0.25 * error_in, f"{name} only reduced the MSE from {error_in:.2e} to {error_out:.2e}"


def _tiny_model(tmp_path, channels):
    torch.manual_seed(0)
    config = sized_config("tiny", channels=channels, conditioning="sigma", output="residual", sigma_channel=True)
    gen = build_generator_from_config(config)
    record = {"command": "test", "steps": 1, "files": [{"name": "a.png", "sha256": "0" * 64}]}
    return save_model(tmp_path / f"run{channels}.pt", gen.state_dict(), dict(gen.config), {"name": "denoise"}, record)


def test_publish_writes_file_and_index(tmp_path):
    shipped = tmp_path / "pretrained"
    first = models.publish(_tiny_model(tmp_path, 3), "colour-a", default=True, summary="a", directory=shipped)
    second = models.publish(_tiny_model(tmp_path, 3), "colour-b", default=True, summary="b", directory=shipped)
    gray = models.publish(_tiny_model(tmp_path, 1), "gray-a", default=True, directory=shipped)
    index = {m["name"]: m for m in json.loads((shipped / "index.json").read_text())["models"]}
    assert set(index) == {"colour-a", "colour-b", "gray-a"}
    assert not index["colour-a"]["default"] and index["colour-b"]["default"] and index["gray-a"]["default"]
    assert index["gray-a"]["channels"] == 1 and gray.channels == 1
    for entry in (first, second, gray):
        assert io.sha256_file(shipped / entry.file) == index[entry.name]["sha256"]
        assert index[entry.name]["record"]["files"][0]["name"] == "a.png"
    loaded = load_denoiser(str(shipped / second.file))
    assert loaded(torch.rand(1, 3, 9, 11), 0.1).shape == (1, 3, 9, 11)


@pytest.mark.parametrize("damage", ["{broken", "[" * 100000 + "]" * 100000, '{"other": 1}', '{"models": 5}',
                                    '{"models": [{"nom": "x"}]}'])
def test_publish_refuses_a_damaged_index_before_writing_the_model(tmp_path, damage):
    shipped = tmp_path / "pretrained"
    shipped.mkdir()
    (shipped / "index.json").write_text(damage)
    with pytest.raises(UserError, match="cannot read the model index") as info:
        models.publish(_tiny_model(tmp_path, 3), "colour-a", directory=shipped)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in shipped.iterdir()) == ["index.json"]


def test_publish_refuses_to_replace_a_published_name_unless_asked(tmp_path):
    shipped = tmp_path / "pretrained"
    models.publish(_tiny_model(tmp_path, 3), "colour-a", summary="first", directory=shipped)
    before = (shipped / "colour-a.pt").read_bytes()
    with pytest.raises(UserError, match="already in .*replace=True"):
        models.publish(_tiny_model(tmp_path, 1), "colour-a", summary="second", directory=shipped)
    assert (shipped / "colour-a.pt").read_bytes() == before
    with pytest.raises(UserError, match="only in letter case"):
        models.publish(_tiny_model(tmp_path, 1), "Colour-A", directory=shipped, replace=True)
    entry = models.publish(_tiny_model(tmp_path, 1), "colour-a", summary="second", directory=shipped, replace=True)
    index = json.loads((shipped / "index.json").read_text())["models"]
    assert [(m["name"], m["channels"], m["summary"]) for m in index] == [("colour-a", 1, "second")]
    assert io.sha256_file(shipped / entry.file) == index[0]["sha256"]


@pytest.mark.parametrize("name", ["../escape", "", "sub/x", "a\\b", ".hidden", "x.pt", "two words"])
def test_publish_refuses_names_that_are_not_plain_file_names(tmp_path, name):
    shipped = tmp_path / "deep" / "pretrained"
    with pytest.raises(UserError, match="name is also its file name"):
        models.publish(_tiny_model(tmp_path, 3), name, directory=shipped)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run3.pt"]  # nothing written, here or above


def test_publish_refuses_a_model_whose_process_does_not_fit_its_role(tmp_path):
    source = _tiny_model(tmp_path, 3)
    content = torch.load(source, weights_only=True)
    for process, role, hint in (("operator", "denoiser", "pnprgm sample"), ("operator", "sr", "pnprgm sample"),
                                ("ddpm", "sr", "role='denoiser'"), ("sr", "denoiser", "role='sr'"),
                                ("denoise", "sr", "role='denoiser'")):
        content["process"] = {"name": process}
        torch.save(content, tmp_path / "other.pt")
        with pytest.raises(UserError, match=f"trained on the {process} process.*{re.escape(hint)}"):
            models.publish(tmp_path / "other.pt", "x", role=role, directory=tmp_path / "pretrained")
    assert not (tmp_path / "pretrained").exists()


def test_publish_rejects_unknown_role(tmp_path):
    with pytest.raises(UserError, match="role"):
        models.publish(_tiny_model(tmp_path, 3), "x", role="magic", directory=tmp_path)


def test_models_command_shows_resumes_and_fine_tuning(monkeypatch):
    """`pnprgm models` prints each entry's lineage: resumed segments and the model it was fine-tuned from."""
    from click.testing import CliRunner

    from pnprgm.cli.main import app
    from pnprgm.registry import Registry

    record = {"steps": 300, "seconds": 120, "files": [{"name": "a.png", "sha256": "0" * 64}], "val_psnr": 30.1,
              "history": [{"command": "pnprgm train ...", "until_step": 200}],
              "init_from": {"source": "rgm-denoiser-gray", "steps": 9000, "val_psnr": 30.47}}
    fake = Registry("model")
    fake.add("tuned", models.ModelEntry(name="tuned", file="tuned.pt", sha256="1" * 64, role="denoiser", channels=1,
                                        summary="a tuned model", record=record), "a tuned model")
    monkeypatch.setattr(models, "registry", fake)
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "resumed at step 200" in result.output
    assert "fine-tuned from rgm-denoiser-gray (9000 steps, validation PSNR 30.47 dB" in result.output


def test_publish_moves_a_family_member_and_refuses_taken_names(tmp_path):
    shipped = tmp_path / "pretrained"
    models.publish(_tiny_model(tmp_path, 3), "fam-colour-a", family="fam", directory=shipped)
    models.publish(_tiny_model(tmp_path, 3), "fam-colour-b", family="fam", directory=shipped)
    models.publish(_tiny_model(tmp_path, 1), "fam-gray", family="fam", directory=shipped)
    index = {m["name"]: m for m in json.loads((shipped / "index.json").read_text())["models"]}
    assert index["fam-colour-a"]["family"] is None  # one member per channel count
    assert index["fam-colour-b"]["family"] == index["fam-gray"]["family"] == "fam"
    for taken in ("default", "tv"):
        with pytest.raises(UserError, match="family"):
            models.publish(_tiny_model(tmp_path, 3), "x", family=taken, directory=shipped)
    for old in ("rgm", "rgm-perceptual"):  # an old name would silently change what it loads
        with pytest.raises(UserError, match="is the old name of"):
            models.publish(_tiny_model(tmp_path, 3), "x", family=old, directory=shipped)
    with pytest.raises(UserError, match="'rgm-denoiser-color' is the old name of 'unet-denoiser-color'"):
        models.publish(_tiny_model(tmp_path, 3), "rgm-denoiser-color", directory=shipped)
    # a denoiser's name would make every command that lists denoisers fail to register it ("already registered")
    for taken in ("tv", "default", "unet-lpips"):
        with pytest.raises(UserError, match="names a denoiser pnprgm has"):
            models.publish(_tiny_model(tmp_path, 3), taken, directory=shipped)
    for family in ("../x", "a b"):
        with pytest.raises(UserError, match="must name denoisers"):
            models.publish(_tiny_model(tmp_path, 3), "y", family=family, directory=shipped)
    with pytest.raises(UserError, match="at most 200 characters"):
        models.publish(_tiny_model(tmp_path, 3), "n" * 300, directory=shipped)
    with pytest.raises(UserError, match="one line"):
        models.publish(_tiny_model(tmp_path, 3), "z", summary="two\nlines", directory=shipped)
    (tmp_path / "afile").write_text("mine")
    for where in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(UserError, match=f"cannot publish into {where}: {tmp_path / 'afile'} is a file"):
            models.publish(_tiny_model(tmp_path, 3), "w", directory=where)
    assert (tmp_path / "afile").read_text() == "mine"
    shipped_names = {m["name"] for m in json.loads((shipped / "index.json").read_text())["models"]}
    assert shipped_names == {"fam-colour-a", "fam-colour-b", "fam-gray"}  # nothing else published


@pytest.mark.parametrize("family", sorted(models.families()))
def test_a_shipped_family_picks_its_member_by_channels(family):
    """The family's denoiser loads the member with the input's channel count, like ``default`` loads the defaults."""
    members = models.families()[family]
    assert family in denoisers.names()
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    for channels, entry in members.items():
        picked = denoisers.build(family, channels=channels)
        direct = denoisers.build(entry.name, channels=channels)
        with torch.no_grad():
            assert torch.equal(picked(x[:, :channels], 0.05), direct(x[:, :channels], 0.05))
    with pytest.raises(UserError, match="family"):
        models.family_model("no-such-family", 3)


def test_objective_names_the_terms_that_trained_a_model():
    assert models.objective({"objective": "L1 denoising (supervised; no RGM prior)"}).startswith("L1 denoising")
    mse = models.objective({"train": {"supervised": 100.0, "lmbda": 0.0, "prior_weight": 0.0, "prior": "kld"}})
    assert mse == "MSE to the clean image (x100); no RGM prior"
    old = models.objective({"train": {"supervised": 100.0, "lmbda": 5e-05, "prior": "kld"}})  # before prior_weight
    assert old == "MSE to the clean image (x100) + RGM fidelity (lmbda 5e-05) + RGM kld prior (weight 1)"
    perceptual = models.objective({"train": {"supervised": 100.0, "perceptual": 100.0, "lmbda": 0, "prior_weight": 0}})
    assert "LPIPS-alex (x100)" in perceptual and perceptual.endswith("no RGM prior")


def test_a_registry_alias_is_accepted_but_not_listed(notices):
    from pnprgm.registry import Registry

    things = Registry("thing")
    things.add("new", 1, "the thing")
    things.alias("old", "new", "renamed for a test")
    assert "old" in things and things.names() == ["new"] and things.aliases() == {"old": "new"}
    assert things.get("old") == 1 and things.summary("old") == "the thing" and things.canonical("other") == "other"
    assert things.canonical("old", notice=False) == "new"
    assert notices() == ["pnprgm: thing 'old' is now called 'new' (renamed for a test); the old name still works."]
    with pytest.raises(KeyError):
        things.add("old", 2)  # an old name stays the alias: no new entry takes it silently
    with pytest.raises(KeyError):
        things.alias("older", "missing")
    with pytest.raises(UserError, match="Valid choices: new[.]"):
        things.get("unknown")


def test_models_listing_names_an_earlier_version_and_each_validation_level():
    """A model fine-tuned from an earlier file of its own name said 'fine-tuned from <itself> ... PSNR ? dB'."""
    from click.testing import CliRunner

    from pnprgm.cli.main import app

    listing = CliRunner().invoke(app, ["models"]).output
    line = next(text for text in listing.splitlines() if "fine-tuned from" in text and "drunet-denoiser-color" in text)
    assert "fine-tuned from an earlier drunet-denoiser-color (sha256 " in line
    assert "? dB" not in listing and " dB at 15/255" in line


def test_training_photos_follow_the_lineage_and_the_benchmarks_leave_those_photos_out(tmp_path):
    """A photo that trained a model, or the model it was fine-tuned from (through a shipped name, a file, or the
    record nested in a gone file's init_from), is not 'held out' for it: unseen_held_out_files leaves it out and
    names who saw it; a step that cannot be followed is reported, not ignored."""
    from pnprgm.training.data import held_out_files, unseen_held_out_files

    train = tmp_path / "train"
    train.mkdir()
    for index in range(10):
        io.write_image(train / f"p{index}.png", torch.full((3, 8, 8), index / 10))
    (held,) = held_out_files(train)
    digest = io.sha256_file(held)
    torch.manual_seed(0)
    gen = build_generator_from_config(sized_config("tiny", channels=3, conditioning="sigma", sigma_channel=True))

    def model(name, record):
        return save_model(tmp_path / f"{name}.pt", gen.state_dict(), dict(gen.config), {"name": "denoise"}, record)

    first = model("first", {"files": [{"name": held.name, "sha256": digest}]})
    child = model("child", {"files": [{"name": "other.png", "sha256": "0" * 64}],
                            "init_from": {"source": str(first)}})
    orphan = model("orphan", {"files": [{"name": "other.png", "sha256": "0" * 64}],
                              "init_from": {"source": str(tmp_path / "gone.pt"), "init_from": {"source": str(first)}}})
    fresh = model("fresh", {"files": [{"name": "other.png", "sha256": "0" * 64}]})
    assert models.training_photos(str(first)) == ({digest}, [])
    assert models.training_photos(str(child))[0] == {digest, "0" * 64}
    photos, unknown = models.training_photos(str(orphan))
    assert digest in photos and unknown == [str(tmp_path / "gone.pt")]
    assert unseen_held_out_files(train, [str(fresh)]) == ([held], {}, [])
    kept, left_out, unknown = unseen_held_out_files(train, [str(fresh), str(child)])
    assert kept == [] and left_out == {held.name: [str(child)]} and unknown == []
    # a source name that now holds another file (a model continued under its own name) is not its start
    renamed = model("renamed", {"files": [], "init_from": {"source": str(first), "sha256": "f" * 64}})
    photos, unknown = models.training_photos(str(renamed))
    assert digest not in photos and unknown[-1] == f"{first} (an earlier version, sha256 ffffffffffffffff...)"
    no_record = model("no_record", {})
    assert models.training_photos(str(no_record))[1] == [f"{no_record} (its record lists no training photos)"]


def test_the_shipped_index_is_read_by_the_same_reader_and_a_foreign_key_is_one_line(tmp_path, monkeypatch):
    """The import-time reader was json.loads + ModelEntry(**entry): an entry with a key it lacks was a TypeError."""
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"models": [{"name": "m", "file": "m.pt", "sha256": "0", "role": "denoiser",
                                             "channels": 3, "colour": True}]}))
    monkeypatch.setattr(models, "INDEX", index)
    with pytest.raises(UserError, match=r"cannot read the model index .*: entry 'm' does not fit .*colour.*git checkout"):
        models.read_index(models.INDEX)
    index.write_text(json.dumps({"models": [{"name": "m", "file": "m.pt", "sha256": "0", "role": "denoiser",
                                             "channels": 3}]}))
    assert [(e.name, e.channels) for e in models.read_index(models.INDEX)] == [("m", 3)]


def test_replacing_a_published_model_keeps_its_default_flag_and_family(tmp_path):
    """pretrained/README.md's publish snippet (replace=True, no default=) left no default colour model: `default`
    then fell back to another channel count's model without a word."""
    shipped = tmp_path / "pretrained"
    models.publish(_tiny_model(tmp_path, 3), "colour-a", default=True, family="fam", directory=shipped)
    models.publish(_tiny_model(tmp_path, 3), "colour-a", summary="newer", directory=shipped, replace=True)
    index = {m["name"]: m for m in json.loads((shipped / "index.json").read_text())["models"]}
    assert index["colour-a"]["default"] is True and index["colour-a"]["family"] == "fam"
    assert index["colour-a"]["summary"] == "newer"
    models.publish(_tiny_model(tmp_path, 3), "colour-a", default=False, directory=shipped, replace=True)
    assert json.loads((shipped / "index.json").read_text())["models"][0]["default"] is False
    models.publish(_tiny_model(tmp_path, 3), "colour-b", directory=shipped)  # a new name: not the default
    index = {m["name"]: m for m in json.loads((shipped / "index.json").read_text())["models"]}
    assert index["colour-b"]["default"] is False and index["colour-b"]["family"] is None


def test_a_replacement_of_another_channel_count_takes_no_place_and_a_bad_entry_stops_before_writing(tmp_path):
    """A gray file published under a colour default's name became the gray default (the real one lost the flag);
    an index entry lacking a key was a KeyError after the model file was written."""
    shipped = tmp_path / "pretrained"
    models.publish(_tiny_model(tmp_path, 1), "gray-default", default=True, directory=shipped)
    models.publish(_tiny_model(tmp_path, 3), "mine", default=True, directory=shipped)
    models.publish(_tiny_model(tmp_path, 1), "mine", directory=shipped, replace=True)
    index = {m["name"]: m for m in json.loads((shipped / "index.json").read_text())["models"]}
    assert index["gray-default"]["default"] is True and index["mine"]["default"] is False
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.json").write_text(json.dumps({"models": [{"name": "m", "file": "m.pt", "sha256": "0"}]}))
    with pytest.raises(UserError, match=r"entry 'm' does not fit"):
        models.publish(_tiny_model(tmp_path, 3), "new", directory=other)
    assert sorted(p.name for p in other.iterdir()) == ["index.json"]


def test_a_registry_name_that_is_not_text_is_one_line_and_a_damaged_model_file_says_so(tmp_path):
    """A model file whose generator config has "arch": ["unet"] was `TypeError: unhashable type: 'list'` for the
    whole restore run."""
    from pnprgm.registry import Registry
    from pnprgm.rgm.model_file import load_model

    kinds: Registry[int] = Registry("thing")
    kinds.add("one", 1)
    assert ["one"] not in kinds and {"a": 1} not in kinds and "one" in kinds
    for name in (["one"], {"a": 1}, 3):
        with pytest.raises(UserError, match=r"thing names are text; got .* \(check the file it was read from"):
            kinds.get(name)
    content = torch.load(models.model_path("unet-denoiser-color"), weights_only=True)
    content["generator"]["config"]["arch"] = ["unet"]
    torch.save(content, tmp_path / "damaged.pt")
    with pytest.raises(UserError, match=r"architecture names are text; got list \['unet'\]"):
        load_model(tmp_path / "damaged.pt")
