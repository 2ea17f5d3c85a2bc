#!/usr/bin/env python3
"""LoRA training, Lar and PEFT + PyTorch side by side on the CPU: the same model (SmolLM2-135M-Instruct's Hugging
Face directory, BF16 weights; PyTorch trains it in float32, as PEFT does on a CPU), the same text, rank, alpha,
dropout, targets (all seven projections), sequence length, learning rate and schedule, optimizer steps and threads.
Lar is also run on the same weights quantized to Q4_K_M (QLoRA: the file it would serve), and each Lar run again
with `--activation-memory 4GiB` (every block's activations kept from the forward: no recomputation).

    ~/.cache/lar/torch-venv/bin/python bench/finetune.py [--examples 6] [--epochs 3] [--seq 512] [--threads N]
        [--out DIR]

(The venv of scripts/make-peft-goldens.py: torch, transformers, peft.) Each trainer runs in a process of its own,
one sequence per optimizer step, EPOCHS passes over the EXAMPLES sequences (each trainer shuffles in its own
order, so the loss is compared per epoch: the mean over the same sequences). Peak memory is the process's peak RSS
(GNU time's %M: a child forked from this Python would inherit its high-water mark), speed the tokens run through
the model per second of the training loop (model loading excluded on both sides). Prints a Markdown table with the ratios and writes
results.json and loss.svg (both trainers' loss per step on one chart, drawn by Lar's own chart code) to DIR.

The data: tests/data/perplexity.txt, README.md and ARCHITECTURE.md cut into pieces of SEQ - 16 tokens by the
model's tokenizer, one `{"text": ...}` line each, the first EXAMPLES of them; each trainer adds its BOS/EOS and takes the loss on every token.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODELS = os.environ.get("LAR_MODELS", os.path.expanduser("~/.cache/lar/models"))
HF_DIR = os.path.join(MODELS, "hf", "SmolLM2-135M-Instruct-bf16")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK, ALPHA, DROPOUT, LR = 16, 32, 0.05, 2e-4


def make_data(path, seq, examples):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(HF_DIR)
    text = "\n\n".join(open(os.path.join(ROOT, f), encoding="utf-8").read()
                       for f in ("tests/data/perplexity.txt", "README.md", "ARCHITECTURE.md"))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    n = seq - 16
    with open(path, "w") as f:
        for i in range(0, min(len(ids) - n + 1, examples * n), n):
            f.write(json.dumps({"text": tok.decode(ids[i:i + n])}) + "\n")


def torch_child(cfg):
    """The PEFT + PyTorch trainer (in its own process): prints one JSON line with its losses and speed."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(42)
    tok = AutoTokenizer.from_pretrained(HF_DIR)
    model = AutoModelForCausalLM.from_pretrained(HF_DIR, dtype=torch.float32)
    if cfg["checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules=TARGETS,
                                             task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    lines = [json.loads(l)["text"] for l in open(cfg["data"])]
    order = [i for _ in range(cfg["epochs"]) for i in torch.randperm(len(lines)).tolist()]
    sched = get_cosine_schedule_with_warmup(opt, 0, len(order))
    losses, tokens = [], 0
    t0 = time.time()
    for i in order:
        ids = tok(lines[i], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        x = torch.tensor([ids])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
        tokens += len(ids)
    secs = time.time() - t0
    print(json.dumps({"losses": losses, "tokens": tokens, "seconds": secs}))


def run(cmd, env=None):
    """Runs `cmd` under GNU time; returns (stdout, peak RSS in MiB)."""
    with tempfile.NamedTemporaryFile("r") as t:
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name] + cmd, capture_output=True, env=env,
                           text=True)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
        return p.stdout, int(t.read().split()[-1]) / 1024


