#!/usr/bin/env bash
# Regenerates the goldens of `lar eval` (checked by crates/lar-cli/tests/eval.rs) from llama-perplexity, for the
# test models:
#   tests/golden/perplexity.json  perplexity on tests/data/perplexity.txt (Lar must be within 0.5%);
#   tests/golden/choice.json      each question of tests/data/choice.jsonl right or wrong with --hellaswag (Lar's
#                                 acc_token picks must agree, near ties aside);
#   tests/golden/kld.json         SmolLM2 requantized to Q8_0 against its Q4_1 source with --kl-divergence.
# Needs llama.cpp built from the llama-cpp-python sdist (bench/build-llama-cpp.sh builds it under ~/.cache/lar) and
# scripts/fetch-models.sh.
#
#   scripts/make-eval-goldens.sh
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

# The multiple-choice questions in llama-perplexity's HellaSwag format (context, answer, four endings), one file per
# question: llama-perplexity shuffles the tasks of a file, so each is run alone to know which it got right.
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
python3 - tests/data/choice.jsonl "$DIR" <<'PY'
import json, sys
for i, l in enumerate(open(sys.argv[1])):
    o = json.loads(l)
    assert len(o["choices"]) == 4, "llama-perplexity's HellaSwag has four endings"
    lines = [o["context"], str(o["answer"])] + o["choices"]
    open(f"{sys.argv[2]}/{i:04}.txt", "w").write("\n".join(lines) + "\n")
PY
entries=()
for m in SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf; do
    right=()
    for f in "$DIR"/*.txt; do
        out=$("$BIN/llama-perplexity" -m "$MODELS/$m" -f "$f" --hellaswag --hellaswag-tasks 1 -c 512 -t "$(nproc)" 2>&1)
        acc=$(grep -E "^1\s" <<<"$out" | awk '{print $2}' | tr -d '%')
        case "$acc" in 100.*) right+=(true) ;; 0.*) right+=(false) ;; *) echo "no result for $f: $out" >&2; exit 1 ;; esac
    done
    n=${#right[@]}
    hits=$(printf '%s\n' "${right[@]}" | grep -c true || true)
    echo "$m: hellaswag $hits/$n right" >&2
    entries+=("{\"model\": \"$m\", \"questions\": $n, \"right\": [$(IFS=,; echo "${right[*]}")]}")
done
sha=$(sha256sum tests/data/choice.jsonl | cut -d' ' -f1)
{
    echo "{\"tasks\": \"tests/data/choice.jsonl\", \"tasks_sha256\": \"$sha\", \"scored_as\": \"llama-perplexity --hellaswag, one question at a time\", \"runs\": ["
    (IFS=$'\n'; echo "${entries[*]}" | sed '$!s/$/,/')
    echo "]}"
} > tests/golden/choice.json
python3 -m json.tool tests/golden/choice.json > /dev/null
echo "wrote tests/golden/choice.json" >&2

# KL divergence: SmolLM2's Q4_1 file as the reference, its Q8_0 requantization (llama-quantize; `lar quantize` writes
# the same bytes) as the candidate.
SMOL=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
"$BIN/llama-quantize" --allow-requantize "$SMOL" "$DIR/smol-q8_0.gguf" Q8_0 "$(nproc)" >/dev/null 2>&1
"$BIN/llama-perplexity" -m "$SMOL" -f "$TEXT" -c $CTX -b $CTX --chunks $CHUNKS -t "$(nproc)" \
    --kl-divergence-base "$DIR/base.kld" >/dev/null 2>&1
out=$("$BIN/llama-perplexity" -m "$DIR/smol-q8_0.gguf" -f "$TEXT" -c $CTX -b $CTX --chunks $CHUNKS -t "$(nproc)" \
    --kl-divergence-base "$DIR/base.kld" --kl-divergence 2>&1)
python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
def num(pattern):
    return float(re.search(pattern, out).group(1))
g = {"reference": "SmolLM2-135M-Instruct.Q4_1.gguf", "candidate": "the same requantized to Q8_0",
     "ctx": 256, "chunks": 6,
     "kld_mean": num(r"Mean\s+KLD:\s+([0-9.]+)"), "kld_median": num(r"Median\s+KLD:\s+([0-9.]+)"),
     "same_top_percent": num(r"Same top p:\s+([0-9.]+)"), "delta_p_rms_percent": num(r"RMS Δp\s+:\s+([0-9.]+)"),
     "ppl_ratio": num(r"Mean PPL\(Q\)/PPL\(base\)\s+:\s+([0-9.]+)")}
json.dump(g, open("tests/golden/kld.json", "w"), indent=1)
print("wrote tests/golden/kld.json", g, file=sys.stderr)
PY
