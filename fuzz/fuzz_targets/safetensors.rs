//! cargo-fuzz target: any bytes through the safetensors header parser (every tensor range must come back inside
//! the input, or an error). Run: `cd fuzz && cargo fuzz run safetensors corpus/safetensors -- -max_total_time=600`
//! (seed corpus: `fuzz/seed.sh`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = lar_models::safetensors::parse_header(data, "fuzz") {
        for e in entries {
            assert!(e.start <= e.end && e.end <= data.len());
        }
    }
});
