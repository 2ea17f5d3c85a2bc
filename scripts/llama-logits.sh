#!/usr/bin/env bash
# llama.cpp's logits for GGUF models, as goldens: `scripts/llama-logits.sh OUT.json N NAME=PATH...` runs each model
# over the first N of a fixed token sequence ((i·37 + 11) mod 256) through llama-cpp-python's bindings over the
# libllama bench/build-llama-cpp.sh built (the package's Python sources come from its sdist, no second build),
# twice (flash attention off and on), and writes {"ids", "models": {NAME: {sha256, noise_max_abs_diff, logits}}}:
# the logits with flash attention off, rounded to 5 decimals, and how far the two runs differ (llama.cpp against
# itself, the floor a test holds Lar to). Called by scripts/make-quantize-goldens.sh and make-codebook-goldens.sh.
set -euo pipefail
CACHE=${LAR_CACHE:-$HOME/.cache/lar}
BIN=${LLAMA_BIN:-$CACHE/llama.cpp-0.3.36/build/bin}
PY=${PYTHON:-$CACHE/venv/bin/python}
LCP="$CACHE/pytools/llama-cpp-python"
if [ ! -d "$LCP/llama_cpp" ]; then
    DIR=$(mktemp -d)
    trap 'rm -rf "$DIR"' EXIT
    "$PY" -m pip download -q --no-deps --no-binary llama-cpp-python -d "$DIR/sdist" "llama-cpp-python==0.3.36"
    tar -xzf "$DIR"/sdist/llama_cpp_python-*.tar.gz -C "$DIR/sdist"
    mkdir -p "$LCP" && cp -r "$DIR"/sdist/llama_cpp_python-*/llama_cpp "$LCP/"
fi
"$PY" -m pip install -q typing_extensions diskcache jinja2 numpy pyyaml tqdm
LLAMA_CPP_LIB_PATH="$BIN" PYTHONPATH="$LCP" "$PY" - "$@" <<'PY'
import hashlib, json, sys
import numpy as np
from llama_cpp import Llama
dest, n, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ids = [(i * 37 + 11) % 256 for i in range(n)]
out = {"ids": ids, "models": {}}
for m in models:
    name, path = m.split("=", 1)
    runs = []
    for fa in (False, True):
        llm = Llama(model_path=path, n_ctx=64, n_batch=64, n_threads=2, logits_all=True, verbose=False, flash_attn=fa)
        llm.eval(ids)
        runs.append(np.array(llm.scores[: len(ids)], dtype=np.float32))
    # With int8 activations a rounding flip moves a logit by far more than in F32: llama.cpp against itself
    # (flash attention on vs off) is the floor.
    out["models"][name] = {"sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
                           "noise_max_abs_diff": float(np.abs(runs[0] - runs[1]).max()),
                           "logits": [[round(float(v), 5) for v in row] for row in runs[0]]}
json.dump(out, open(dest, "w"), separators=(",", ":"))
print(f"wrote {dest}", file=sys.stderr)
PY
