#!/usr/bin/env bash
# The planner against measured memory: for each test model and context (512, 2048, 8192), `lar plan --ctx N --json`
# gives the planned total; `lar run --ctx N` with the context filled (a raw prompt of N-24 words, 8 generated
# tokens) runs under /usr/bin/time, whose maximum resident set size is the measured peak. Prints a Markdown table
# with the difference; the target is within +-10% in every row. The synthetic 1.1B model (bench/compare.sh makes it;
# its output layer is separate, so token_embd is not resident) is included when present, at contexts up to its
# 2048. Usage: bench/plan-rss.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS="${LAR_MODELS:-${LAR_CACHE:-$HOME/.cache/lar}/models}"
THREADS="${1:-2}"
scripts/fetch-models.sh >/dev/null
cargo build --release --quiet
LAR=target/release/lar
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "| model | ctx | prompt tokens | planned total | measured peak RSS | difference |"
echo "|---|---:|---:|---:|---:|---:|"
for f in SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf synthetic-1.1b-q4_k_m.gguf; do
  [ -f "$MODELS/$f" ] || continue
  for ctx in 512 2048 8192; do
    [ "$f" = synthetic-1.1b-q4_k_m.gguf ] && [ "$ctx" -gt 2048 ] && continue
    python3 -c "import sys; print('hello ' * (int(sys.argv[1]) - 24))" "$ctx" >"$TMP/prompt.txt"
    planned=$("$LAR" plan "$MODELS/$f" --ctx "$ctx" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_bytes"])')
    /usr/bin/time -f '%M' -o "$TMP/rss" "$LAR" run "$MODELS/$f" --raw --prompt-file "$TMP/prompt.txt" \
      --ctx "$ctx" -n 8 --temperature 0 --threads "$THREADS" --json >"$TMP/out.json"
    python3 - "$f" "$ctx" "$planned" "$(tail -n 1 "$TMP/rss")" "$TMP/out.json" <<'PY'
import json, sys
f, ctx, planned, rss_kib, out = sys.argv[1:]
planned, measured = int(planned), int(rss_kib) * 1024
tokens = json.load(open(out))["prompt_tokens"]
mib = lambda b: f"{b / 2**20:.1f} MiB"
print(f"| {f} | {ctx} | {tokens} | {mib(planned)} | {mib(measured)} | {100 * (planned - measured) / measured:+.1f}% |")
PY
  done
done
