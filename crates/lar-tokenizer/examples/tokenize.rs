//! Prints the token ids of a text file under a model's tokenizer (a GGUF file or a Hugging Face directory), one
//! per line, as `llama-tokenize --ids` does, to compare tokenizers: `cargo run --release -p lar-tokenizer
//! --example tokenize -- MODEL FILE`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (model, file) = match (args.next(), args.next()) {
        (Some(m), Some(f)) => (m, f),
        _ => return Err("usage: tokenize MODEL FILE".into()),
    };
    let g = lar_formats::open_model(std::path::Path::new(&model))?;
    let t = lar_tokenizer::Tokenizer::from_gguf(&g)?;
    let text = std::fs::read_to_string(file)?;
    for id in t.encode(&text, true, false) {
        println!("{id}");
    }
    Ok(())
}
