//! Writes the golden tests' random LoRA adapter (`lar_testdata::lora::golden_lora`) for a model, in both forms
//! (PEFT and GGUF), for scripts/make-lora-goldens.py to run through llama.cpp:
//! `cargo run --release -p lar-models --example lora-adapter -- MODEL OUT_DIR`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(model), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: lora-adapter MODEL OUT_DIR".into());
    };
    let file = lar_models::open_model(std::path::Path::new(&model))?;
    let hp = lar_models::Hparams::from_gguf(&file)?;
    let untied = file.tensor("output.weight").is_some();
    let strength = lar_testdata::lora::golden_strength(&hp.arch);
    let adapter = lar_testdata::lora::golden_lora(&hp, untied, strength);
    adapter.write_dir(std::path::Path::new(&out), &hp)?;
    println!("{out}");
    Ok(())
}
