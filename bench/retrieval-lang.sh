#!/usr/bin/env bash
# Retrieval quality by language: the Spanish corpus (lar_testdata::corpus_es, 16 questions) and the English one
# (lar_testdata::corpus, 20 questions) in knowledge bases made with `--language none` (folded words only, as before
# stemming) and `--language auto` (the default), all-MiniLM-L6-v2 as the embedder; prints recall@1/@2/@5 and MRR
# as a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS="${LAR_MODELS:-$HOME/.cache/lar/models}"
scripts/fetch-models.sh >/dev/null
cargo build --release --quiet -p lar-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LAR_HOME="$work/home"
cargo run --release --quiet -p lar-rag --example corpus -- "$work" 2>/dev/null
lar=target/release/lar
echo "| corpus | language | recall@1 | recall@2 | recall@5 | MRR@5 |"
echo "|---|---|---:|---:|---:|---:|"
for corpus in es:es:preguntas.jsonl en:corpus:questions.jsonl; do
  IFS=: read -r tag dir questions <<<"$corpus"
  for lang in none auto; do
    name="$tag-$lang"
    $lar kb create "$name" --embedder "$MODELS/all-MiniLM-L6-v2" --language "$lang" >/dev/null 2>&1
    $lar kb add "$name" "$work/$dir" >/dev/null 2>&1
    row="| $tag | $lang |"
    for k in 1 2 5; do
      json=$($lar kb eval "$name" "$work/$questions" -k "$k" --json)
      row="$row $(python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["recall_at_k"])' <<<"$json") |"
      mrr=$(python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["mrr"])' <<<"$json")
    done
    echo "$row $mrr |"
  done
done
