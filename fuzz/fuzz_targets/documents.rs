//! cargo-fuzz target: any bytes through a knowledge-base connector. The first byte picks the format (text, Markdown,
//! HTML, PDF, DOCX, eml, mbox, ics, WebVTT, SRT), the rest is the file. A connector may refuse a file (an error is
//! fine), never panic or hang; the PDF parser runs in its thread isolation (its panics are caught there).
//! Run: `cd fuzz && cargo fuzz run documents corpus/documents -- -max_total_time=600` (seeds: `fuzz/seed.sh`).
#![no_main]

use lar_rag::connectors::{Format, ReadOptions, parse};
use libfuzzer_sys::fuzz_target;

const FORMATS: [Format; 10] = [
    Format::Text,
    Format::Markdown,
    Format::Html,
    Format::Pdf,
    Format::Docx,
    Format::Eml,
    Format::Mbox,
    Format::Ics,
    Format::Vtt,
    Format::Srt,
];

fuzz_target!(
    init: {
        // libfuzzer-sys makes every panic an abort through its panic hook, but a PDF parser panic is caught by the
        // connector's isolation and reported as an unreadable file, as in a real ingest. The default hook keeps
        // that path working; a panic anywhere else still reaches libfuzzer-sys's catch_unwind and aborts.
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let format = FORMATS[sel as usize % FORMATS.len()];
    let _ = parse("fuzz", format, bytes.to_vec(), &ReadOptions::default());
    }
);
