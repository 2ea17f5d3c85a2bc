#!/usr/bin/env bash
# The codebook types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) at full size: Lar vs llama.cpp
# (llama-bench) on a random-weight llama whose every matrix is random blocks of the type
# (crates/lar-models/examples/bench-model.rs: 16 layers, 1024 wide, FFN 2816, 180M weights; any bytes are valid
# blocks of these types, so no llama-quantize and no importance matrix), with Q4_0 from llama-quantize --pure of the
# F32 twin beside them as the control. Same files, same threads, alternating runs (bench/compare.py), appended to
# BENCHMARKS.md. Files are cached in ~/.cache/lar/sweep.
#
#   bench/codebook.sh [TYPE...]     # the seven codebook types by default (also MXFP4, NVFP4, Q1_0, Q2_0); RUNS=3 THREADS=2 P=512 N=128
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
Q40="$SWEEP/bench-llama-q4_0.gguf"
[ -f "$Q40" ] || "$BIN/llama-quantize" --pure "$SRC" "$Q40" Q4_0 >/dev/null 2>&1
files=("$Q40")
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S IQ1_M)
for t in "${types[@]}"; do
  out="$SWEEP/bench-llama-$(echo "$t" | tr 'A-Z' 'a-z').gguf"
  [ -f "$out" ] || target/release/examples/bench-model "$out" 16 1024 2816 "$t" >/dev/null
  files+=("$out")
done
export TITLE="Codebook types, every matrix: Lar vs llama.cpp on a 180M-weight random llama ($(date +%F), $(lscpu | sed -n 's/^Model name: *//p'))"
export COMMAND="bench/codebook.sh${1:+ $*}"
export RUNS="${RUNS:-3}"
exec "$CACHE/venv/bin/python" bench/compare.py "$BIN" "${files[@]}"
