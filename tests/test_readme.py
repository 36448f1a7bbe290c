"""Smoke test: the README's user-facing examples run as written.

The ```bash and ```python blocks of the sections "Restore an image with the shipped model" and "Python" are run
unchanged in a temporary folder, in separate processes: `pnprgm` is a shim on PATH that runs this checkout's
`python -m pnprgm.cli.main` with the current interpreter, and a `sitecustomize` on PYTHONPATH makes
`skimage.data.astronaut()` return a 64x64 crop so that every command takes seconds (the README's commands
themselves are the ones a user types). The outputs the README promises are then checked.
"""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SECTIONS = ("Restore an image with the shipped model", "Python")
CROP = 64  # side of the astronaut crop the commands see
TIMEOUT_S = 180

SITECUSTOMIZE = f"""
import numpy as _np
import skimage.data as _data

_astronaut = _data.astronaut

def astronaut():
    return _np.ascontiguousarray(_astronaut()[64:64 + {CROP}, 192:192 + {CROP}])

_data.astronaut = astronaut
"""


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of the fenced bash/python blocks of SECTIONS, in order."""
    blocks = []
    for title in SECTIONS:
        match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, flags=re.S | re.M)
        assert match, f"README section '## {title}' not found"
        found = re.findall(r"^```(bash|python)\n(.*?)^```", match.group(1), flags=re.S | re.M)
        assert found, f"no bash/python code block in README section '## {title}'"
        blocks += found
    return blocks


def test_readme_blocks_are_found():
    blocks = readme_blocks(README.read_text())
    assert [lang for lang, _ in blocks] == ["bash", "bash", "python"]
    commands = "".join(code for lang, code in blocks if lang == "bash")
    for name in ("mask.png", "masked.png", "big.png", "photo_lowres.png", "blurred.png", "astronaut.png"):
        assert f"'{name}'" in commands, f"the README does not say how to make {name}"


def _environment(tmp_path: Path) -> dict:
    shim = tmp_path / "_shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    exe = shim / "pnprgm"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pnprgm.cli.main "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ)
    env.update(
        PATH=f"{shim}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join([str(shim), str(REPO)]),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    return env


def _run(args: list[str], cwd: Path, env: dict, what: str, code: str) -> str:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, (
        f"README {what} failed (exit {proc.returncode}):\n{textwrap.indent(code, '  ')}\n"
        f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    print(f"README {what}: {time.perf_counter() - start:.1f} s")
    return proc.stdout


def _size(path: Path) -> tuple[int, int]:
    assert path.is_file(), f"the README promises {path.name} in {path.parent.name}/"
    with Image.open(path) as image:
        return image.size


@pytest.mark.slow
def test_readme_examples_run(tmp_path):
    work = tmp_path / "clone"
    work.mkdir()
    env = _environment(tmp_path)
    blocks = readme_blocks(README.read_text())
    for index, (lang, code) in enumerate(blocks):
        script = work.parent / f"_block{index}.{'sh' if lang == 'bash' else 'py'}"
        script.write_text(code)
        if lang == "bash":
            _run(["bash", "-e", "-o", "pipefail", str(script)], work, env, f"bash block {index}", code)
        else:
            printed = _run([sys.executable, str(script)], work, env, f"python block {index}", code)
            psnrs = json.loads(printed.strip().splitlines()[-1])  # "PSNR per iteration": 12 numbers
            assert len(psnrs) == 12 and all(np.isfinite(psnrs)), printed

    # first block: degrade + restore with the sidecar
    assert _size(work / "astronaut.png") == (CROP, CROP)
    assert _size(work / "meas" / "astronaut.png") == (CROP // 4, CROP // 4)  # 128x128 for the full 512x512
    sidecar = json.loads((work / "meas" / "astronaut.measurement.json").read_text())
    assert sidecar["operator"]["spec"] == "sr:factor=4,kernel=box" and sidecar["noise_sigma"] == 0.01
    assert _size(work / "restored" / "astronaut.png") == (CROP, CROP)  # 512x512 for the full image
    record = json.loads((work / "restored" / "astronaut.json").read_text())
    assert record, "empty restore record"

    # second block: the inputs it makes, and each restore at the input's original size
    assert _size(work / "photo_lowres.png") == (CROP // 4, CROP // 4)
    mask = np.asarray(Image.open(work / "mask.png"))
    assert mask.shape == (CROP, CROP) and 0 < (mask > 127).mean() < 1
    for name, size in (("photo_lowres", CROP), ("blurred", CROP), ("masked", CROP), ("big", 2 * CROP)):
        assert _size(work / "out" / f"{name}.png") == (size, size), name
        assert (work / "out" / f"{name}.json").is_file(), name
    std = np.asarray(Image.open(work / "out" / "masked_std.png"))  # --samples 8: mean + std map
    assert std.shape[:2] == (CROP, CROP)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
