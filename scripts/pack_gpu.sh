#!/usr/bin/env bash
# Fill .gpu/data (training photos, 10 % held out in val/) and .gpu/wheels (deepinv, natsort) for scripts/train_gpu.sh.
# Usage: scripts/pack_gpu.sh [PHOTO_FOLDER ...] [--budget-mb 60] [--quality 90]   (default folder: ../shared/data/train)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
exec "${PYTHON:-python3}" "$REPO/scripts/pack_gpu.py" "$@"
