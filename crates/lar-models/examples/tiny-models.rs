//! Writes the tiny random-weight models (`lar_testdata::tiny_model`, the wider `wide-llama` and its synthetic
//! importance matrix, the codebook-type models `wide-IQ*.gguf`) into a directory, for scripts/make-goldens.py,
//! scripts/make-quantize-goldens.sh and scripts/make-codebook-goldens.sh to run through llama.cpp:
//! `cargo run --release -p lar-models --example tiny-models -- DIR`.

fn main() -> std::io::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir)?;
    for arch in lar_testdata::TINY_ARCHS {
        let path = dir.join(format!("tiny-{arch}.gguf"));
        std::fs::write(&path, lar_testdata::tiny_model(arch))?;
        println!("{}", path.display());
    }
    let path = dir.join("wide-llama.gguf");
    std::fs::write(&path, lar_testdata::wide_model("llama"))?;
    println!("{}", path.display());
    let path = dir.join("wide-llama.imatrix.gguf");
    std::fs::write(&path, lar_testdata::wide_imatrix())?;
    println!("{}", path.display());
    for ty in lar_testdata::codebook::TYPES {
        let path = dir.join(format!("wide-{}.gguf", ty.name()));
        std::fs::write(&path, lar_testdata::wide_codebook_model(ty))?;
        println!("{}", path.display());
    }
    Ok(())
}
