#!/usr/bin/env bash
# KL divergence, Lar vs llama-perplexity, on the same pair of files and text: SmolLM2's Q4_1 file as the reference,
# its Q8_0 requantization as the candidate, tests/data/perplexity.txt, ctx 256, 6 chunks. llama-perplexity's figures
# are tests/golden/kld.json (scripts/make-eval-goldens.sh); Lar's are measured here with the release build.
#
#   bench/kld.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LAR_CACHE:-$HOME/.cache/lar}"
MODELS="${LAR_MODELS:-$CACHE/models}"
scripts/fetch-models.sh >/dev/null
cargo build --release --quiet -p lar-cli
LAR=${CARGO_TARGET_DIR:-target}/release/lar
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
export LAR_HOME=$D
SMOL=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
"$LAR" quantize "$SMOL" "$D/q8.gguf" --type Q8_0 --allow-requantize --no-record >/dev/null
"$LAR" eval perplexity "$SMOL" tests/data/perplexity.txt --ctx 256 --chunks 6 --save-logits "$D/ref.kld" \
    --no-record >/dev/null
v=$("$LAR" eval perplexity "$D/q8.gguf" tests/data/perplexity.txt --kl-base "$D/ref.kld" --json --no-record)
python3 - "$v" <<'PY'
import json, sys
k = json.loads(sys.argv[1])["kld"]
g = json.load(open("tests/golden/kld.json"))
print("| | llama-perplexity | Lar |")
print("|---|---|---|")
print(f"| mean KLD | {g['kld_mean']:.6f} | {k['kld_mean']:.6f} |")
print(f"| same top token | {g['same_top_percent']:.2f} % | {100 * k['same_top']:.2f} % |")
print(f"| RMS delta-p | {g['delta_p_rms_percent']:.3f} % | {100 * k['delta_p_rms']:.3f} % |")
print(f"| PPL(Q)/PPL(base) | {g['ppl_ratio']:.4f} | {k['ppl_ratio']:.4f} |")
PY
