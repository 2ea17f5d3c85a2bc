//! cargo-fuzz target: any bytes as a LoRA adapter for a small Llama-shaped base (`lar_testdata::lora::small_llama`), in either form: the first byte
//! picks llama.cpp's GGUF (the rest is the file) or PEFT's (the rest split at the first 0xFF byte into
//! `adapter_config.json` and `adapter_model.safetensors`). Every input must come back as an adapter that fits the
//! base, or an error. Run: `cd fuzz && cargo fuzz run lora corpus/lora -- -max_total_time=600` (seed corpus:
//! `fuzz/seed.sh`).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use lar_models::lora_files::LoraAdapter;
use lar_models::{Gguf, Hparams};
use libfuzzer_sys::fuzz_target;

fn base() -> &'static Hparams {
    static HP: OnceLock<Hparams> = OnceLock::new();
    HP.get_or_init(lar_testdata::lora::small_llama)
}

fuzz_target!(|data: &[u8]| {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let hp = base();
    let got = if form & 1 == 0 {
        match Gguf::from_bytes(rest.to_vec()) {
            Ok(g) => LoraAdapter::from_gguf(&g, hp, Path::new("fuzz.gguf")),
            Err(_) => return,
        }
    } else {
        let cut = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
        let (config, weights) = (&rest[..cut], rest.get(cut + 1..).unwrap_or(&[]));
        LoraAdapter::from_peft(config, weights, hp, Path::new("fuzz"))
    };
    if let Ok(a) = got {
        for p in a.tensors.values() {
            assert_eq!(p.a.len(), p.rank * p.n_in);
            assert_eq!(p.b.len(), p.n_out * p.rank);
        }
    }
});
