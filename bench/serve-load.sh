#!/usr/bin/env bash
# `lar serve` vs llama-server under load at 1, 4, 8 and 16 concurrent streams, on the synthetic 1.1B Q4_K_M
# (memory-bound: batching pays) and Qwen2.5-Coder-0.5B Q4_K_M; prints a table for BENCHMARKS.md.
# Builds llama.cpp (with llama-server) once (cached), the synthetic model once (cached), and Lar in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
MODELS="${LAR_MODELS:-$CACHE/models}"
scripts/fetch-models.sh >/dev/null
BIN=$(bench/build-llama-cpp.sh | tail -n 1)
"$CACHE/venv/bin/pip" install -q numpy gguf
SYN=$("$CACHE/venv/bin/python" bench/make-synthetic-1b.py "$BIN" "$MODELS/synthetic-1.1b-q4_k_m.gguf" | tail -n 1)
cargo build --release --quiet
exec python3 bench/serve-load.py target/release/lar "$BIN" "$SYN" "$MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
