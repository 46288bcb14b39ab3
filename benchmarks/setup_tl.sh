#!/usr/bin/env bash
# TransformerLens 4 requires transformers >= 5, emogeom pins < 5: give it its own venv.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-tl
.venv-tl/bin/pip install --quiet torch==2.13.0
.venv-tl/bin/pip install --quiet transformer-lens
