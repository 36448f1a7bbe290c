"""Pack what the GPU recipe needs into the checkout (git-ignored): ``.gpu/data`` (training photos) and
``.gpu/wheels`` (pure-Python wheels the GPU machine lacks). Run on a CPU machine that reaches the package index.

The lent GPU machine receives the checkout plus carried folders, at most 64 MiB in all; the recipe's budget is
60 MB. Photos are therefore re-encoded as JPEG (quality ``--quality``, no chroma subsampling) at the largest long
side from ``--sides`` whose pack fits the budget left after the tracked files and the wheels. Trade-off: a smaller
long side keeps every photo (scene variety matters more than the last pixels for a denoiser) and the downscaling
also averages away part of the sources' own JPEG artefacts; the re-encoding adds mild ones of its own at q >= 90.
10 % of the photos are held out for validation with the training loop's own rule
(:func:`pnprgm.training.data.split_validation`, seed 0) and packed in ``val/``; ``manifest.json`` names every
source file with its sha256 and licence, and the pack settings.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WHEELS = ("deepinv==0.5.0", "natsort==8.4.0")


def tracked_bytes(set_aside: list[str]) -> int:
    """Bytes of the tracked files that travel to the GPU machine (those matching a ``set_aside`` glob do not)."""
    from fnmatch import fnmatch

    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    paths = [n.decode() for n in names if n]
    return sum((REPO / n).stat().st_size for n in paths
               if (REPO / n).is_file() and not any(fnmatch(n, pattern) for pattern in set_aside))


def files_not_packed(data: Path) -> list[str]:
    """The files under ``data`` that its ``manifest.json`` does not name as packed (all of them when it has none):
    those a new pack must not delete."""
    from pnprgm.io import read_json_object

    if not data.exists() and not data.is_symlink():
        return []
    if data.is_symlink() or not data.is_dir():  # a file (or a link) where the pack folder goes
        return [data.name]
    present = sorted(str(p.relative_to(data)) for p in data.rglob("*") if not p.is_dir())
    manifest = read_json_object(data / "manifest.json") if (data / "manifest.json").is_file() else None
    if not isinstance(manifest, dict) or "pack" not in manifest:
        return present
    ours = {"manifest.json"} | {f"{split}/{e.get('packed')}" for split in ("train", "val")
                                for e in (manifest.get(split) if isinstance(manifest.get(split), list) else [])
                                if isinstance(e, dict)}
    return [name for name in present if name not in ours]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def encode(path: Path, side: int, quality: int) -> bytes:
    from PIL import Image, ImageFile

    ImageFile.MAXBLOCK = 1 << 24  # optimize=True needs the whole image in one encoder block
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = side / max(image.size)
        if scale < 1:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            if min(size) >= 160:  # keep small photos whole rather than below a useful crop size
                image = image.resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality, subsampling=0, optimize=True)
        return buffer.getvalue()


def main() -> int:
    from pnprgm.cli.options import OnceParser

    parser = OnceParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", default=[str(REPO.parent / "shared" / "data" / "train")],
                        help="folders of training photos (default ../shared/data/train)")
    parser.add_argument("--out", default=str(REPO / ".gpu"), help="pack folder (default .gpu in the checkout)")
    parser.add_argument("--budget-mb", type=float, default=60.0, help="checkout + pack limit in MB (1e6 bytes)")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--sides", default="768,704,640,576,512,448,384", help="long sides to try, largest first")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--no-wheels", action="store_true", help="skip downloading wheels (tests)")
    parser.add_argument("--overwrite", action="store_true", help=argparse.SUPPRESS)  # gone: answered in one line
    parser.add_argument("--set-aside", action="append", default=[], metavar="GLOB",
                        help="tracked files you will move out of the checkout during the GPU run (e.g. "
                             "'pretrained/unet-*.pt'): not counted in the budget")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from pnprgm.errors import UserError, first_line

    try:
        return pack(args)
    except UserError as err:
        print(f"pack: {first_line(err)}", file=sys.stderr)
        return 1


def unreadable(path: Path) -> str:
    """Why ``path`` cannot be packed (it does not decode), or "" when it can."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except Exception as err:  # noqa: BLE001 -- any decoder failure: the photo is left out with its reason
        return f"{type(err).__name__}: {str(err)[:80]}"
    return ""