def lar_run(lar, base, data, out_dir, a, home, extra=()):
    cmd = [lar, "finetune", base, data, "-o", out_dir, "--epochs", str(a.epochs), "--rank", str(RANK), "--alpha",
           str(ALPHA), "--dropout", str(DROPOUT), "--lr", str(LR), "--schedule", "cosine", "--batch-tokens",
           str(a.seq), "--seq-len", str(a.seq), "--eval-split", "0", "--threads", str(a.threads), "--no-record",
           *extra]
    out, rss = run(cmd, env={**os.environ, "LAR_HOME": home})
    tps = float(re.search(r"([0-9.]+) tokens/s", out).group(1))
    log = json.load(open(os.path.join(out_dir, "training_log.json")))
    losses = [p["loss"] for p in log["train"]]
    return {"tokens_per_s": tps, "peak_mib": rss, "losses": losses}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench-finetune"))
    ap.add_argument("--torch-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_child:
        return torch_child(json.load(open(a.torch_child)))
    os.makedirs(a.out, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "lar-cli"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "lar-lab", "--example", "lines-chart"], cwd=ROOT,
                   check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    lar = os.path.join(target, "release", "lar")
    work = tempfile.mkdtemp()
    data = os.path.join(a.out, "data.jsonl")
    make_data(data, a.seq, a.examples)
    q4 = os.path.join(work, "smollm2-q4_k_m.gguf")
    run([lar, "quantize", HF_DIR, q4, "--type", "Q4_K_M"], env={**os.environ, "LAR_HOME": work})
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"Machine: {cpu}, {a.threads} threads; {a.epochs} epochs of {a.examples} sequences of about {a.seq} "
          f"tokens, one per step; rank {RANK}, all seven projections", flush=True)

    results = {}
    for name, ckpt in [("PEFT + PyTorch (F32)", False), ("PEFT + PyTorch (F32, checkpointing)", True)]:
        cfg = os.path.join(work, "torch.json")
        json.dump({"data": data, "epochs": a.epochs, "threads": a.threads, "checkpointing": ckpt}, open(cfg, "w"))
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false"}
        out, rss = run([sys.executable, os.path.abspath(__file__), "--torch-child", cfg], env=env)
        r = json.loads(out.strip().splitlines()[-1])
        results[name] = {"tokens_per_s": r["tokens"] / r["seconds"], "peak_mib": rss, "losses": r["losses"]}
        print(f"  {name}: {results[name]['tokens_per_s']:.1f} tokens/s, {rss:.0f} MiB", flush=True)
    keep = ["--activation-memory", "4GiB"]
    for i, (name, base, extra) in enumerate([("Lar (BF16)", HF_DIR, []), ("Lar (BF16, activations kept)", HF_DIR, keep),
                                             ("Lar QLoRA (Q4_K_M)", q4, []), ("Lar QLoRA (Q4_K_M, activations kept)", q4, keep)]):
        results[name] = lar_run(lar, base, data, os.path.join(work, f"lar{i}"), a, work, extra)
        print(f"  {name}: {results[name]['tokens_per_s']:.1f} tokens/s, {results[name]['peak_mib']:.0f} MiB",
              flush=True)

    ref = results["PEFT + PyTorch (F32)"]
    print()
    print("| trainer | tokens/s | vs PyTorch | peak RSS MiB | vs PyTorch | mean loss by epoch |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        ls = r["losses"]
        per = len(ls) // a.epochs
        r["epoch_loss"] = [sum(ls[e * per:(e + 1) * per]) / per for e in range(a.epochs)]
        print(f"| {name} | {r['tokens_per_s']:.1f} | {r['tokens_per_s'] / ref['tokens_per_s']:.2f}x | "
              f"{r['peak_mib']:.0f} | {r['peak_mib'] / ref['peak_mib']:.2f}x | "
              f"{' / '.join(f'{x:.3f}' for x in r['epoch_loss'])} |")
    json.dump(results, open(os.path.join(a.out, "results.json"), "w"), indent=1)
    chart = {"title": f"LoRA training loss, SmolLM2-135M ({a.seq}-token sequences)", "x": "step",
             "y": "loss (nats/token)",
             "series": [{"name": n, "points": [[i + 1, l] for i, l in enumerate(r["losses"])]}
                        for n, r in results.items()]}
    json.dump(chart, open(os.path.join(work, "chart.json"), "w"))
    subprocess.run([os.path.join(target, "release", "examples", "lines-chart"), os.path.join(work, "chart.json"),
                    os.path.join(a.out, "loss.svg")], check=True, stdout=subprocess.DEVNULL)
    print(f"\nwrote {a.out}/results.json and {a.out}/loss.svg")


if __name__ == "__main__":
    main()
