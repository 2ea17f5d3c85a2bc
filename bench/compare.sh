#!/usr/bin/env bash
# Lar vs llama.cpp on SmolLM2-135M Q4_1, Gemma 3 270M Q4_K_M and a synthetic 1.1B Q4_K_M; appends to BENCHMARKS.md.
# Builds llama.cpp once (cached), the synthetic model once (cached), and Lar in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
MODELS="${LAR_MODELS:-$CACHE/models}"
scripts/fetch-models.sh >/dev/null
BIN=$(bench/build-llama-cpp.sh | tail -n 1)
"$CACHE/venv/bin/pip" install -q numpy gguf
SYN=$("$CACHE/venv/bin/python" bench/make-synthetic-1b.py "$BIN" "$MODELS/synthetic-1.1b-q4_k_m.gguf" | tail -n 1)
cargo build --release --quiet
exec "$CACHE/venv/bin/python" bench/compare.py "$BIN" \
  "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODELS/gemma-3-270m-q4_k_m.gguf" "$SYN"
