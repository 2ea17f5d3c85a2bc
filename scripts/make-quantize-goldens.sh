#!/usr/bin/env bash
# Regenerates tests/golden/quantize.json: what llama-quantize writes, tensor by tensor (type and the first 16 hex
# digits of the data's sha256), which `lar quantize` must reproduce byte for byte (crates/lar-cli/tests/quantize.rs):
# the tiny random-weight models (lar_testdata::tiny_model, all F32, 64 wide) at the 32-block types, and the wide one
# (lar_testdata::wide_model, 256 wide, 8 layers) at every k-quant file type, with llama-quantize's mixtures and
# --pure, and with --tensor-type overrides. Needs llama.cpp built from the
# llama-cpp-python sdist (bench/build-llama-cpp.sh) and numpy in ~/.cache/lar/venv (gguf-py reads the files).
#
#   scripts/make-quantize-goldens.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${LAR_CACHE:-$HOME/.cache/lar}
BIN=${LLAMA_BIN:-$CACHE/llama.cpp-0.3.36/build/bin}
PY=${PYTHON:-$CACHE/venv/bin/python}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
cargo run --release --quiet -p lar-models --example tiny-models -- "$DIR" >/dev/null
runs=()
for arch in llama qwen2; do
    for t in Q4_0 Q4_1 Q5_0 Q5_1 Q8_0; do
        for pure in "" --pure; do
            out="$DIR/$arch-$t$pure.gguf"
            "$BIN/llama-quantize" $pure "$DIR/tiny-$arch.gguf" "$out" "$t" 1 >/dev/null 2>&1
            runs+=("tiny-$arch $t ${pure:-default} $out")
        done
    done
done
for t in Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K; do
    out="$DIR/wide-$t.gguf"
    "$BIN/llama-quantize" "$DIR/wide-llama.gguf" "$out" "$t" 1 >/dev/null 2>&1
    runs+=("wide-llama $t default $out")
done
for t in Q2_K Q3_K_S Q4_K_S Q5_K_S; do
    out="$DIR/wide-$t-pure.gguf"
    "$BIN/llama-quantize" --pure "$DIR/wide-llama.gguf" "$out" "$t" 1 >/dev/null 2>&1
    runs+=("wide-llama $t --pure $out")
done
# The overrides as the test passes them: the first matching pattern wins, over the mixture's own choice.
out="$DIR/wide-overrides.gguf"
"$BIN/llama-quantize" --tensor-type 'blk\.[0-3]\.attn_q=q8_0' --tensor-type 'attn_q=q5_0' --tensor-type 'ffn_down=q2_k' \
    "$DIR/wide-llama.gguf" "$out" Q4_K_M 1 >/dev/null 2>&1
runs+=("wide-llama Q4_K_M overrides $out")
PYTHONPATH="$CACHE/llama.cpp-0.3.36/gguf-py" "$PY" - "$DIR" "${runs[@]}" <<'PY'
import hashlib, json, sys
import gguf
d, runs = sys.argv[1], sys.argv[2:]
out = {"source": "lar_testdata::tiny_model(arch) and wide_model(arch), F32", "llama_cpp": "llama-cpp-python 0.3.36 sdist",
       "overrides": ["blk\\.[0-3]\\.attn_q=q8_0", "attn_q=q5_0", "ffn_down=q2_k"], "sources": {}, "runs": []}
for src in ("tiny-llama", "tiny-qwen2", "wide-llama"):
    out["sources"][src] = hashlib.sha256(open(f"{d}/{src}.gguf", "rb").read()).hexdigest()
for r in runs:
    src, t, mode, path = r.split(" ", 3)
    g = gguf.GGUFReader(path)
    tensors = {}
    for ti in g.tensors:
        tensors[ti.name] = [ti.tensor_type.name, hashlib.sha256(bytes(ti.data.tobytes())).hexdigest()[:16]]
    ft = int(g.fields["general.file_type"].parts[-1][0])
    out["runs"].append({"source": src, "type": t, "pure": mode == "--pure", "overrides": mode == "overrides",
                        "file_type": ft, "tensors": tensors})
json.dump(out, open("tests/golden/quantize.json", "w"), indent=0, sort_keys=True)
print(f"wrote tests/golden/quantize.json ({len(out['runs'])} runs)", file=sys.stderr)
PY
