"""A tiny GGUF whose tokenizer is a tokenizer.json (tokenizer.huggingface.json): seed for the gguf target, so
fuzzing reaches the tokenizers library's parser. Usage: python hf-json-seed.py OUT.gguf (needs gguf, numpy)."""
import json
import sys

import gguf, numpy as np
tok = {"version":"1.0","truncation":None,"padding":None,"added_tokens":[{"id":3,"content":"<s>","single_word":False,"lstrip":False,"rstrip":False,"normalized":False,"special":True}],
 "normalizer":None,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":False,"trim_offsets":True,"use_regex":True},
 "post_processor":None,"decoder":{"type":"ByteLevel","add_prefix_space":True,"trim_offsets":True,"use_regex":True},
 "model":{"type":"BPE","dropout":None,"unk_token":None,"continuing_subword_prefix":None,"end_of_word_suffix":None,"fuse_unk":False,"byte_fallback":False,"ignore_merges":False,
 "vocab":{"a":0,"b":1,"ab":2,"<s>":3},"merges":[["a","b"]]}}
w = gguf.GGUFWriter(sys.argv[1], "llama")
w.add_string("tokenizer.huggingface.json", json.dumps(tok))
w.add_string("tokenizer.hf.bos_token", "<s>")
w.add_block_count(1)
w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
