#!/usr/bin/env bash
# Regenerates tests/golden/codebook-logits.json: llama.cpp's logits for the codebook-type models
# (lar_testdata::wide_codebook_model: the wide llama in 2 layers, every matrix random blocks of IQ2_XXS, IQ2_XS, IQ2_S,
# IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, MXFP4, NVFP4, Q1_0 or Q2_0), which Lar's engine must reproduce (crates/lar-lab/tests/quant_logits.rs). Needs
# llama.cpp built from the llama-cpp-python sdist (bench/build-llama-cpp.sh).
#
#   scripts/make-codebook-goldens.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
cargo run --release --quiet -p lar-models --example tiny-models -- "$DIR" >/dev/null
models=()
for t in IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S IQ1_M MXFP4 NVFP4 Q1_0 Q2_0; do
    models+=("wide-$t=$DIR/wide-$t.gguf")
done
scripts/llama-logits.sh tests/golden/codebook-logits.json 16 "${models[@]}"
