#!/usr/bin/env bash
# Every type side by side: Lar vs llama.cpp (llama-bench) on one model quantized to each type by llama-quantize, same
# file, same threads, alternating runs (bench/compare.py), appended to BENCHMARKS.md as its own section.
#
#   bench/types.sh [SOURCE.gguf]         # RUNS=3 THREADS=2 P=512 N=128 by default; LAR_BEFORE=old-lar to compare
#   TYPES="IQ3_S IQ2_XS" bench/types.sh  # only those types
#
# The source defaults to Qwen2.5-Coder-0.5B-Instruct Q4_K_M (the test models' real qwen2) dequantized to F16 by
# llama-quantize --allow-requantize: its weights sit on Q4_K's grid, which does not matter for speed. From that F16
# file llama-quantize writes F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, Q2_K, IQ4_XS, IQ4_NL, IQ3_S,
# IQ2_XS, TQ2_0 and TQ1_0 (with an importance matrix llama-imatrix computes over tests/data/perplexity.txt: the IQ2
# types need one; the ternary ones ignore it).
# A type Lar does not run is recorded as refused. Files are cached in ~/.cache/lar/sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
MODELS="${LAR_MODELS:-$CACHE/models}"
SWEEP="$CACHE/sweep"
scripts/fetch-models.sh >/dev/null
BIN=$(bench/build-llama-cpp.sh | tail -n 1)
cargo build --release --quiet
mkdir -p "$SWEEP"
SRC="${1:-}"
if [ -z "$SRC" ]; then
  SRC="$SWEEP/qwen-f16.gguf"
  [ -f "$SRC" ] || "$BIN/llama-quantize" --allow-requantize "$MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" \
    "$SRC" F16 >/dev/null 2>&1
fi
stem=$(basename "$SRC" .gguf)
stem=${stem%-f16}
IMATRIX="$SWEEP/$stem.imatrix.gguf"
[ -f "$IMATRIX" ] || "$BIN/llama-imatrix" -m "$SRC" -f tests/data/perplexity.txt -o "$IMATRIX" -c 512 --chunks 8 \
  -t "${THREADS:-2}" >/dev/null 2>&1
files=()
for t in ${TYPES:-F16 BF16 Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0 Q3_K_M Q2_K IQ4_XS IQ4_NL IQ3_S IQ2_XS TQ2_0 TQ1_0}; do
  out="$SWEEP/$stem-$(echo "$t" | tr 'A-Z' 'a-z').gguf"
  if [ ! -f "$out" ]; then
    if [ "$t" = F16 ]; then
      cp "$SRC" "$out"
    else
      "$BIN/llama-quantize" --imatrix "$IMATRIX" "$SRC" "$out" "$t" >/dev/null 2>&1
    fi
  fi
  files+=("$out")
done
export TITLE="Every type: Lar vs llama.cpp on $(basename "$SRC") quantized by llama-quantize ($(date +%F), $(lscpu | sed -n 's/^Model name: *//p'))"
export COMMAND="${TYPES:+TYPES=\"$TYPES\" }bench/types.sh${1:+ $1}${LAR_BEFORE:+ (LAR_BEFORE=$LAR_BEFORE)}"
export RUNS="${RUNS:-3}"
exec "$CACHE/venv/bin/python" bench/compare.py "$BIN" "${files[@]}"
