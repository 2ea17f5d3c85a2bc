#!/usr/bin/env bash
# Build llama.cpp's tools (llama-bench, llama-quantize, llama-tokenize, llama-perplexity, llama-server,
# llama-imatrix) from the llama-cpp-python sdist on PyPI, once, into a cache outside the repo. Used by the benchmark and golden-file scripts; CI never runs it.
#
#   bench/build-llama-cpp.sh     # prints the bin directory on its last line
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
DEST="$CACHE/llama.cpp-$VERSION"
BIN="$DEST/build/bin"
# Not GGML_NATIVE: some Intel VMs report AMX without enabling its tiles, and a native build then dies in ggml's AMX
# matmul (llama-bench segfaults). The x86 levels are picked from what the CPU reports, AVX-512 only where present.
FLAGS="-DGGML_NATIVE=OFF"
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  FLAGS="$FLAGS -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
fi
if grep -qw avx512f /proc/cpuinfo 2>/dev/null && grep -qw avx512bw /proc/cpuinfo; then
  FLAGS="$FLAGS -DGGML_AVX512=ON"
  grep -qw avx512_vnni /proc/cpuinfo && FLAGS="$FLAGS -DGGML_AVX512_VNNI=ON"
fi
if [ -x "$BIN/llama-bench" ] && [ -x "$BIN/llama-quantize" ] && [ -x "$BIN/llama-server" ] && [ -x "$BIN/llama-imatrix" ] && [ "$(cat "$DEST/.flags" 2>/dev/null)" = "$FLAGS" ]; then
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
# shellcheck disable=SC2086
cmake -S "$DEST" -B "$DEST/build" -G Ninja -DCMAKE_BUILD_TYPE=Release $FLAGS -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >/dev/null
cmake --build "$DEST/build" -j2 --target llama-bench llama-quantize llama-tokenize llama-perplexity llama-server llama-imatrix >/dev/null
echo "$FLAGS" > "$DEST/.flags"
echo "$BIN"
