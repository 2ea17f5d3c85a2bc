#!/usr/bin/env bash
# The quantization table people want before choosing a type: a Hugging Face directory (by default the SmolLM2 test
# directory, bf16) or a float GGUF file converted to F16 and quantized by `lar quantize` to Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M and Q2_K,
# then `lar eval compare` (size, prompt and generation tokens/s, perplexity on tests/data/perplexity.txt, KL
# divergence from F16), with the chart of size against perplexity written to docs/NAME-quantizations.svg.
#
#   bench/quantization-table.sh [HF_DIR | FILE.gguf] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
MODELS="${LAR_MODELS:-$CACHE/models}"
HF=${1:-$MODELS/hf/SmolLM2-135M-Instruct-bf16}
THREADS=${2:-$(nproc)}
NAME=$(basename "$HF" .gguf)
scripts/fetch-models.sh >/dev/null
cargo build --release --quiet -p lar-cli
LAR=${CARGO_TARGET_DIR:-target}/release/lar
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export LAR_HOME="$OUT/home"
files=()
for t in F16 Q8_0 Q6_K Q5_K_M Q4_K_M Q3_K_M Q2_K; do
    "$LAR" quantize "$HF" "$OUT/$NAME-$t.gguf" --type "$t" --threads "$THREADS" --no-record >/dev/null
    files+=("$OUT/$NAME-$t.gguf")
done
mkdir -p docs
"$LAR" eval compare "${files[@]}" --text tests/data/perplexity.txt --ctx 512 -p 256 -n 32 -r 2 \
    --threads "$THREADS" --chart "docs/$NAME-quantizations.svg" --no-record
