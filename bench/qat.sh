#!/usr/bin/env bash
# Quantization-aware repair per type: SmolLM2's BF16 Hugging Face directory (the teacher) quantized by `lar quantize`
# to each TYPE (the student), then `lar finetune STUDENT TEXT --qat --teacher HF` on tests/data/perplexity.txt in
# 128-token chunks (a sixth held out, 2 epochs of 512-token steps, rank 16, lr 5e-4, the teacher's top 32 tokens).
# Prints, per type, the held-out perplexity and KL divergence from the teacher before and after, the share of the
# perplexity gap closed, the run's peak memory and its time.
#
#   bench/qat.sh [THREADS] [TYPE...]        (default types: Q4_0 Q3_K_M)
#   TEACHER=FILE.gguf|DIR LABEL=NAME bench/qat.sh ...   (another teacher: a float GGUF file or Hugging Face directory)
#   HELDOUT=FILE bench/qat.sh ...   (held-out text from another document, `--eval-data FILE`, instead of a sixth of
#                                    the training text: every chunk of it trained on)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
MODELS="${LAR_MODELS:-$CACHE/models}"
HF="${TEACHER:-$MODELS/hf/SmolLM2-135M-Instruct-bf16}"
LABEL=${LABEL:-SmolLM2}
THREADS=${1:-$(nproc)}
shift || true
TYPES=("$@")
HOLD=(--eval-split 0.17)
[ -z "${HELDOUT:-}" ] || HOLD=(--eval-data "$HELDOUT")
[ ${#TYPES[@]} -gt 0 ] || TYPES=(Q4_0 Q3_K_M)
scripts/fetch-models.sh >/dev/null
cargo build --release --quiet -p lar-cli
LAR=${CARGO_TARGET_DIR:-target}/release/lar
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export LAR_HOME="$OUT/home"
echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $THREADS threads"
echo
echo "| student | perplexity before -> after (teacher) | gap closed | KL divergence before -> after | peak MiB | seconds |"
echo "|---|---|---|---|---|---|"
for t in "${TYPES[@]}"; do
    "$LAR" quantize "$HF" "$OUT/student-$t.gguf" --type "$t" --threads "$THREADS" --no-record >/dev/null
    start=$(date +%s)
    log=$("$LAR" finetune "$OUT/student-$t.gguf" tests/data/perplexity.txt --qat --teacher "$HF" --seq-len 128 \
        --batch-tokens 512 --epochs 2 --lr 5e-4 --rank 16 "${HOLD[@]}" --threads "$THREADS" --no-record \
        -o "$OUT/adapter-$t" 2>&1)
    secs=$(($(date +%s) - start))
    line=$(grep -o 'held-out perplexity.*' <<<"$log" || { echo "$log" >&2; exit 1; })
    peak=$(grep -o 'peak memory [0-9.]* MiB' <<<"$log" | grep -o '[0-9.]*' || echo "?")
    # "held-out perplexity A -> B (teacher C: D% of the gap closed); KL divergence from the teacher E -> F (G% less)"
    read -r a b c d e f g < <(sed -E 's/held-out perplexity ([0-9.]+) -> ([0-9.]+) \(teacher ([0-9.]+): (-?[0-9]+)% of the gap closed\); KL divergence from the teacher ([0-9.]+) -> ([0-9.]+) \((-?[0-9]+)% less\).*/\1 \2 \3 \4 \5 \6 \7/' <<<"$line")
    echo "| $LABEL $t | $a -> $b ($c) | $d% | $e -> $f (-$g%) | $peak | $secs |"
done
