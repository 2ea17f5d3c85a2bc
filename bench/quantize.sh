#!/usr/bin/env bash
# `lar quantize` vs llama-quantize: seconds for the same source file, type and threads (requantizing the test
# models, the only GGUF sources fetched here; both dequantize then quantize, as --allow-requantize asks), and
# whether the two outputs have the same tensors byte for byte: the 32-block types, k-quant mixtures, and Q4_K_M
# with an importance matrix (`lar imatrix` over tests/data/perplexity.txt, read by both). Builds llama.cpp once
# (cached) and Lar in release.
#
#   bench/quantize.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
MODELS="${LAR_MODELS:-$CACHE/models}"
THREADS=${1:-$(nproc)}
scripts/fetch-models.sh >/dev/null
BIN=$(bench/build-llama-cpp.sh | tail -n 1)
cargo build --release --quiet -p lar-cli
LAR=${CARGO_TARGET_DIR:-target}/release/lar
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "| source | type | llama-quantize s | Lar s | ratio | tensors identical |"
echo "|---|---|---|---|---|---|"
for m in SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf; do
    LAR_HOME="$OUT" "$LAR" imatrix "$MODELS/$m" tests/data/perplexity.txt -o "$OUT/imatrix.gguf" --ctx 256 \
        --threads "$THREADS" --no-record >/dev/null
    for t in Q8_0 Q4_0 Q6_K Q5_K_M Q4_K_M Q3_K_M Q2_K Q4_K_M+imatrix; do
        im=()
        case "$t" in *+imatrix) t=${t%+imatrix}; im=(--imatrix "$OUT/imatrix.gguf") ;; esac
        t0=$(date +%s.%N)
        "$BIN/llama-quantize" --allow-requantize "${im[@]}" "$MODELS/$m" "$OUT/llama.gguf" "$t" "$THREADS" \
            >/dev/null 2>&1
        t1=$(date +%s.%N)
        LAR_HOME="$OUT" "$LAR" quantize "$MODELS/$m" "$OUT/lar.gguf" --type "$t" --allow-requantize "${im[@]}" \
            --threads "$THREADS" --no-record >/dev/null
        t2=$(date +%s.%N)
        [ ${#im[@]} -gt 0 ] && t="$t + imatrix"
        same=$(PYTHONPATH="$CACHE/llama.cpp-0.3.36/gguf-py" "$CACHE/venv/bin/python" - "$OUT/llama.gguf" "$OUT/lar.gguf" <<'PY'
import sys, gguf
a, b = (gguf.GGUFReader(p) for p in sys.argv[1:])
ta = {t.name: (t.tensor_type, t.data.tobytes()) for t in a.tensors}
tb = {t.name: (t.tensor_type, t.data.tobytes()) for t in b.tensors}
print(f"{sum(ta[k] == tb.get(k) for k in ta)}/{len(ta)}")
PY
)
        python3 -c "import sys; a, b, c = map(float, sys.argv[1:4]); print(f'| $m | $t | {b - a:.2f} | {c - b:.2f} | {(b - a) / (c - b):.2f}x | $same |')" "$t0" "$t1" "$t2"
    done
done
