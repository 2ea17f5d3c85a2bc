#!/usr/bin/env bash
# The ternary types at full size: Lar vs llama.cpp (llama-bench) on a random-weight llama model whose every width
# is a multiple of 256 (crates/lar-models/examples/bench-model.rs: 16 layers, 1024 wide, FFN 2816, 180M weights),
# which llama-quantize --pure turns into TQ2_0 and TQ1_0 in every matrix (and Q4_0 beside them, a type both tune
# well, as the control). Real small models do not serve here: their widths (Qwen2.5-0.5B 896, SmolLM2 576) make
# llama-quantize fall back to Q4_0 for most matrices. Same files, same threads, alternating runs
# (bench/compare.py), appended to BENCHMARKS.md. Files are cached in ~/.cache/lar/sweep.
#
#   bench/ternary.sh            # RUNS=3 THREADS=2 P=512 N=128 by default
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
SWEEP="$CACHE/sweep"
BIN=$(bench/build-llama-cpp.sh | tail -n 1)
cargo build --release --quiet
cargo build --release --quiet -p lar-models --example bench-model
mkdir -p "$SWEEP"
SRC="$SWEEP/bench-llama-f32.gguf"
[ -f "$SRC" ] || target/release/examples/bench-model "$SRC" >/dev/null
files=()
for t in Q4_0 TQ2_0 TQ1_0; do
  out="$SWEEP/bench-llama-$(echo "$t" | tr 'A-Z' 'a-z').gguf"
  [ -f "$out" ] || "$BIN/llama-quantize" --pure "$SRC" "$out" "$t" >/dev/null 2>&1
  files+=("$out")
done
export TITLE="Ternary types, every matrix: Lar vs llama.cpp on a 180M-weight random llama ($(date +%F), $(lscpu | sed -n 's/^Model name: *//p'))"
export COMMAND="bench/ternary.sh"
export RUNS="${RUNS:-3}"
exec "$CACHE/venv/bin/python" bench/compare.py "$BIN" "${files[@]}"
