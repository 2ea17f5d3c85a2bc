#!/usr/bin/env bash
# `lar eval perplexity` vs llama-perplexity on the same model files, text, context and threads: seconds, tokens/s
# (chunks x ctx over wall time) and the ratio, plus both perplexities. Builds llama.cpp once (cached) and Lar in
# release mode.
#
#   bench/perplexity.sh [TEXT] [CTX] [THREADS]      (defaults: tests/data/perplexity.txt, 512, all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
MODELS="${LAR_MODELS:-$CACHE/models}"
TEXT=${1:-tests/data/perplexity.txt}
CTX=${2:-512}
THREADS=${3:-$(nproc)}
scripts/fetch-models.sh >/dev/null
BIN=$(bench/build-llama-cpp.sh | tail -n 1)
cargo build --release --quiet -p lar-cli
LAR=${CARGO_TARGET_DIR:-target}/release/lar
HOME_DIR=$(mktemp -d)
trap 'rm -rf "$HOME_DIR"' EXIT
echo "| model | ctx | chunks | llama-perplexity PPL | Lar PPL | llama-perplexity tok/s | Lar tok/s | ratio |"
echo "|---|---|---|---|---|---|---|---|"
for m in SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf; do
    t0=$(date +%s.%N)
    out=$("$BIN/llama-perplexity" -m "$MODELS/$m" -f "$TEXT" -c "$CTX" -b "$CTX" -t "$THREADS" 2>&1)
    t1=$(date +%s.%N)
    ppl=$(grep -o 'Final estimate: PPL = [0-9.]*' <<<"$out" | awk '{print $5}')
    chunks=$(grep -o 'calculating perplexity over [0-9]* chunks' <<<"$out" | awk '{print $4}')
    v=$(LAR_HOME="$HOME_DIR" "$LAR" eval perplexity "$MODELS/$m" "$TEXT" --ctx "$CTX" --threads "$THREADS" --json --no-record)
    t2=$(date +%s.%N)
    python3 - "$m" "$CTX" "$chunks" "$ppl" "$t0" "$t1" "$t2" "$v" <<'PY'
import json, sys
m, ctx, chunks, ppl, t0, t1, t2, v = sys.argv[1:]
ctx, chunks = int(ctx), int(chunks)
v = json.loads(v)
assert v["chunks"] == chunks, (v["chunks"], chunks)
llama = chunks * ctx / (float(t1) - float(t0))
lar = chunks * ctx / (float(t2) - float(t1))
print(f"| {m} | {ctx} | {chunks} | {float(ppl):.4f} | {v['perplexity']:.4f} | {llama:.0f} | {lar:.0f} | {lar / llama:.2f}x |")
PY
done
