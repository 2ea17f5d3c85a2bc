#!/usr/bin/env bash
# Regenerates tests/golden/quantize.json, quant-logits.json and imatrix.json (the last two described below), and
# convert.json and convert-gemma.json through scripts/make-convert-goldens.sh.
# quantize.json: what llama-quantize writes, tensor by tensor (type and the first 16 hex
# digits of the data's sha256), which `lar quantize` must reproduce byte for byte (crates/lar-cli/tests/quantize.rs):
# the tiny random-weight models (lar_testdata::tiny_model, all F32, 64 wide) at the 32-block types (IQ4_NL too), and
# the wide one (lar_testdata::wide_model, 256 wide, 8 layers) at every k-quant file type, IQ4_NL/IQ4_XS and TQ1_0/TQ2_0, with llama-quantize's mixtures and
# --pure, with --tensor-type overrides, and with an importance matrix (lar_testdata::wide_imatrix). Needs llama.cpp built from the
# llama-cpp-python sdist (bench/build-llama-cpp.sh); installs numpy and llama-cpp-python's few dependencies into
# ~/.cache/lar/venv (gguf-py and the bindings need them).
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
    for t in Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL; do
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
for t in IQ4_NL IQ4_XS TQ1_0 TQ2_0; do
    out="$DIR/wide-$t.gguf"
    "$BIN/llama-quantize" "$DIR/wide-llama.gguf" "$out" "$t" 1 >/dev/null 2>&1
    runs+=("wide-llama $t default $out")
done
for t in Q2_K Q3_K_S Q4_K_S Q5_K_S IQ4_NL IQ4_XS TQ1_0 TQ2_0; do
    out="$DIR/wide-$t-pure.gguf"
    "$BIN/llama-quantize" --pure "$DIR/wide-llama.gguf" "$out" "$t" 1 >/dev/null 2>&1
    runs+=("wide-llama $t --pure $out")
done
# The overrides as the test passes them: the first matching pattern wins, over the mixture's own choice.
out="$DIR/wide-overrides.gguf"
"$BIN/llama-quantize" --tensor-type 'blk\.[0-3]\.attn_q=q8_0' --tensor-type 'attn_q=q5_0' --tensor-type 'ffn_down=q2_k' \
    "$DIR/wide-llama.gguf" "$out" Q4_K_M 1 >/dev/null 2>&1
runs+=("wide-llama Q4_K_M overrides $out")
# With an importance matrix (lar_testdata::wide_imatrix, written by the example in llama.cpp's format).
for t in Q4_0 Q4_1 Q5_0 Q5_1 Q2_K_S Q3_K_M Q4_K_M Q5_K_M Q6_K IQ4_NL IQ4_XS; do
    out="$DIR/wide-$t-imatrix.gguf"
    "$BIN/llama-quantize" --imatrix "$DIR/wide-llama.imatrix.gguf" "$DIR/wide-llama.gguf" "$out" "$t" 1 >/dev/null 2>&1
    runs+=("wide-llama $t imatrix $out")
done
# With llama-imatrix's own file (committed: tests/golden/tiny-llama.imatrix.gguf, 2 chunks of the perplexity text
# through the tiny llama), so Lar is held to reading llama.cpp's imatrix files too.
"$BIN/llama-imatrix" -m "$DIR/tiny-llama.gguf" -f tests/data/perplexity.txt -o tests/golden/tiny-llama.imatrix.gguf \
    -c 128 --chunks 2 -t 2 >/dev/null 2>&1
for t in Q4_0 Q5_1; do
    out="$DIR/tiny-$t-llama-imatrix.gguf"
    "$BIN/llama-quantize" --imatrix tests/golden/tiny-llama.imatrix.gguf "$DIR/tiny-llama.gguf" "$out" "$t" 1 \
        >/dev/null 2>&1
    runs+=("tiny-llama $t llama-imatrix $out")
