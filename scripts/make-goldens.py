#!/usr/bin/env python3
"""Regenerate the golden files in tests/golden/ from llama.cpp (through the llama-cpp-python package).

    ~/.cache/lar/venv/bin/python scripts/make-goldens.py

Needs `pip install llama-cpp-python==0.3.36 numpy` in that venv (it compiles llama.cpp, a few minutes) and the
models fetched by scripts/fetch-models.sh. For each model it writes tests/golden/<model>.json with:
  - tokenize: token ids of multilingual texts (llama.cpp's tokenizer, special tokens parsed, BOS as the model adds it);
  - greedy:   for 5 prompts, 64 greedily generated tokens and, at each step, llama.cpp's top-2 (id, logit);
  - forced:   a 512-token text run teacher-forced: at each position llama.cpp's top-8 (id, logit);
  - noise:    llama.cpp against itself on that text (flash attention on vs off: the same math rounded differently):
              top-1 agreement, mean |logit diff| over the top-8, and the largest top1-top2 gap at a flipped position.
              This is the floor any non-bit-identical implementation sits on; the tests hold Lar to it.
And for each tiny random-weight model written by `cargo run -p lar-models --example tiny-models` (llama, qwen2,
qwen3, phi3: our own GGUF writer), tests/golden/tiny-<arch>.json with its sha256 and llama.cpp's full logits over
24 positions. With `hf` (also run by default), tests/golden/{smollm2-bf16,gemma3-f16}.json: forced and noise for the
GGUF twins of the Hugging Face directories (scripts/make-hf-models.py MODELS --gguf writes them). CI reads these
files; it never needs llama.cpp.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from llama_cpp import Llama

MODELS = os.environ.get("LAR_MODELS", os.path.expanduser("~/.cache/lar/models"))
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")

TEXTS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "El niño comió piñata y jalapeños en España; ¿qué pasó después? ¡Qué año!",
    "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{:?}\", x);\n}\n",
    "Emoji: 🦀🚀 👍🏽 — naïve café, 日本語のテキスト, Ελληνικά, русский.",
    "Spaces:   three, then\ttab\n\n\nthree newlines,      six spaces   \n  end",
    "Numbers 1234567 and 3.14159, dates 2026-11-21, hex 0xDEADBEEF.",
]

PROMPTS = [
    "The capital of France is",
    "Here is a Python function that reverses a string:\n\ndef",
    "Once upon a time, in a small village by the sea,",
    "Q: What is 12 times 7?\nA:",
    "Las tres ciudades más grandes de España son",
]

FORCED_TEXT = (
    "The history of computing is the story of people trying to make machines do arithmetic faster and with fewer "
    "mistakes. Early mechanical calculators, such as Pascal's adding machine and Leibniz's stepped reckoner, could "
    "add and multiply, but each operation required a person to turn cranks and read dials. In the nineteenth century "
    "Charles Babbage designed the Analytical Engine, a general-purpose machine with a store for numbers and a mill "
    "for operating on them, programmed with punched cards borrowed from the Jacquard loom. Ada Lovelace wrote notes "
    "on the engine that included what many consider the first published algorithm intended for a machine. The "
    "engine was never completed, but its ideas returned a century later. During the Second World War, machines such "
    "as Colossus in Britain and ENIAC in the United States used vacuum tubes to compute at electronic speed. After "
    "the war, the stored-program concept, described by John von Neumann and others, made it possible to keep both "
    "instructions and data in the same memory. Transistors replaced vacuum tubes in the late 1950s, integrated "
    "circuits followed in the 1960s, and the microprocessor arrived in 1971. Each step made computers smaller, "
    "cheaper and more reliable. Personal computers reached homes in the late 1970s and 1980s, and the World Wide Web "
    "connected them in the 1990s. Today a phone in a pocket holds more computing power than the machines that guided "
    "the Apollo missions to the Moon, and researchers build models of language that run on hardware people own. "
    "The lesson of this history is that every generation of engineers stood on the work of the one before it, and "
    "that careful measurement, honest records and patient improvement mattered as much as any single invention. "
    "Programming languages tell a similar story. Assembly gave way to Fortran and COBOL, then to C, which let "
    "programmers write portable systems code; later languages added garbage collection, rich type systems and "
    "memory safety without a collector. Operating systems grew from simple monitors that loaded one job at a time "
    "into time-sharing systems such as CTSS and Multics, which let many people use one machine at once, and then "
    "into Unix, whose small tools, plain text files and pipes shaped decades of software. Networks began as "
    "experiments linking a handful of universities; packet switching, TCP/IP and the domain name system let them "
    "grow into a single internet. Storage moved from punched cards and magnetic drums to tape, disks, flash memory "
    "and solid-state drives, each generation holding more data for less money. Databases brought the relational "
    "model, SQL and transactions, so that a bank could record a transfer exactly once even when a machine failed "
    "halfway through. Graphics processors, first built to draw triangles for games, turned out to be excellent at "
    "the large matrix multiplications that neural networks need, and that accident of history shaped the modern "
    "field of machine learning more than almost any theory did."
)

MODEL_FILES = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}


def topk(logits, k):
    idx = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), float(logits[i])] for i in idx]


def tiny():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    d = tempfile.mkdtemp()
    subprocess.run(["cargo", "run", "--release", "-q", "-p", "lar-models", "--example", "tiny-models", "--", d],
                   check=True, cwd=root, stdout=subprocess.DEVNULL)
    ids = [(i * 37 + 11) % 256 for i in range(24)]
    for arch in ["llama", "qwen2", "qwen3", "phi3"]:
        path = os.path.join(d, f"tiny-{arch}.gguf")
        with open(path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        llm = Llama(model_path=path, n_ctx=256, n_batch=256, n_threads=2, logits_all=True, verbose=False)
        llm.eval(ids)
        scores = np.array(llm.scores[: len(ids)], dtype=np.float32)
        out = {"arch": arch, "sha256": sha, "ids": ids, "logits": [[round(float(v), 5) for v in row] for row in scores]}
        with open(os.path.join(OUT, f"tiny-{arch}.json"), "w") as f:
            json.dump(out, f, separators=(",", ":"))
        print(f"wrote tiny-{arch}.json")


def forced(path):
    """Teacher-forced top-8 over FORCED_TEXT, and llama.cpp's own noise floor (flash attention on vs off)."""
    llm = Llama(model_path=path, n_ctx=1024, n_batch=1024, n_threads=2, logits_all=True, verbose=False, seed=0)
    ids = llm.tokenize(FORCED_TEXT.encode("utf-8"), add_bos=True, special=True)[:512]
    llm.eval(ids)
    scores = np.array(llm.scores[: len(ids)], dtype=np.float32)
    fa = Llama(model_path=path, n_ctx=1024, n_batch=1024, n_threads=2, logits_all=True, verbose=False, flash_attn=True)
    fa.eval(ids)
    other = np.array(fa.scores[: len(ids)], dtype=np.float32)
    top8 = np.argsort(-scores, axis=1, kind="stable")[:, :8]
    flipped = scores.argmax(1) != other.argmax(1)
    srt = np.sort(scores, axis=1)
    gaps = (srt[:, -1] - srt[:, -2])[flipped]
    noise = {
        "top1_agreement": float((~flipped).mean()),
        "mean_abs_diff": float(np.abs(np.take_along_axis(scores, top8, 1) - np.take_along_axis(other, top8, 1)).mean()),
        "max_flip_gap": float(gaps.max()) if len(gaps) else 0.0,
    }
    return {"ids": ids, "top8": [topk(scores[i], 8) for i in range(len(ids))]}, noise


