#!/usr/bin/env bash
# Set up (first run only) and reconstruct the bundled sample: writes out/spot.ply and out/spot.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/siren-recon reconstruct data/spot_sample.ply -o out/spot.ply \
    --render out/spot.png --checkpoint out/spot.pt --previews out/previews "$@"
