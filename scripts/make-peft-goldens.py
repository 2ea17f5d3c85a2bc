#!/usr/bin/env python3
"""Regenerate tests/golden/peft-smollm2.json and tests/golden/peft-smollm2-adapter/: PEFT + transformers' logits
with a LoRA adapter on SmolLM2's Hugging Face directory, for crates/lar-models/tests/peft.rs.

    python3 -m venv ~/.cache/lar/torch-venv
    ~/.cache/lar/torch-venv/bin/pip install torch==2.15.0 transformers==5.25.0 peft==0.21.2 safetensors numpy
    ~/.cache/lar/torch-venv/bin/python scripts/make-peft-goldens.py

(PyPI's torch wheel pulls CUDA's libraries, about 3 GB; it runs on the CPU without a GPU.) The models come from
scripts/fetch-models.sh (the BF16 directory that scripts/make-hf-models.py writes). Two adapters, both loaded by
`peft.PeftModel.from_pretrained` onto transformers' model in float32:
  - lar:  the random adapter of `lar_testdata::lora::golden_lora`, written in PEFT's form by Lar itself
          (`cargo run --release -p lar-models --example lora-adapter`): PEFT reads what Lar writes;
  - peft: an adapter PEFT makes and saves (rank 4, rsLoRA, all seven projections of layers 0, 14 and 29 only,
          stored as BF16, random A and B from a fixed torch seed), committed as peft-smollm2-adapter/: Lar reads
          what PEFT writes.
For each it records, over the 256 token ids of tests/golden/lora-smollm2.json, transformers' top-8 (id, logit) at
every position; and the bare model's, so the test can show the adapters move the logits far more than the
tolerance it allows. CI reads these files; it never needs Python.
"""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
MODELS = os.environ.get("LAR_MODELS", os.path.expanduser("~/.cache/lar/models"))
OUT = os.path.join(ROOT, "tests", "golden")
HF_DIR = os.path.join(MODELS, "hf", "SmolLM2-135M-Instruct-bf16")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def base():
    return AutoModelForCausalLM.from_pretrained(HF_DIR, dtype=torch.float32, attn_implementation="eager").eval()


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def top8(scores):
    out = []
    for row in scores:
        idx = np.argsort(-row, kind="stable")[:8]
        out.append([[int(i), float(row[i])] for i in idx])
    return out


def sha256_weights(d):
    """The adapter's identity: its weights file (the config's bytes depend on how serde_json was built)."""
    with open(os.path.join(d, "adapter_model.safetensors"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_peft_adapter(out_dir):
    """PEFT's own adapter: made by get_peft_model, filled from a fixed seed, rounded to BF16, saved by PEFT."""
    torch.manual_seed(1234)
    cfg = LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=TARGETS, layers_to_transform=[0, 14, 29],
                     lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    m = get_peft_model(base(), cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "lora_A" in name:
                p.copy_(torch.randn_like(p) / p.shape[1] ** 0.5)
            elif "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.05)
    m = m.to(torch.bfloat16)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    m.save_pretrained(out_dir)
    # Only the two files a user would download (README.md is PEFT's boilerplate), and the base named as on the Hub
    # rather than by this machine's path.
    for name in os.listdir(out_dir):
        if name not in ("adapter_config.json", "adapter_model.safetensors"):
            os.remove(os.path.join(out_dir, name))
    cfg_path = os.path.join(out_dir, "adapter_config.json")
    cfg = json.load(open(cfg_path))
    cfg["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    cfg["target_modules"] = sorted(cfg["target_modules"])
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    ids = json.load(open(os.path.join(OUT, "lora-smollm2.json")))["forced"]["ids"]
    bare = logits(base(), ids)

    lar_dir = tempfile.mkdtemp()
    subprocess.run(["cargo", "run", "--release", "-q", "-p", "lar-models", "--example", "lora-adapter", "--",
                    HF_DIR, lar_dir], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    os.remove(os.path.join(lar_dir, "adapter.gguf"))
    peft_dir = os.path.join(OUT, "peft-smollm2-adapter")
    make_peft_adapter(peft_dir)

    out = {
        "model": "hf/SmolLM2-135M-Instruct-bf16",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
        "ids": ids,
        "bare": top8(bare),
    }
    for name, d in [("lar", lar_dir), ("peft", peft_dir)]:
        m = PeftModel.from_pretrained(base(), d).eval()
        scores = logits(m, ids)
        flips = float((scores.argmax(1) != bare.argmax(1)).mean())
        print(f"{name}: adapter moves top-1 at {flips:.1%} of positions, "
              f"mean |delta| over top-8 {np.abs(scores - bare).mean():.3f}")
        out[name] = {"adapter_sha256": sha256_weights(d), "top8": top8(scores)}
    with open(os.path.join(OUT, "peft-smollm2.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print("wrote peft-smollm2.json and peft-smollm2-adapter/")


if __name__ == "__main__":
    main()