# Hugging Face directories written by scripts/make-hf-models.py, and the GGUF of the same rounded weights it
# writes next to each with --gguf: llama.cpp runs the GGUF, Lar the directory.
HF_DIRS = {"smollm2-bf16": "SmolLM2-135M-Instruct-bf16", "gemma3-f16": "gemma-3-270m-f16"}


def hf():
    for name, d in HF_DIRS.items():
        path = os.path.join(MODELS, "hf", d + ".gguf")
        f, noise = forced(path)
        out = {"model": "hf/" + d, "llama_cpp_python": __import__("llama_cpp").__version__, "forced": f, "noise": noise}
        with open(os.path.join(OUT, f"{name}.json"), "w") as fh:
            json.dump(out, fh, separators=(",", ":"))
        print(f"wrote {name}.json: {noise}")


def main():
    os.makedirs(OUT, exist_ok=True)
    if sys.argv[1:] == ["tiny"]:
        tiny()
        return
    if sys.argv[1:] == ["hf"]:
        hf()
        return
    only = sys.argv[1:] or list(MODEL_FILES)
    for name in only:
        path = os.path.join(MODELS, MODEL_FILES[name])
        llm = Llama(model_path=path, n_ctx=1024, n_batch=1024, n_threads=2, logits_all=True, verbose=False, seed=0)
        out = {"model": MODEL_FILES[name], "llama_cpp_python": __import__("llama_cpp").__version__}
        out["tokenize"] = [{"text": t, "ids": llm.tokenize(t.encode("utf-8"), add_bos=True, special=True)} for t in TEXTS]
        greedy = []
        for p in PROMPTS:
            ids = llm.tokenize(p.encode("utf-8"), add_bos=True, special=True)
            llm.reset()
            llm.eval(ids)
            steps = []
            for _ in range(64):
                logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
                top = topk(logits, 2)
                steps.append(top)
                llm.eval([top[0][0]])
            greedy.append({"prompt": p, "prompt_ids": ids, "tokens": [s[0][0] for s in steps], "top2": steps})
        out["greedy"] = greedy
        out["forced"], out["noise"] = forced(path)
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        print(f"wrote {name}.json: {len(ids)} forced tokens")
    if not sys.argv[1:]:
        tiny()
        hf()


if __name__ == "__main__":
    main()
