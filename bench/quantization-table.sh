#!/usr/bin/env bash
# The quantization table people want before choosing a type: the SmolLM2 Hugging Face test directory (bf16)
# converted to F16 and quantized by `lar quantize` to Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M and Q2_K, then
# `lar eval compare` (size, prompt and generation tokens/s, perplexity on tests/data/perplexity.txt, KL divergence
# from F16) with the chart of size against perplexity written to docs/smollm2-quantizations.svg.
#
#   bench/quantization-table.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
MODELS="${LAR_MODELS:-$CACHE/models}"
THREADS=${1:-$(nproc)}
scripts/fetch-models.sh >/dev/null
cargo build --release --quiet -p lar-cli
LAR=${CARGO_TARGET_DIR:-target}/release/lar
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export LAR_HOME="$OUT/home"
HF="$MODELS/hf/SmolLM2-135M-Instruct-bf16"
files=()
for t in F16 Q8_0 Q6_K Q5_K_M Q4_K_M Q3_K_M Q2_K; do
    "$LAR" quantize "$HF" "$OUT/SmolLM2-135M-$t.gguf" --type "$t" --threads "$THREADS" --no-record >/dev/null
    files+=("$OUT/SmolLM2-135M-$t.gguf")
done
mkdir -p docs
"$LAR" eval compare "${files[@]}" --text tests/data/perplexity.txt --ctx 512 -p 256 -n 32 -r 2 \
    --threads "$THREADS" --chart docs/smollm2-quantizations.svg --no-record
