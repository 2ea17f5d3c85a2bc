#!/usr/bin/env bash
# What the web UI costs, measured on a release build with SmolLM2-135M Q4_1 (2 threads): the RSS of `lar serve` with
# no page open and with the chat page open and idle in headless Chromium, the chat page's time to first paint, the
# time to first token from the page (click to first text) vs from the API (request to first chunk, the same
# request), and the assets' size. Prints a table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS="${LAR_MODELS:-$HOME/.cache/lar/models}"
scripts/fetch-models.sh > /dev/null
NODE_PATH="$(scripts/browser.sh)"
cargo build --release --quiet -p lar-cli
HOME_DIR="$(mktemp -d)"
trap 'kill "$PID" 2> /dev/null || true; rm -rf "$HOME_DIR"' EXIT
LAR_HOME="$HOME_DIR" target/release/lar import "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" --name smollm2 > /dev/null
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
LAR_HOME="$HOME_DIR" target/release/lar serve --port "$PORT" --model smollm2 --threads 2 2> "$HOME_DIR/serve.log" &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.2; done
NODE_PATH="$NODE_PATH" node bench/ui.cjs "http://127.0.0.1:$PORT" "$PID"
