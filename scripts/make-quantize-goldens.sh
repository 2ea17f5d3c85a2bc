#!/usr/bin/env bash
# Regenerates tests/golden/quantize.json: what llama-quantize writes for the tiny random-weight models
# (lar_testdata::tiny_model, all F32) at each type Lar writes, tensor by tensor (type and sha256 of the data), which
# `lar quantize` must reproduce byte for byte (crates/lar-cli/tests/quantize.rs). Needs llama.cpp built from the
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
            runs+=("$arch $t ${pure:-default} $out")
        done
    done
done
PYTHONPATH="$CACHE/llama.cpp-0.3.36/gguf-py" "$PY" - "$DIR" "${runs[@]}" <<'PY'
import hashlib, json, sys
import gguf
d, runs = sys.argv[1], sys.argv[2:]
out = {"source": "lar_testdata::tiny_model(arch), F32", "llama_cpp": "llama-cpp-python 0.3.36 sdist", "sources": {}, "runs": []}
for arch in ("llama", "qwen2"):
    out["sources"][arch] = hashlib.sha256(open(f"{d}/tiny-{arch}.gguf", "rb").read()).hexdigest()
for r in runs:
    arch, t, mode, path = r.split(" ", 3)
    g = gguf.GGUFReader(path)
    tensors = {}
    for ti in g.tensors:
        tensors[ti.name] = [ti.tensor_type.name, hashlib.sha256(bytes(ti.data.tobytes())).hexdigest()]
    ft = int(g.fields["general.file_type"].parts[-1][0])
    out["runs"].append({"arch": arch, "type": t, "pure": mode == "--pure", "file_type": ft, "tensors": tensors})
json.dump(out, open("tests/golden/quantize.json", "w"), indent=0, sort_keys=True)
print(f"wrote tests/golden/quantize.json ({len(out['runs'])} runs)", file=sys.stderr)
PY
