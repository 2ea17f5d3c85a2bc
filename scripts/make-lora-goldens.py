#!/usr/bin/env python3
"""Regenerate tests/golden/lora-{smollm2,qwen}.json: llama.cpp's logits with a LoRA adapter, for
crates/lar-models/tests/lora.rs.

    ~/.cache/lar/venv/bin/python scripts/make-lora-goldens.py

Needs what scripts/make-goldens.py needs (llama-cpp-python 0.3.36 and numpy in that venv, the models fetched by
scripts/fetch-models.sh). For each model it writes the random adapter of `lar_testdata::lora::golden_lora` with
`cargo run --release -p lar-models --example lora-adapter` (PEFT and GGUF forms), loads the GGUF form into
llama.cpp (`lora_path`, scale 1), and records, over the first 256 tokens of make-goldens.py's forced text:
  - adapter_sha256: the GGUF adapter's sha256 (the test checks it wrote the same adapter);
  - forced:         the ids and, at each position, llama.cpp's top-8 (id, logit);
  - noise:          llama.cpp against itself with the adapter (flash attention on vs off), the floor the test
                    holds Lar to.
CI reads these files; it never needs llama.cpp.
"""
import hashlib
import importlib.util
import json
import os
import subprocess
import tempfile

import numpy as np
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
MODELS = os.environ.get("LAR_MODELS", os.path.expanduser("~/.cache/lar/models"))
OUT = os.path.join(ROOT, "tests", "golden")
N = 256

spec = importlib.util.spec_from_file_location("make_goldens", os.path.join(HERE, "make-goldens.py"))
goldens = importlib.util.module_from_spec(spec)
spec.loader.exec_module(goldens)

MODEL_FILES = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
}


def run(path, adapter, flash):
    llm = Llama(model_path=path, lora_path=adapter, n_ctx=512, n_batch=512, n_threads=2, logits_all=True,
                verbose=False, seed=0, flash_attn=flash)
    ids = llm.tokenize(goldens.FORCED_TEXT.encode("utf-8"), add_bos=True, special=True)[:N]
    llm.eval(ids)
    return ids, np.array(llm.scores[: len(ids)], dtype=np.float32)


def main():
    for name, file in MODEL_FILES.items():
        path = os.path.join(MODELS, file)
        d = tempfile.mkdtemp()
        subprocess.run(["cargo", "run", "--release", "-q", "-p", "lar-models", "--example", "lora-adapter", "--",
                        path, d], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        adapter = os.path.join(d, "adapter.gguf")
        with open(adapter, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        ids, scores = run(path, adapter, False)
        _, other = run(path, adapter, True)
        top8 = np.argsort(-scores, axis=1, kind="stable")[:, :8]
        flipped = scores.argmax(1) != other.argmax(1)
        noise = {
            "top1_agreement": float((~flipped).mean()),
            "mean_abs_diff": float(np.abs(np.take_along_axis(scores, top8, 1)
                                          - np.take_along_axis(other, top8, 1)).mean()),
        }
        out = {
            "model": file,
            "adapter_sha256": sha,
            "forced": {"ids": ids, "top8": [goldens.topk(scores[i], 8) for i in range(len(ids))]},
            "noise": noise,
        }
        with open(os.path.join(OUT, f"lora-{name}.json"), "w") as f:
            json.dump(out, f, separators=(",", ":"))
        print(f"wrote lora-{name}.json: noise {noise}")


if __name__ == "__main__":
    main()
