#!/usr/bin/env bash
# Every test: fetch the test models (cached under ~/.cache/lar/models), check formatting and lints, run the suite.
# This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Model tests use 2 threads each; running two test threads on 2 cores keeps the suite short without thrashing.
cargo test --workspace -- --test-threads=2