def pack(args: argparse.Namespace) -> int:
    from pnprgm.errors import UserError
    from pnprgm.io import TEMP_TAG, list_images, output_stems, sha256_file, some_names, write_bytes, write_json
    from pnprgm.training.data import split_validation

    out = Path(args.out)
    data = out / "data"
    if args.overwrite:
        raise UserError("--overwrite is gone: a pack replaces an earlier pack's own files without it and never "
                        f"deletes others; move any other files out of {data} and run it again without --overwrite.")
    foreign = files_not_packed(data)
    if foreign:  # never deleted: a new pack replaces only an earlier pack's own files
        raise UserError(f"{data} holds files an earlier pack did not write {some_names(foreign)}; move them out of "
                        f"it, or give another --out.")
    wheels = out / "wheels"
    if not args.no_wheels:
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d",
                        str(wheels), *WHEELS], check=True)
    wheel_bytes = sum(p.stat().st_size for p in wheels.glob("*.whl")) if wheels.is_dir() else 0
    files, licences = [], {}
    for folder in map(Path, args.folders):
        if not folder.is_dir():
            raise UserError(f"{folder} is not a folder of photos; give the folder that holds them.")
        files += list_images([folder])
        manifest = folder / "MANIFEST.tsv"
        if manifest.is_file():
            try:
                with open(manifest, newline="", encoding="utf-8") as handle:
                    rows = csv.DictReader(handle, delimiter="\t")
                    if "file" not in (rows.fieldnames or []):
                        raise UserError(f"{manifest} has no 'file' column (tab-separated, header first); add one "
                                        f"naming each photo, or move the file out of {folder}.")
                    for row in rows:
                        licences[(str(folder), row["file"])] = row.get("license", "")
            except (UnicodeDecodeError, csv.Error) as err:
                raise UserError(f"cannot read {manifest} ({type(err).__name__}: {str(err)[:80]}); save it as UTF-8 "
                                f"tab-separated text.") from None
    reasons = {path: why for path in files if (why := unreadable(path))}
    for path, why in reasons.items():
        print(f"pack: left out {path} ({why})", file=sys.stderr)
    files = [path for path in files if path not in reasons]  # before the split, so that it is the training loop's
    if not files:
        raise UserError(f"no photo to pack in {', '.join(args.folders)}.")
    train_files, val_files = split_validation(files, args.val_fraction, 0)
    available = args.budget_mb * 1e6 - tracked_bytes(args.set_aside) - wheel_bytes
    print(f"pack: {len(files)} photos ({len(train_files)} train, {len(val_files)} val); "
          f"{available / 1e6:.1f} MB left for photos after the tracked files and {wheel_bytes / 1e6:.1f} MB of wheels")
    chosen = None
    for side in (int(s) for s in args.sides.split(",")):
        encoded = {p: encode(p, side, args.quality) for p in files}
        total = sum(len(b) for b in encoded.values())
        print(f"pack: long side {side}: {total / 1e6:.1f} MB")
        if total <= available:
            chosen = side
            break
    if chosen is None:
        raise UserError("the photos do not fit even at the smallest side; set files aside (--set-aside), raise "
                        "--budget-mb (the device takes 64 MiB = 67.1 MB in all) or lower --quality.")
    # two photos of one stem (a.png, a.jpg) must not land on one packed a.jpg
    stems = output_stems(files, lambda stem: [f"{stem}.jpg"])

    def entry(path: Path, packed: Path) -> dict:
        return {"name": path.name, "folder": str(path.parent), "sha256": sha256_file(path),
                "license": licences.get((str(path.parent), path.name), ""), "packed": packed.name,
                "packed_sha256": sha256_file(packed)}

    record = {"pack": {"long_side": chosen, "format": "JPEG", "quality": args.quality, "subsampling": "4:4:4",
                       "val_rule": f"pnprgm.training.data.split_validation(fraction={args.val_fraction}, seed=0)",
                       "sources": [str(f) for f in args.folders]}, "train": [], "val": []}
    # the new pack is written beside the old one and swapped in whole: a run that fails leaves the old pack, and no
    # half-written copy (which would travel to the GPU machine inside .gpu and eat into its 64 MiB)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob(f".data-{TEMP_TAG}*"), *out.glob(f".old-{TEMP_TAG}*")]:  # left by a run killed mid-way
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".data-{TEMP_TAG}", dir=out))
    retired = None
    try:
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700; a folder gets what mkdir would give it
        for split, group in (("train", train_files), ("val", val_files)):
            (staging / split).mkdir()
            for path in group:
                packed = write_bytes(staging / split / f"{stems[path]}.jpg", encoded[path])
                record[split].append(entry(path, packed))
        write_json(staging / "manifest.json", record)
        retired = Path(tempfile.mkdtemp(prefix=f".old-{TEMP_TAG}", dir=out))
        if data.exists() or data.is_symlink():
            data.rename(retired / "data")
        staging.rename(data)
    except BaseException:
        if retired is not None and (retired / "data").exists() and not data.exists():
            (retired / "data").rename(data)  # the old pack back in place
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    print(f"pack: wrote {data} (long side {chosen}, {sum(len(b) for b in encoded.values()) / 1e6:.1f} MB) and {wheels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
