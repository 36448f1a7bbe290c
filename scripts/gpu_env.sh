# Sourced by scripts/train_gpu.sh and scripts/train_rgm_gpu.sh (needs REPO and PY set): make deepinv and the project
# importable on a bare GPU machine without touching its torch.
# Missing pure-Python packages come from the carried wheels, installed without dependencies into a private
# folder so that torch and everything else already there is left exactly as it is.
if ! "$PY" -c "import deepinv, natsort" 2>/dev/null; then
  ls "$REPO"/.gpu/wheels/*.whl >/dev/null 2>&1 || { echo "${GPU_SCRIPT:-train_gpu}: deepinv is missing and .gpu/wheels is empty; run scripts/pack_gpu.sh first" >&2; exit 1; }
  SITE="${TMPDIR:-/tmp}/pnprgm-site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$REPO"/.gpu/wheels/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  # deepinv 0.5.0 also imports requests and h5py (present on the lent machine in 2026-12: its run imported deepinv);
  # a machine without them stops here, in seconds, with the module named
  if ! ERR="$("$PY" -c "import deepinv" 2>&1)"; then
    echo "${GPU_SCRIPT:-train_gpu}: deepinv does not import: $(printf '%s\n' "$ERR" | tail -n 1); add that package's wheel to WHEELS in scripts/pack_gpu.py (pure Python) or install it" >&2
    exit 1
  fi
fi
# The project itself: installed with --no-deps if it is not importable yet; the checkout on PYTHONPATH otherwise.
# (Checked from / so that the current folder does not hide a missing install.)
if ! (cd / && "$PY" -c "import pnprgm.training.recipe, pnprgm.cli.main" 2>/dev/null); then
  if "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e "$REPO" >/dev/null 2>&1; then
    echo "${GPU_SCRIPT:-train_gpu}: installed the project (pip --no-deps, editable)"
  else
    echo "${GPU_SCRIPT:-train_gpu}: pip could not install the project; running it from the checkout" >&2
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
"$PY" -c "import torch; print('${GPU_SCRIPT:-train_gpu}: torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'no cuda')"
