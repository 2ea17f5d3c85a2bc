#!/usr/bin/env bash
# `lar imatrix` vs llama-imatrix: seconds for the same model, text (tests/data/perplexity.txt), chunks and threads,
# and how close the two matrices are (the median and worst per-matrix relative L2 distance of the sums).
#
#   bench/imatrix.sh [THREADS]
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
echo "| model | chunks x ctx | llama-imatrix s | Lar s | ratio | median / worst rel. L2 |"
echo "|---|---|---|---|---|---|"
for m in SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf; do
    t0=$(date +%s.%N)
    "$BIN/llama-imatrix" -m "$MODELS/$m" -f tests/data/perplexity.txt -o "$OUT/llama.gguf" -c 512 --chunks 8 \
        -t "$THREADS" >/dev/null 2>&1
    t1=$(date +%s.%N)
    LAR_HOME="$OUT" "$LAR" imatrix "$MODELS/$m" tests/data/perplexity.txt -o "$OUT/lar.gguf" --ctx 512 --chunks 8 \
        --threads "$THREADS" --no-record >/dev/null
    t2=$(date +%s.%N)
    l2=$(PYTHONPATH="$CACHE/llama.cpp-0.3.36/gguf-py" "$CACHE/venv/bin/python" - "$OUT/llama.gguf" "$OUT/lar.gguf" <<'PY'
import sys, numpy as np, gguf
a, b = ({t.name: np.array(t.data, dtype=np.float64).reshape(-1) for t in gguf.GGUFReader(p).tensors} for p in sys.argv[1:])
r = sorted(np.linalg.norm(b[k] - a[k]) / np.linalg.norm(a[k]) for k in a if k.endswith(".in_sum2"))
print(f"{r[len(r) // 2]:.4f} / {r[-1]:.4f}")
PY
)
    python3 -c "import sys; a, b, c = map(float, sys.argv[1:4]); print(f'| $m | 8 x 512 | {b - a:.2f} | {c - b:.2f} | {(b - a) / (c - b):.2f}x | $l2 |')" "$t0" "$t1" "$t2"
done
