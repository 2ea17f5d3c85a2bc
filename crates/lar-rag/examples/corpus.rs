//! Writes the test corpus (every file kind) and its questions: `cargo run -p lar-rag --example corpus -- DIR`, then
//! `lar kb add NAME DIR/corpus` and `lar kb eval NAME DIR/questions.jsonl`; and the Spanish one (`DIR/es`,
//! `DIR/preguntas.jsonl`).

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kb-corpus".into());
    let dir = std::path::Path::new(&dir);
    lar_testdata::corpus::write(&dir.join("corpus"))?;
    lar_testdata::corpus_es::write(&dir.join("es"))?;
    let d = dir.display();
    eprintln!("wrote {d}/corpus with {d}/questions.jsonl, and {d}/es with {d}/preguntas.jsonl");
    Ok(())
}
