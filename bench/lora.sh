#!/usr/bin/env bash
# What a LoRA adapter costs at run time, Lar and llama.cpp side by side on the same file, adapter and threads:
# prompt processing (512 random tokens) and generation (64 tokens) with the adapter and without, and the ratio of
# the two for each engine. The adapter is the golden tests' (rank 8 on all seven projections of every block,
# written by `cargo run -p lar-models --example lora-adapter`, GGUF form for both). Lar through `lar bench --lora`;
# llama.cpp through llama-cpp-python (its `lora_path`; llama-bench takes no adapter), timing `eval` alone.
# Needs the venv of scripts/make-goldens.py (llama-cpp-python 0.3.36).
#
#   bench/lora.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
MODELS="${LAR_MODELS:-$CACHE/models}"
PY="${LAR_PYTHON:-$CACHE/venv/bin/python}"
THREADS=${1:-$(nproc)}
scripts/fetch-models.sh >/dev/null
cargo build --release --quiet -p lar-cli
cargo build --release --quiet -p lar-models --example lora-adapter
LAR=${CARGO_TARGET_DIR:-target}/release/lar
EX=${CARGO_TARGET_DIR:-target}/release/examples/lora-adapter
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $THREADS threads"
echo
echo "| model | engine | pp512 t/s bare | pp512 t/s adapter | ratio | tg64 t/s bare | tg64 t/s adapter | ratio |"
echo "|---|---|---|---|---|---|---|---|"
for m in SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf; do
    "$EX" "$MODELS/$m" "$OUT/$m.lora" >/dev/null
    lar_bench() {
        LAR_HOME="$OUT" "$LAR" bench "$MODELS/$m" -p 512 -n 64 -r 3 --threads "$THREADS" --json --no-record "$@"
    }
    bare=$(lar_bench)
    with=$(lar_bench --lora "$OUT/$m.lora/adapter.gguf")
    "$PY" - "$m" "$bare" "$with" <<'PY'
import json, sys
m, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
pp, tg = (a["prompt_tps"], b["prompt_tps"]), (a["gen_tps"], b["gen_tps"])
print(f"| {m} | Lar | {pp[0]:.1f} | {pp[1]:.1f} | {pp[1]/pp[0]:.2f} | {tg[0]:.1f} | {tg[1]:.1f} | {tg[1]/tg[0]:.2f} |")
PY
    "$PY" - "$MODELS/$m" "$OUT/$m.lora/adapter.gguf" "$THREADS" <<'PY'
import random, statistics, sys, time
from llama_cpp import Llama
path, adapter, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])

def speeds(lora):
    llm = Llama(model_path=path, lora_path=lora, n_ctx=1024, n_batch=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    rnd = random.Random(42)
    vocab = llm.n_vocab()
    pp, tg = [], []
    for rep in range(4):
        llm.reset()
        toks = [rnd.randrange(vocab) for _ in range(512)]
        t = time.perf_counter()
        llm.eval(toks)
        pp.append(512 / (time.perf_counter() - t))
        llm.reset()
        llm.eval([rnd.randrange(vocab)])
        t = time.perf_counter()
        for _ in range(64):
            llm.eval([rnd.randrange(vocab)])
        tg.append(64 / (time.perf_counter() - t))
    # The first repetition is the warm-up.
    return statistics.median(pp[1:]), statistics.median(tg[1:])

(pb, tb), (pa, ta) = speeds(None), speeds(adapter)
name = path.rsplit("/", 1)[-1]
print(f"| {name} | llama.cpp | {pb:.1f} | {pa:.1f} | {pa/pb:.2f} | {tb:.1f} | {ta:.1f} | {ta/tb:.2f} |")
PY
done
