#!/usr/bin/env python3
"""Embedding throughput: Lar's `lar embed` against sentence-transformers on the same model, texts and threads.

    ~/.cache/lar/st-venv/bin/python bench/embed.py [N_TEXTS] [THREADS]

Texts are chunk-sized (~100-200 tokens). sentence-transformers: `encode(batch_size=32)` with torch limited to
THREADS, timed after a warm-up. Lar: `lar embed` over stdin, timed as a whole minus the same command on one text
(model load). Prints chunks/s for both, best of 3, and the ratio.
"""
import os
import random
import subprocess
import sys
import time
from pathlib import Path

N = int(sys.argv[1]) if len(sys.argv) > 1 else 512
THREADS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
ROOT = Path(__file__).resolve().parent.parent
MODEL = Path(os.environ.get("LAR_MODELS", Path.home() / ".cache/lar/models")) / "all-MiniLM-L6-v2"
LAR = ROOT / "target/release/lar"

WORDS = ("the contract renewal meeting budget invoice quarterly report calendar agenda project deadline review "
         "equipo reunión factura presupuesto contrato calendario informe revisión plazo proyecto").split()
rng = random.Random(7)
texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(80, 160))) for _ in range(N)]

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

torch.set_num_threads(THREADS)
st = SentenceTransformer(str(MODEL), device="cpu")
st.encode(texts[:32], batch_size=32)
st_best = min(
    (lambda t0: (st.encode(texts, batch_size=32), time.perf_counter() - t0)[1])(time.perf_counter())
    for _ in range(3)
)


def lar(inp):
    t0 = time.perf_counter()
    subprocess.run([LAR, "embed", MODEL, "--threads", str(THREADS)], input=inp.encode(), check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


load = min(lar(texts[0] + "\n") for _ in range(3))
lar_best = min(lar("\n".join(texts) + "\n") for _ in range(3)) - load
print(f"| texts | threads | sentence-transformers chunks/s | Lar chunks/s | Lar / ST |")
print(f"|---:|---:|---:|---:|---:|")
print(f"| {N} | {THREADS} | {N / st_best:.1f} | {N / lar_best:.1f} | {st_best / lar_best:.2f}x |")
