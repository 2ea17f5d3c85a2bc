#!/usr/bin/env bash
# Build llama.cpp's tools (llama-bench, llama-quantize, llama-tokenize, llama-perplexity) from the llama-cpp-python
# sdist on PyPI, once, into a cache outside the repo. Used by the benchmark and golden-file scripts; CI never runs it.
#
#   bench/build-llama-cpp.sh     # prints the bin directory on its last line
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
DEST="$CACHE/llama.cpp-$VERSION"
BIN="$DEST/build/bin"
if [ -x "$BIN/llama-bench" ] && [ -x "$BIN/llama-quantize" ]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$CACHE"
VENV="$CACHE/venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q cmake ninja scikit-build-core
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$VENV/bin/pip" download -q --no-deps --no-build-isolation --no-binary llama-cpp-python -d "$tmp" "llama-cpp-python==$VERSION"
tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
rm -rf "$DEST"
mv "$tmp"/llama_cpp_python-*/vendor/llama.cpp "$DEST"
export PATH="$VENV/bin:$PATH"
cmake -S "$DEST" -B "$DEST/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >/dev/null
cmake --build "$DEST/build" -j2 --target llama-bench llama-quantize llama-tokenize llama-perplexity >/dev/null
echo "$BIN"
