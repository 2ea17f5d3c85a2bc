#!/usr/bin/env bash
# Decode tokens/s of `lar serve` with and without a JSON schema at 1 and 16 streams (Qwen2.5-Coder-0.5B, 151k
# vocabulary), and the grammar mask's own cost per token; prints tables for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS="${LAR_MODELS:-$HOME/.cache/lar/models}"
scripts/fetch-models.sh >/dev/null
cargo build --release --quiet -p lar-cli
cargo run --release --quiet -p lar-grammar --example mask_cost
echo
exec python3 bench/structured.py target/release/lar "$MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
