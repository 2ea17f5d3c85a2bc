#!/usr/bin/env python3
"""Write the synthetic ~1.1B llama-shaped benchmark model (22 layers, 2048 wide, 32 heads, 4 KV heads, FFN 5632,
SmolLM2's tokenizer and vocabulary) with random F16 weights, then quantize it to Q4_K_M with llama-quantize.

    ~/.cache/lar/venv/bin/python bench/make-synthetic-1b.py BIN_DIR_OF_LLAMA_CPP OUT.gguf

Random weights make nonsense text but exactly the memory traffic and arithmetic of a real 1B model, which is what the
benchmark measures. Needs numpy and gguf (pip) and the SmolLM2 file from scripts/fetch-models.sh.
"""
import os
import subprocess
import sys

import numpy as np
import gguf

MODELS = os.environ.get("LAR_MODELS", os.path.expanduser("~/.cache/lar/models"))
N_LAYER, N_EMBD, N_HEAD, N_KV, N_FF, CTX = 22, 2048, 32, 4, 5632, 2048


def main():
    bin_dir, out = sys.argv[1], sys.argv[2]
    if os.path.exists(out):
        print(out)
        return
    src = gguf.GGUFReader(os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    tokens = [bytes(src.fields["tokenizer.ggml.tokens"].parts[i]) for i in src.fields["tokenizer.ggml.tokens"].data]
    types = [int(src.fields["tokenizer.ggml.token_type"].parts[i][0]) for i in src.fields["tokenizer.ggml.token_type"].data]
    merges = [bytes(src.fields["tokenizer.ggml.merges"].parts[i]) for i in src.fields["tokenizer.ggml.merges"].data]
    n_vocab = len(tokens)
    f16 = out + ".f16.gguf"
    w = gguf.GGUFWriter(f16, "llama")
    w.add_name("synthetic-1.1b")
    w.add_block_count(N_LAYER)
    w.add_context_length(CTX)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_file_type(1)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    rng = np.random.default_rng(0)

    def mat(rows, cols, scale=0.02):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * scale).astype(np.float16)

    kv = N_KV * (N_EMBD // N_HEAD)
    w.add_tensor("token_embd.weight", mat(n_vocab, N_EMBD))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.add_tensor("output.weight", mat(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", mat(N_EMBD, N_EMBD))
        w.add_tensor(f"blk.{i}.attn_k.weight", mat(kv, N_EMBD))
        w.add_tensor(f"blk.{i}.attn_v.weight", mat(kv, N_EMBD))
        w.add_tensor(f"blk.{i}.attn_output.weight", mat(N_EMBD, N_EMBD))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", mat(N_FF, N_EMBD))
        w.add_tensor(f"blk.{i}.ffn_up.weight", mat(N_FF, N_EMBD))
        w.add_tensor(f"blk.{i}.ffn_down.weight", mat(N_EMBD, N_FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    subprocess.run([os.path.join(bin_dir, "llama-quantize"), f16, out, "Q4_K_M", "2"], check=True, capture_output=True)
    os.remove(f16)
    print(out)


if __name__ == "__main__":
    main()
