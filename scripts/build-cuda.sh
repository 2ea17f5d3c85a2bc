#!/usr/bin/env bash
# Builds `lar` with the `cuda` feature (the candle backend on NVIDIA GPUs): target/cuda/release/lar.
# Needs the CUDA toolkit's nvcc. Without one, on Debian 12 it installs nvidia-cuda-toolkit (CUDA 11.8) from the
# non-free component (as root). A GPU is not needed to build: without CUDA_COMPUTE_CAP (nor a GPU for nvidia-smi to
# ask) the kernels are built as PTX for compute capability 8.0, which the driver compiles for newer GPUs (H100
# included) at load; CUDA 12 or newer can target 9.0 directly (CUDA_COMPUTE_CAP=90).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null; then
  if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then
    if ! apt-cache policy nvidia-cuda-toolkit | grep -q Candidate:.*[0-9]; then
      cat > /etc/apt/sources.list.d/lar-nonfree.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
      apt-get update -q
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nvidia-cuda-toolkit
  else
    echo "nvcc not found: install the CUDA toolkit (https://developer.nvidia.com/cuda-downloads)" >&2
    exit 1
  fi
fi
if [ -z "${CUDA_COMPUTE_CAP:-}" ] && ! nvidia-smi >/dev/null 2>&1; then
  export CUDA_COMPUTE_CAP=80
fi
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}" cargo build --release -p lar-cli --features cuda
echo "built ${CARGO_TARGET_DIR:-target/cuda}/release/lar (run with --device cuda)"
