#!/usr/bin/env bash
# Seed corpora. gguf: the first 64 KiB and 2 MiB of the test models (headers with real metadata), tiny models.
# safetensors: the first 64 KiB of the Hugging Face test directory's shards (whole headers).
set -euo pipefail
cd "$(dirname "$0")"
M="${LAR_MODELS:-$HOME/.cache/lar/models}"
mkdir -p corpus/gguf
head -c 65536 "$M/SmolLM2-135M-Instruct.Q4_1.gguf" > corpus/gguf/smollm2-64k
head -c 2097152 "$M/SmolLM2-135M-Instruct.Q4_1.gguf" > corpus/gguf/smollm2-2m
head -c 65536 "$M/gemma-3-270m-q4_k_m.gguf" > corpus/gguf/gemma3-64k
# Whole small models of every architecture (our GGUF writer's tiny random-weight models).
(cd .. && cargo run --release -q -p lar-models --example tiny-models -- fuzz/corpus/gguf >/dev/null)
mkdir -p corpus/safetensors
for f in "$M"/hf/*/*.safetensors; do head -c 65536 "$f" > "corpus/safetensors/$(basename "$(dirname "$f")")-$(basename "$f")"; done
# A GGUF carrying a tokenizer.json, so the fuzzer reaches the tokenizers library (the tools venv has gguf).
PYT="${LAR_PYTOOLS:-$HOME/.cache/lar/pytools}/bin/python"
[ -x "$PYT" ] && "$PYT" hf-json-seed.py corpus/gguf/hf-json-seed.gguf
# Knowledge-base documents: every corpus file (and the bad-input fixtures) behind its format's selector byte.
(cd .. && cargo run --release -q -p lar-rag --example fuzz-seeds -- fuzz/corpus/documents)
# LoRA adapters for the lora target's small Llama base, in both forms behind their selector byte (0: GGUF, 1: PEFT's
# config, 0xFF, its safetensors).
(cd .. && cargo run --release -q -p lar-testdata --example lora-seeds -- fuzz/corpus/lora)
