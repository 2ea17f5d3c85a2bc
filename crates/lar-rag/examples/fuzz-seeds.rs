//! Seeds for the `documents` fuzz target: each corpus file and bad-input fixture, prefixed with the selector byte of
//! its format (the order of `fuzz/fuzz_targets/documents.rs`). `cargo run -p lar-rag --example fuzz-seeds -- DIR`

use lar_testdata::fixtures;

fn selector(name: &str) -> u8 {
    let ext = name.rsplit('.').next().unwrap_or("");
    [
        "txt", "md", "html", "pdf", "docx", "eml", "mbox", "ics", "vtt", "srt",
    ]
    .iter()
    .position(|e| *e == ext)
    .unwrap_or(0) as u8
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus/documents".into());
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let mut files = lar_testdata::corpus::files();
    files.push(("encrypted.pdf", fixtures::encrypted_pdf()));
    files.push(("broken.mbox", fixtures::mbox_with_broken_message()));
    files.push((
        "bad-date.ics",
        fixtures::ics_with_invalid_date().into_bytes(),
    ));
    files.push(("voices.vtt", fixtures::vtt_with_voices().into_bytes()));
    files.push(("speakers.srt", fixtures::srt_with_speakers().into_bytes()));
    for (name, bytes) in files {
        let mut seed = vec![selector(name)];
        seed.extend(bytes);
        std::fs::write(dir.join(name), seed)?;
    }
    Ok(())
}
