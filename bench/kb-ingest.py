#!/usr/bin/env python3
"""Knowledge-base ingest throughput: `lar kb add` (read, chunk, embed, store) against sentence-transformers embedding
the very same chunk texts (encode only), same model and threads.

    ~/.cache/lar/st-venv/bin/python bench/kb-ingest.py [N_FILES] [THREADS]

The corpus is N_FILES Markdown notes (default 200) of five sections with two paragraphs each, words drawn from the
model's own vocabulary, so chunks are near the 256-token size a real knowledge base gets. Lar's figure is chunks
added / the ingest's own wall time (model load excluded, everything else included); sentence-transformers'
is `encode(batch_size=32)` over the texts Lar embedded (title and heading lines included), best of 3 after a
warm-up. Also prints the SQLite file size per 1k chunks.
"""
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
THREADS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
ROOT = Path(__file__).resolve().parent.parent
MODEL = Path(os.environ.get("LAR_MODELS", Path.home() / ".cache/lar/models")) / "all-MiniLM-L6-v2"
LAR = ROOT / "target/release/lar"

vocab = [w for w in (MODEL / "vocab.txt").read_text().split() if w.isalpha() and len(w) > 3 and w.isascii()]
rng = random.Random(11)
work = Path(tempfile.mkdtemp(prefix="lar-kb-bench-"))
docs = work / "docs"
docs.mkdir()
for i in range(N):
    parts = [f"# Note {i}: {' '.join(rng.choice(vocab) for _ in range(3))}\n"]
    for s in range(5):
        parts.append(f"## Section {s} {rng.choice(vocab)}\n")
        for _ in range(2):
            parts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(60, 110))) + ".\n")
    (docs / f"note{i:04}.md").write_text("\n".join(parts))

env = dict(os.environ, LAR_HOME=str(work / "home"))
subprocess.run([LAR, "kb", "create", "bench", "--embedder", str(MODEL)], env=env, check=True,
               capture_output=True)
out = subprocess.run([LAR, "kb", "add", "bench", str(docs), "--json", "--threads", str(THREADS)], env=env,
                     check=True, capture_output=True, text=True).stdout
report = json.loads(out)
lar_rate = report["chunks_added"] / report["seconds"]

db = sqlite3.connect(work / "home/kb/bench/index.sqlite")
texts = []
for title, loc, text in db.execute("SELECT title, loc, text FROM chunks ORDER BY id"):
    head = ""
    for h in (title, json.loads(loc).get("heading")):
        if h and not text.startswith(h) and h not in head:
            head += h + "\n"
    texts.append(head + text)
size = sum(p.stat().st_size for p in (work / "home/kb/bench").glob("index.sqlite*"))

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

torch.set_num_threads(THREADS)
st = SentenceTransformer(str(MODEL), device="cpu")
st.encode(texts[:32], batch_size=32)
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter()
    st.encode(texts, batch_size=32)
    best = min(best, time.perf_counter() - t0)
st_rate = len(texts) / best
tokens = sum(len(st.tokenizer(t)["input_ids"]) for t in texts) / len(texts)

print(f"{N} files, {len(texts)} chunks (mean {tokens:.0f} tokens), {THREADS} threads")
print(f"| lar kb add (read+chunk+embed+store) | {lar_rate:.1f} chunks/s |")
print(f"| sentence-transformers encode        | {st_rate:.1f} chunks/s |")
print(f"| ratio                               | {lar_rate / st_rate:.2f}x |")
print(f"| SQLite file per 1k chunks           | {size / 1e6 / (len(texts) / 1000):.2f} MB |")
subprocess.run(["rm", "-rf", str(work)])
