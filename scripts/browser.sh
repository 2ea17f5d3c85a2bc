#!/usr/bin/env bash
# What the web UI's browser test needs: Debian's Chromium (apt, when missing) and playwright-core from npm, pinned,
# in a folder outside the repo (never `playwright install`: it downloads browsers). Prints that folder's
# node_modules, for NODE_PATH. ~1 min the first time (Chromium), instant after.
set -euo pipefail
DIR="${LAR_BROWSER_DIR:-$HOME/.cache/lar/browser}"
PIN="playwright-core@1.65.2"
if ! command -v chromium > /dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }) >&2
  else
    echo "scripts/browser.sh: Chromium is missing; install Debian's chromium package" >&2
    exit 1
  fi
fi
if [ ! -d "$DIR/node_modules/playwright-core" ] || [ "$(cat "$DIR/.lar-pin" 2>/dev/null)" != "$PIN" ]; then
  mkdir -p "$DIR"
  (cd "$DIR" && npm install --silent --no-audit --no-fund --no-save "$PIN") >&2
  echo "$PIN" > "$DIR/.lar-pin"
fi
echo "$DIR/node_modules"
