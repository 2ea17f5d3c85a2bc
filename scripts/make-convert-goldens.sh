#!/usr/bin/env bash
# Regenerates tests/golden/convert.json and tests/golden/convert-gemma.json (crates/lar-cli/tests/convert.rs): Hugging
# Face test directories converted by `lar quantize` and then loaded and measured by llama.cpp (built from the
# llama-cpp-python sdist by bench/build-llama-cpp.sh; gguf-py from that tree, numpy in ~/.cache/lar/venv).
#
#   scripts/make-convert-goldens.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${LAR_CACHE:-$HOME/.cache/lar}
BIN=${LLAMA_BIN:-$CACHE/llama.cpp-0.3.36/build/bin}
PY=${PYTHON:-$CACHE/venv/bin/python}
MODELS=${LAR_MODELS:-$CACHE/models}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
# tests/golden/convert.json: the SmolLM2 Hugging Face test directory (bf16 safetensors) converted by `lar quantize`
# to F16, which llama.cpp loads and measures (llama-perplexity over the perplexity text, chunks of 256, the first
# 4), tensor by tensor (type and hash); and llama-quantize's Q4_K_M of that F16 file, which `lar quantize DIR
# --type Q4_K_M` must equal (crates/lar-cli/tests/convert.rs).
HFDIR="$MODELS/hf/SmolLM2-135M-Instruct-bf16"
cargo build --release --quiet -p lar-cli
LAR=${CARGO_TARGET_DIR:-target}/release/lar
LAR_HOME="$DIR" "$LAR" quantize "$HFDIR" "$DIR/hf-f16.gguf" --type F16 --no-record >/dev/null
"$BIN/llama-quantize" "$DIR/hf-f16.gguf" "$DIR/hf-q4km.gguf" Q4_K_M 1 >/dev/null 2>&1
PPL=$("$BIN/llama-perplexity" -m "$DIR/hf-f16.gguf" -f tests/data/perplexity.txt -c 256 --chunks 4 -t 2 2>&1 \
    | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
PYTHONPATH="$CACHE/llama.cpp-0.3.36/gguf-py" "$PY" - "$DIR/hf-f16.gguf" "$DIR/hf-q4km.gguf" "$PPL" <<'PY'
import hashlib, json, sys
import gguf
def tensors(p):
    g = gguf.GGUFReader(p)
    return {t.name: [t.tensor_type.name, hashlib.sha256(bytes(t.data.tobytes())).hexdigest()[:16]] for t in g.tensors}
out = {"source": "hf/SmolLM2-135M-Instruct-bf16", "llama_cpp": "llama-cpp-python 0.3.36 sdist",
       "text": "tests/data/perplexity.txt", "ctx": 256, "chunks": 4, "llama_perplexity": float(sys.argv[3]),
       "f16": tensors(sys.argv[1]), "q4_k_m": tensors(sys.argv[2])}
json.dump(out, open("tests/golden/convert.json", "w"), indent=0, sort_keys=True)
print(f"wrote tests/golden/convert.json (llama-perplexity {sys.argv[3]})", file=sys.stderr)
PY

# tests/golden/convert-gemma.json: the Gemma 3 270M Hugging Face test directory (f16 safetensors, a SentencePiece-style
# tokenizer.json) converted by `lar quantize` to F16, tensor by tensor; llama-perplexity on that file (chunks of 256,
# the first 4); and llama-tokenize's ids for a few texts with that file, which must be Lar's through the directory's
# tokenizer.json (the test) and, for the first three, llama.cpp's with the original GGUF the directory was made from
# (checked here). The last two (runs of 32 and 33 spaces) differ from the original GGUF's, as the directory's own
# tokenizer.json does: transformers, converting that GGUF, made its 30 user-defined whitespace pieces normal ones.
GDIR="$MODELS/hf/gemma-3-270m-f16"
LAR_HOME="$DIR" "$LAR" quantize "$GDIR" "$DIR/gemma-f16.gguf" --type F16 --no-record >/dev/null
GPPL=$("$BIN/llama-perplexity" -m "$DIR/gemma-f16.gguf" -f tests/data/perplexity.txt -c 256 --chunks 4 -t 2 2>&1 \
    | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
PYTHONPATH="$CACHE/llama.cpp-0.3.36/gguf-py" "$PY" - "$DIR/gemma-f16.gguf" "$MODELS/gemma-3-270m-q4_k_m.gguf" "$GPPL" "$BIN" <<'PY'
import hashlib, json, subprocess, sys
import gguf
f16, orig, ppl, bin_ = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
texts = ["Hello  world,\ttabs and   spaces\nnew lines <start_of_turn>user \u00fcn\u00efc\u00f6d\u00e9 \u65e5\u672c\u8a9e \U0001f642",
         "def f(x):\n    return x * 2  # doubled\n\n\n",
         open("tests/data/perplexity.txt", encoding="utf-8").read()[:2000],
         "x" + " " * 32 + "y", "x" + " " * 33 + "y"]
def ids(model, text):
    out = subprocess.run([bin_ + "/llama-tokenize", "-m", model, "-p", text, "--ids", "--log-disable"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])
tokens = [ids(f16, t) for t in texts]
original = [ids(orig, t) for t in texts]
assert tokens[:3] == original[:3], "the converted file tokenizes unlike the original GGUF"
assert tokens[3:] != original[3:], "the space runs now tokenize as the original: update this script's comment"
g = gguf.GGUFReader(f16)
out = {"source": "hf/gemma-3-270m-f16", "llama_cpp": "llama-cpp-python 0.3.36 sdist",
       "text": "tests/data/perplexity.txt", "ctx": 256, "chunks": 4, "llama_perplexity": ppl,
       "f16": {t.name: [t.tensor_type.name, hashlib.sha256(bytes(t.data.tobytes())).hexdigest()[:16]] for t in g.tensors},
       "texts": texts, "llama_tokens": tokens, "original_gguf_tokens": original}
json.dump(out, open("tests/golden/convert-gemma.json", "w"), indent=0, sort_keys=True)
print(f"wrote tests/golden/convert-gemma.json (llama-perplexity {ppl})", file=sys.stderr)
PY
