#!/usr/bin/env python3
"""Write Hugging Face model directories from the test GGUF files, to test Lar's safetensors + tokenizer.json path.

    python scripts/make-hf-models.py MODELS_DIR [--gguf]

No Hugging Face safetensors LLM is reachable from here (only PyPI), so the directories are made from the GGUF test
models by the reference tools themselves, not by Lar:
  - config.json: transformers' own GGUF reading (`load_gguf_checkpoint`), saved by its config class;
  - tokenizer.json: transformers' own GGUF-to-tokenizer conversion (`convert_gguf_tokenizer`), saved by the
    `tokenizers` library; tokenizer_config.json with the chat template and special tokens;
  - weights: dequantized by gguf-py, rounded to BF16 (SmolLM2, two shards + index) or F16 (Gemma 3, one file),
    renamed to the checkpoint names, Q/K un-permuted for Llama and Gemma's norms stored as `w` (not `1 + w`),
    as transformers does when it loads a GGUF.
With --gguf it also writes, next to each directory, a GGUF holding exactly the same rounded values in llama.cpp's
layout, for scripts/make-goldens.py to run llama.cpp on. Pinned versions (scripts/fetch-models.sh installs them):
transformers 5.23.0, tokenizers 0.23.3, gguf 0.19.0, numpy.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGUFReader, GGUFValueType, GGMLQuantizationType
from tokenizers import Tokenizer

import transformers.modeling_gguf_pytorch_utils as gguf_utils
from transformers import AutoConfig
from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

# transformers reads a GGUF's config and tokenizer without torch (torch is only for the tensors, which gguf-py
# dequantizes here), but its entry point checks for torch up front: let it through for return_tensors=False.
gguf_utils.is_torch_available = lambda: True

MODELS = {
    # gguf file -> (directory name, dtype, shards)
    "SmolLM2-135M-Instruct.Q4_1.gguf": ("SmolLM2-135M-Instruct-bf16", "bf16", 2),
    "gemma-3-270m-q4_k_m.gguf": ("gemma-3-270m-f16", "f16", 1),
}

HF_NAMES = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "post_ffw_norm": "post_feedforward_layernorm",
}


def metadata(reader):
    return {name: f.contents() for name, f in reader.fields.items() if not name.startswith("GGUF.")}


def hf_name(arch, name):
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    _, layer, module, suffix = name.split(".")
    if module == "ffn_norm":
        hf = "pre_feedforward_layernorm" if arch == "gemma3" else "post_attention_layernorm"
    elif module == "post_attention_norm":
        hf = "post_attention_layernorm"
    else:
        hf = HF_NAMES[module]
    return f"model.layers.{layer}.{hf}.{suffix}"


def unpermute(w, n_head):
    """Inverse of llama.cpp's convert permute: adjacent-pair rope rows back to rotate-half order."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def round_bf16(x):
    """f32 -> bf16 bits, round to nearest even (what torch does)."""
    b = x.astype(np.float32).view(np.uint32)
    b = b + 0x7FFF + ((b >> 16) & 1)
    return (b >> 16).astype(np.uint16)


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype str, shape, raw bytes)."""
    header, offset = {}, 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for _, _, _, raw in tensors:
            f.write(raw)


def tokenizer_files(meta, arch, parsed, out):
    backend, _ = convert_gguf_tokenizer(arch, parsed["tokenizer"])
    backend.save(os.path.join(out, "tokenizer.json"))
    tokens = meta["tokenizer.ggml.tokens"]
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast"}
    for key, name in [("bos_token_id", "bos_token"), ("eos_token_id", "eos_token"), ("unknown_token_id", "unk_token")]:
        if f"tokenizer.ggml.{key}" in meta:
            cfg[name] = tokens[meta[f"tokenizer.ggml.{key}"]]
    for key in ["add_bos_token", "add_eos_token"]:
        if f"tokenizer.ggml.{key}" in meta:
            cfg[key] = bool(meta[f"tokenizer.ggml.{key}"])
    if "tokenizer.chat_template" in meta:
        cfg["chat_template"] = meta["tokenizer.chat_template"]
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)


def convert(models_dir, gguf_file, dirname, dtype, shards, write_gguf):
    reader = GGUFReader(os.path.join(models_dir, gguf_file))
    meta = metadata(reader)
    arch = meta["general.architecture"]
    out = os.path.join(models_dir, "hf", dirname)
    os.makedirs(out, exist_ok=True)
    parsed = gguf_utils.load_gguf_checkpoint(os.path.join(models_dir, gguf_file), return_tensors=False)
    cfg = dict(parsed["config"])
    cfg.pop("_model_name_or_path", None)
    config = AutoConfig.for_model(**cfg)
    config.architectures = [{"llama": "LlamaForCausalLM", "gemma3": "Gemma3ForCausalLM"}[arch]]
    config.save_pretrained(out)
    tokenizer_files(meta, arch, parsed, out)

    n_head = meta[f"{arch}.attention.head_count"]
    n_head_kv = meta.get(f"{arch}.attention.head_count_kv", n_head)
    st_dtype, np_round = {"bf16": ("BF16", round_bf16), "f16": ("F16", lambda x: x.astype(np.float16))}[dtype]
    gguf_tensors, hf_tensors = [], []
    for t in reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])
        if w.ndim == 1:
            # Norms stay F32, as both converters keep them.
            gguf_tensors.append((t.name, w, GGMLQuantizationType.F32))
            hw = w - 1.0 if arch == "gemma3" and t.name.endswith("norm.weight") else w
            hf_tensors.append((hf_name(arch, t.name), "F32", hw.shape, hw.astype(np.float32).tobytes()))
            continue
        r = np_round(w)
        gguf_tensors.append((t.name, r, GGMLQuantizationType.BF16 if dtype == "bf16" else GGMLQuantizationType.F16))
        if arch == "llama" and t.name.endswith("attn_q.weight"):
            r = unpermute(r, n_head)
        elif arch == "llama" and t.name.endswith("attn_k.weight"):
            r = unpermute(r, n_head_kv)
        hf_tensors.append((hf_name(arch, t.name), st_dtype, r.shape, np.ascontiguousarray(r).tobytes()))

    for f in os.listdir(out):
        if f.endswith(".safetensors") or f.endswith(".index.json"):
            os.remove(os.path.join(out, f))
    if shards == 1:
        write_safetensors(os.path.join(out, "model.safetensors"), hf_tensors)
    else:
        per = -(-len(hf_tensors) // shards)
        weight_map = {}
        for i in range(shards):
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = hf_tensors[i * per:(i + 1) * per]
            write_safetensors(os.path.join(out, fname), part)
            weight_map.update({name: fname for name, *_ in part})
        total = sum(len(raw) for *_, raw in hf_tensors)
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)

    if write_gguf:
        path = os.path.join(models_dir, "hf", dirname + ".gguf")
        w = gguf.GGUFWriter(path, arch)
        for name, field in reader.fields.items():
            if name.startswith("GGUF.") or name == "general.architecture" or name == "general.file_type":
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
            w.add_key_value(name, field.contents(), vtype, sub_type=sub)
        for name, arr, qtype in gguf_tensors:
            w.add_tensor(name, arr, raw_dtype=qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    print(f"wrote {out}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    models_dir = sys.argv[1]
    for gguf_file, (dirname, dtype, shards) in MODELS.items():
        convert(models_dir, gguf_file, dirname, dtype, shards, "--gguf" in sys.argv[2:])


if __name__ == "__main__":
    main()