done
# quant-logits.json: llama.cpp's logits for the IQ4 and ternary (TQ1_0, TQ2_0) files (scripts/llama-logits.sh), so
# Lar's kernels for those types are held to llama.cpp's (crates/lar-lab/tests/quant_logits.rs; the files themselves
# are Lar's own quantizations, byte-identical).
models=()
for name in tiny-llama-IQ4_NL wide-IQ4_NL-pure wide-IQ4_XS-pure wide-IQ4_XS wide-TQ1_0-pure wide-TQ1_0 wide-TQ2_0-pure \
    wide-TQ2_0; do
    models+=("$name=$DIR/${name/tiny-llama-/llama-}.gguf")
done
scripts/llama-logits.sh tests/golden/quant-logits.json 24 "${models[@]}"
PYTHONPATH="$CACHE/llama.cpp-0.3.36/gguf-py" "$PY" - "$DIR" "${runs[@]}" <<'PY'
import hashlib, json, sys
import gguf
d, runs = sys.argv[1], sys.argv[2:]
out = {"source": "lar_testdata::tiny_model(arch) and wide_model(arch), F32", "llama_cpp": "llama-cpp-python 0.3.36 sdist",
       "overrides": ["blk\\.[0-3]\\.attn_q=q8_0", "attn_q=q5_0", "ffn_down=q2_k"], "sources": {}, "runs": []}
for src in ("tiny-llama", "tiny-qwen2", "wide-llama", "wide-llama.imatrix"):
    out["sources"][src] = hashlib.sha256(open(f"{d}/{src}.gguf", "rb").read()).hexdigest()
for r in runs:
    src, t, mode, path = r.split(" ", 3)
    g = gguf.GGUFReader(path)
    tensors = {}
    for ti in g.tensors:
        tensors[ti.name] = [ti.tensor_type.name, hashlib.sha256(bytes(ti.data.tobytes())).hexdigest()[:16]]
    ft = int(g.fields["general.file_type"].parts[-1][0])
    out["runs"].append({"source": src, "type": t, "pure": mode == "--pure", "overrides": mode == "overrides",
                        "imatrix": {"imatrix": "wide-llama.imatrix", "llama-imatrix": "tests/golden/tiny-llama.imatrix.gguf"}.get(mode),
                        "file_type": ft, "tensors": tensors})
json.dump(out, open("tests/golden/quantize.json", "w"), indent=0, sort_keys=True)
print(f"wrote tests/golden/quantize.json ({len(out['runs'])} runs)", file=sys.stderr)
PY

# tests/golden/imatrix.json: llama-imatrix's importance matrix of the SmolLM2 test model over the perplexity text
# (chunks of 256, the first 3), summarised per matrix (token count, the sum of the squared activations, the four
# largest columns), which `lar imatrix` must reproduce (crates/lar-cli/tests/imatrix.rs).
SMOL="${LAR_MODELS:-$CACHE/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
"$BIN/llama-imatrix" -m "$SMOL" -f tests/data/perplexity.txt -o "$DIR/smol.imatrix.gguf" -c 256 --chunks 3 -t 2 \
    >/dev/null 2>&1
PYTHONPATH="$CACHE/llama.cpp-0.3.36/gguf-py" "$PY" - "$DIR/smol.imatrix.gguf" "$SMOL" <<'PY'
import hashlib, json, sys
import numpy as np
import gguf
g = gguf.GGUFReader(sys.argv[1])
t = {x.name: np.array(x.data, dtype=np.float64).reshape(-1) for x in g.tensors}
out = {"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "text": "tests/data/perplexity.txt", "ctx": 256, "chunks": 3,
       "llama_cpp": "llama-cpp-python 0.3.36 sdist", "matrices": {}}
for name in sorted(t):
    if not name.endswith(".in_sum2"):
        continue
    m = name[: -len(".in_sum2")]
    s = t[name]
    out["matrices"][m] = {"count": int(t[m + ".counts"][0]), "sum": float(s.sum()),
                          "top": [int(i) for i in np.argsort(-s)[:4]]}
json.dump(out, open("tests/golden/imatrix.json", "w"), indent=0, sort_keys=True)
print(f"wrote tests/golden/imatrix.json ({len(out['matrices'])} matrices)", file=sys.stderr)
PY

# tests/golden/convert.json and convert-gemma.json: scripts/make-convert-goldens.sh.
scripts/make-convert-goldens.sh
