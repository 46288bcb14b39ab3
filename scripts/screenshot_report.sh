#!/usr/bin/env bash
# Render a report.html in headless Chromium and check that the page is not blank.
# Usage: scripts/screenshot_report.sh out/quickstart/report.html [shot.png]
# Needs Debian's chromium (apt-get install chromium); the PNG lands beside the report.
set -euo pipefail
report=$(realpath "$1")
shot=${2:-${report%.html}.png}
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1300,3000 \
  --screenshot="$shot" "file://$report" 2>/dev/null
"${PYTHON:-.venv/bin/python}" - "$shot" <<'PY'
import sys

import matplotlib.image as mpimg
import numpy as np

img = mpimg.imread(sys.argv[1])[..., :3]
ink = float((img.mean(axis=2) < 0.9).mean())  # share of non-white pixels
print(f"{sys.argv[1]}: {img.shape[1]}x{img.shape[0]} px, {ink:.1%} of the page drawn")
sys.exit(0 if ink > 0.02 and np.unique(img.reshape(-1, 3), axis=0).shape[0] > 50 else 1)
PY
