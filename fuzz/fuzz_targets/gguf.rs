//! cargo-fuzz target: any bytes through the GGUF reader, and what parses through the model and tokenizer loaders.
//! Run: `cd fuzz && cargo fuzz run gguf corpus/gguf -- -max_total_time=600` (seed corpus: `fuzz/seed.sh`).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = lar_models::Gguf::from_bytes(data.to_vec()) {
        let _ = lar_tokenizer::Tokenizer::from_gguf(&g);
        let _ = lar_models::Model::from_gguf(Arc::new(g));
    }
});
