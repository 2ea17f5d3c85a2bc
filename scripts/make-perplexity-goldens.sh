#!/usr/bin/env bash
# Regenerates tests/golden/perplexity.json: llama-perplexity's numbers on tests/data/perplexity.txt for the test
# models, which `lar eval perplexity` must match within 0.5% (crates/lar-cli/tests/eval.rs). Needs llama.cpp built
# from the llama-cpp-python sdist (bench/build-llama-cpp.sh builds it under ~/.cache/lar) and scripts/fetch-models.sh.
#
#   scripts/make-perplexity-goldens.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LLAMA_BIN:-$HOME/.cache/lar/llama.cpp-0.3.36/build/bin}
MODELS=${LAR_MODELS:-$HOME/.cache/lar/models}
TEXT=tests/data/perplexity.txt
CTX=256
CHUNKS=6
entries=()
for m in SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf; do
    out=$("$BIN/llama-perplexity" -m "$MODELS/$m" -f "$TEXT" -c $CTX -b $CTX --chunks $CHUNKS -t "$(nproc)" 2>&1)
    final=$(grep -o 'Final estimate: PPL = [0-9.]* +/- [0-9.]*' <<<"$out")
    ppl=$(awk '{print $5}' <<<"$final")
    err=$(awk '{print $7}' <<<"$final")
    running=$(grep -o '\[[0-9]*\][0-9.]*' <<<"$out" | sed 's/\[[0-9]*\]//' | paste -sd, -)
    echo "$m: $ppl +/- $err" >&2
    entries+=("{\"model\": \"$m\", \"ctx\": $CTX, \"chunks\": $CHUNKS, \"perplexity\": $ppl, \"stderr\": $err, \"running\": [$running]}")
done
sha=$(sha256sum "$TEXT" | cut -d' ' -f1)
{
    echo "{\"text\": \"$TEXT\", \"text_sha256\": \"$sha\", \"llama_cpp\": \"llama-cpp-python 0.3.36 sdist\", \"runs\": ["
    (IFS=$'\n'; echo "${entries[*]}" | sed '$!s/$/,/')
    echo "]}"
} > tests/golden/perplexity.json
python3 -m json.tool tests/golden/perplexity.json > /dev/null
echo "wrote tests/golden/perplexity.json" >&2
