//! Writes the seed corpus of the LoRA fuzz target (fuzz/fuzz_targets/lora.rs) into a directory: adapters for
//! `lar_testdata::lora::small_llama` in both forms, behind the target's selector byte (0: a GGUF adapter; 1: PEFT's
//! `adapter_config.json`, a 0xFF byte, its `adapter_model.safetensors`).
//! `cargo run --release -p lar-testdata --example lora-seeds -- DIR`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: lora-seeds DIR")?);
    std::fs::create_dir_all(&dir)?;
    let hp = lar_testdata::lora::small_llama();
    for (i, targets) in [
        &["attn_q", "attn_v"][..],
        &["ffn_down"],
        &["attn_k", "attn_output", "ffn_up"],
    ]
    .iter()
    .enumerate()
    {
        let a =
            lar_testdata::lora::random_lora(&hp, 1 + i, 8.0, targets, i == 2, 11 + i as u64, 0.1);
        let mut gguf = vec![0u8];
        gguf.extend(a.gguf_bytes(&hp)?);
        std::fs::write(dir.join(format!("gguf-{i}")), gguf)?;
        let (config, weights) = a.peft_bytes(&hp)?;
        let mut peft = vec![1u8];
        peft.extend(config);
        peft.push(0xff);
        peft.extend(weights);
        std::fs::write(dir.join(format!("peft-{i}")), peft)?;
    }
    println!("{}", dir.display());
    Ok(())
}
