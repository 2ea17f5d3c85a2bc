//! Hostile LoRA adapters: the seeds of the LoRA fuzz target (both forms, for `lar_testdata::lora::small_llama`)
//! mutated thousands of times (bytes flipped, cut, repeated, JSON values swapped) and read back. Each must come
//! back as an adapter whose pairs have the sizes their shapes say, or an error: never a panic. (`fuzz/` runs the
//! same readers under cargo-fuzz for longer.)

use std::path::Path;

use lar_models::Gguf;
use lar_models::lora_files::LoraAdapter;
use lar_testdata::{Rng, lora};

fn check(a: &LoraAdapter) {
    for p in a.tensors.values() {
        assert_eq!(p.a.len(), p.rank * p.n_in);
        assert_eq!(p.b.len(), p.n_out * p.rank);
    }
}

/// One random change: a flipped byte, a cut, a repeated run, or a byte set to an edge value.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        data.push(0);
        return;
    }
    let at = rng.below(data.len());
    match rng.below(4) {
        0 => data[at] ^= 1 << rng.below(8),
        1 => data.truncate(at),
        2 => {
            let end = (at + 1 + rng.below(16)).min(data.len());
            let run = data[at..end].to_vec();
            data.splice(at..at, run);
        }
        _ => data[at] = [0, 0xff, b'"', b'9', b'-'][rng.below(5)],
    }
}

#[test]
fn mutated_adapters_are_read_or_refused_never_a_panic() {
    let hp = lora::small_llama();
    let adapter = lora::random_lora(&hp, 2, 8.0, &["attn_q", "attn_k", "ffn_down"], true, 5, 0.1);
    let gguf = adapter.gguf_bytes(&hp).unwrap();
    let (config, weights) = adapter.peft_bytes(&hp).unwrap();
    // The seeds themselves read back.
    check(
        &LoraAdapter::from_gguf(
            &Gguf::from_bytes(gguf.clone()).unwrap(),
            &hp,
            Path::new("x"),
        )
        .unwrap(),
    );
    check(&LoraAdapter::from_peft(&config, &weights, &hp, Path::new("x")).unwrap());
    let mut rng = Rng(0x5eed);
    let (mut read, mut refused) = (0, 0);
    for i in 0..6000 {
        let (mut c, mut w, mut g) = (config.clone(), weights.clone(), gguf.clone());
        for _ in 0..1 + rng.below(3) {
            match i % 3 {
                0 => mutate(&mut rng, &mut g),
                1 => mutate(&mut rng, &mut c),
                _ => mutate(&mut rng, &mut w),
            }
        }
        let got = if i % 3 == 0 {
            match Gguf::from_bytes(g) {
                Ok(g) => LoraAdapter::from_gguf(&g, &hp, Path::new("x")),
                Err(_) => {
                    refused += 1;
                    continue;
                }
            }
        } else {
            LoraAdapter::from_peft(&c, &w, &hp, Path::new("x"))
        };
        match got {
            Ok(a) => {
                check(&a);
                read += 1;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
        }
    }
    // Both outcomes happen: the mutations reach past the first check.
    assert!(
        read > 100 && refused > 100,
        "read {read}, refused {refused}"
    );
}
