//! Writes the test corpus (every file kind) and its questions: `cargo run -p lar-rag --example corpus -- DIR`, then
//! `lar kb add NAME DIR/corpus` and `lar kb eval NAME DIR/questions.jsonl`.

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kb-corpus".into());
    let dir = std::path::Path::new(&dir);
    lar_testdata::corpus::write(&dir.join("corpus"))?;
    eprintln!(
        "wrote {}/corpus and {}/questions.jsonl",
        dir.display(),
        dir.display()
    );
    Ok(())
}
