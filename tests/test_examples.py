"""The examples gallery (examples/*.py) runs as documented: each script restores, scores and writes its stamped
figure, and never replaces a file it did not write. Small crops and two iterations keep it to seconds."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from pnprgm import figures
from pnprgm.errors import UserError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUICK = ["--crop", "64", "--iterations", "2", "--threads", "1"]

pytestmark = pytest.mark.slow


@pytest.fixture
def example(monkeypatch):
    """Import an example script as its users run it (its folder first on sys.path: the scripts share a loader)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return lambda name: importlib.import_module(name)


def test_restore_tasks_improves_on_the_initial_estimate_and_writes_its_figure(example, tmp_path):
    results = example("restore_tasks").main(["--crop", "64", "--threads", "1", "--task", "denoise", "--task", "inpaint",
                                             "--out", str(tmp_path)])  # the presets in full: 64-px crops are quick
    assert [r["task"] for r in results] == ["denoise", "inpaint"]
    for r in results:  # the prior must beat what the measurement alone gives, in PSNR and in SSIM
        assert r["score"][0] > r["cheap_score"][0] + 0.5 and r["score"][1] > r["cheap_score"][1], r["task"]
        assert r["restored"].shape == (3, 64, 64)
    figure = tmp_path / "restore_tasks.jpg"
    assert figures.stamp_of(figure) == "pnprgm example"
    first = figure.read_bytes()
    example("restore_tasks").main(QUICK + ["--task", "denoise", "--out", str(tmp_path)])  # its own figure: replaced
    assert figures.stamp_of(figure) == "pnprgm example" and figure.read_bytes() != first


def test_an_example_never_replaces_a_file_it_did_not_write(example, tmp_path):
    foreign = tmp_path / "compare_solvers.jpg"
    foreign.write_bytes(b"the user's own picture")
    with pytest.raises(UserError, match="was not written by this example; pass --overwrite"):
        example("compare_solvers").main(QUICK + ["--out", str(tmp_path)])
    assert foreign.read_bytes() == b"the user's own picture"


def test_compare_solvers_traces_every_solver(example, tmp_path):
    found = example("compare_solvers").main(QUICK + ["--out", str(tmp_path)])
    assert list(found) == ["drs", "admm", "hqs"]
    for solver, result in found.items():
        assert len(result["psnr"]) == 2 and result["preset"] == f"deblur-{solver}"
        assert result["psnr"][-1] > 20, solver  # a 64-px chelsea crop blurred at sigma 1.6: far from noise
    assert figures.stamp_of(tmp_path / "compare_solvers.jpg") == "pnprgm example"


def test_your_own_operator_restores_through_a_deepinv_physics(example, tmp_path):
    module = example("your_own_operator")
    kernel = module.motion_kernel(5)
    assert kernel.shape == (1, 1, 5, 5) and float(kernel.sum()) == pytest.approx(1)
    found = module.main(["--crop", "96", "--length", "5", "--threads", "1", "--out", str(tmp_path)])
    measured, (tv, shipped) = found["measurement"], found["restored"].values()
    for restored in (tv, shipped):  # both priors undo part of the blur; which one wins depends on the preset
        assert restored["psnr"] > measured["psnr"] + 1 and restored["ssim"] > measured["ssim"]
    assert (tv["denoiser"], shipped["denoiser"]) == ("tv", "default")
    assert figures.stamp_of(tmp_path / "your_own_operator.jpg") == "pnprgm example"


@pytest.mark.parametrize("script, args, message", [
    ("restore_tasks", ["--crop", "7"], "--crop: must be at least 32"),
    ("restore_tasks", ["--threads", "0"], "--threads: must be at least 1"),
    ("restore_tasks", ["--seed", "99999999999999999999"], "seed must be an integer between 0 and"),
    ("your_own_operator", ["--length", "0"], "--length: must be at least 1"),
])
def test_bad_options_are_one_line_usage_errors(example, capsys, script, args, message):
    with pytest.raises(SystemExit) as stopped:
        example(script).main(args)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_bad_inputs_are_refused_before_any_work(example, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(UserError, match="afile is a file, not a folder; choose another --out"):
        example("restore_tasks").main(QUICK + ["--out", str(tmp_path / "afile")])
    assert (tmp_path / "afile").read_text() == "mine"
    with pytest.raises(UserError, match="it is a folder; give an image file"):
        example("restore_tasks").main(QUICK + ["--photo", str(tmp_path), "--out", str(tmp_path)])
    with pytest.raises(UserError, match="--length 40 is more than a quarter of the 64-px crop"):
        example("your_own_operator").main(QUICK + ["--length", "40", "--out", str(tmp_path)])
    with pytest.raises(UserError, match="noise sigma must be a finite number"):
        example("compare_solvers").main(QUICK + ["--noise", "inf", "--out", str(tmp_path)])
    printed = capsys.readouterr().out  # nothing ran: no restoration printed its scores
    assert "initial estimate" not in printed and "dB" not in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
