#!/usr/bin/env bash
# The tool-calling suite (bench/tool-suite.py: 40 cases) on Qwen2.5-Coder-0.5B-Instruct Q4_K_M for `lar serve` and
# `llama-server --jinja`, side by side on the same file and threads; prints a table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
MODELS="${LAR_MODELS:-$CACHE/models}"
scripts/fetch-models.sh >/dev/null
BIN=$(bench/build-llama-cpp.sh | tail -n 1)
cargo build --release --quiet -p lar-cli
PY=python3
[ -x "$CACHE/clients-venv/bin/python" ] && PY="$CACHE/clients-venv/bin/python"   # has jsonschema
exec "$PY" bench/tool-suite.py target/release/lar "$BIN" "$MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
