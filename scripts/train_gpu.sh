#!/usr/bin/env bash
# The GPU recipe: train the default colour and gray denoisers for MINUTES (default 8) in one process and write
# OUTDIR/drunet-denoiser-{color,gray}.pt every 60 s and at the end (pnprgm model files), plus recipe_log.jsonl.
#
# Usage: scripts/train_gpu.sh OUTDIR [MINUTES] [more pnprgm train-denoisers options, e.g. --device cpu]
# Needs: python3 with torch (never reinstalled here), numpy, pillow, click, tqdm, and .gpu/ made by
# scripts/pack_gpu.sh (photos in .gpu/data, deepinv + natsort wheels in .gpu/wheels) unless --data is given.
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then sed -n '2,7p' "$0"; exit 2; fi
OUTDIR="$(realpath -m -- "$1")"; shift
MINUTES="8"
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then MINUTES="$1"; shift; fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1

. "$REPO/scripts/gpu_env.sh"
DATA=()
case " $* " in *" --data "* | *" --data="*) ;; *) DATA=(--data "$REPO/.gpu/data") ;; esac
exec "$PY" -m pnprgm.cli.main train-denoisers "${DATA[@]}" --out "$OUTDIR" --minutes "$MINUTES" "$@"
