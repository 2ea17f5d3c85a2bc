#!/usr/bin/env bash
# A real MLflow tracking server for the `lar runs export --mlflow` test (crates/lar-cli/tests/mlflow.rs): the
# `mlflow` package, pinned, in its own venv outside the repo (it is large; the API clients' venv stays small).
# Prints the venv's python. ~1-2 min the first time, instant after.
set -euo pipefail
VENV="${LAR_MLFLOW_VENV:-$HOME/.cache/lar/mlflow-venv}"
PINS="mlflow==3.17.2"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.lar-pins" 2>/dev/null)" != "$PINS" ]; then
  python3 -m venv "$VENV" >&2
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q --disable-pip-version-check $PINS >&2
  echo "$PINS" > "$VENV/.lar-pins"
fi
echo "$VENV/bin/python"
