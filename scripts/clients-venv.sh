#!/usr/bin/env bash
# The real API clients the server's tests run (openai, ollama, anthropic, langchain-openai, langchain-ollama, numpy so that the
# openai SDK asks for base64 embeddings as it does for most users; jsonschema to validate structured output), pinned,
# in a venv outside the repo.
# Prints the venv's python. ~30 s the first time, instant after.
set -euo pipefail
VENV="${LAR_CLIENTS_VENV:-$HOME/.cache/lar/clients-venv}"
PINS="openai==3.63.0 ollama==0.6.3 langchain-openai==1.8.1 langchain-ollama==1.1.0 numpy==2.4.6 jsonschema==4.26.0 anthropic==2.17.0"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.lar-pins" 2>/dev/null)" != "$PINS" ]; then
  python3 -m venv "$VENV" >&2
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q --disable-pip-version-check $PINS >&2
  echo "$PINS" > "$VENV/.lar-pins"
fi
echo "$VENV/bin/python"
