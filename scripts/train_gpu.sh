#!/usr/bin/env bash
# The GPU recipe: train the default colour and gray denoisers for MINUTES (default 8) in one process and write
# OUTDIR/drunet-denoiser-{color,gray}.pt every 60 s and at the end (pnprgm model files), plus recipe_log.jsonl.
#
# Usage: scripts/train_gpu.sh OUTDIR [MINUTES] [more pnprgm train-denoisers options, e.g. --device cpu]
# Needs: python3 with torch (never reinstalled here), numpy, pillow, click, tqdm, and .gpu/ made by
# scripts/pack_gpu.sh (photos in .gpu/data, deepinv + natsort wheels in .gpu/wheels) unless --data is given.
set -euo pipefail
if [ $# -lt 1 ]; then sed -n '2,7p' "$0"; exit 2; fi
OUTDIR="$(realpath -m "$1")"; shift
MINUTES="8"
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then MINUTES="$1"; shift; fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1

# Missing pure-Python packages come from the carried wheels, installed without dependencies into a private
# folder so that torch and everything else already there is left exactly as it is.
if ! "$PY" -c "import deepinv, natsort" 2>/dev/null; then
  ls "$REPO"/.gpu/wheels/*.whl >/dev/null 2>&1 || { echo "train_gpu: deepinv is missing and .gpu/wheels is empty; run scripts/pack_gpu.sh first" >&2; exit 1; }
  SITE="${TMPDIR:-/tmp}/pnprgm-site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$REPO"/.gpu/wheels/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
# The project itself: installed with --no-deps if it is not importable yet; the checkout on PYTHONPATH otherwise.
# (Checked from / so that the current folder does not hide a missing install.)
if ! (cd / && "$PY" -c "import pnprgm.training.recipe, pnprgm.cli.main" 2>/dev/null); then
  if "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e "$REPO" >/dev/null 2>&1; then
    echo "train_gpu: installed the project (pip --no-deps, editable)"
  else
    echo "train_gpu: pip could not install the project; running it from the checkout" >&2
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
"$PY" -c "import torch; print('train_gpu: torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'no cuda')"
DATA=()
case " $* " in *" --data "*) ;; *) DATA=(--data "$REPO/.gpu/data") ;; esac
exec "$PY" -m pnprgm.cli.main train-denoisers "${DATA[@]}" --out "$OUTDIR" --minutes "$MINUTES" "$@"
