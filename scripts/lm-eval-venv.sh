#!/usr/bin/env bash
# lm-evaluation-harness, pinned, in its own venv outside the repo, for the test that runs its `local-completions`
# model against `lar serve` (crates/lar-cli/tests/lm_eval.rs). The `api` extra only: no torch, no transformers
# (the tokenizer is the server's, through /tokenizer_info, /tokenize and /detokenize).
# Prints the venv's python. ~1 min the first time, instant after.
set -euo pipefail
VENV="${LAR_LM_EVAL_VENV:-$HOME/.cache/lar/lm-eval-venv}"
PINS="lm-eval[api]==0.4.13"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.lar-pins" 2>/dev/null)" != "$PINS" ]; then
  python3 -m venv "$VENV" >&2
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q --disable-pip-version-check $PINS >&2
  echo "$PINS" > "$VENV/.lar-pins"
fi
echo "$VENV/bin/python"
