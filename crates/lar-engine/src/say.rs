//! A model that says what it is told, for testing what callers make of exact text: the server's tool-call and
//! thinking parsers see precisely the tokens a real model would send, one character per token, so every split of
//! a marker or a JSON value between tokens is exercised, streamed and not.
//!
//! The script is what the last `<say>...</say>` in the prompt encloses (a user message, or a tool result for the
//! round after a call). The answer is the script continued from the longest part of it that already ends the
//! history, so a template that opens the answer itself (`<think>\n`) is taken as said; once the script is said, or
//! if the history left it, the model ends. A script that starts with what the template's last characters are would
//! be taken as begun: scripts start with a letter or a marker.
//!
//! The vocabulary is SentencePiece-like: the control and added tokens of the families Lar parses (ChatML, Hermes'
//! `<tool_call>`, `<think>`, Llama 3's headers and `<|python_tag|>`, Mistral's `[INST]` and `[TOOL_CALLS]`), one
//! token per printable ASCII character, and byte tokens for everything else.

use lar_tokenizer::Tokenizer;
use lar_tokenizer::vocab::TokenType;

use crate::Result;
use crate::scripted::{EOS, ScriptedBackend};

/// Opens and closes the script.
pub const SAY: u32 = 3;
pub const END_SAY: u32 = 4;

const SPECIALS: &[(&str, TokenType)] = &[
    ("<unk>", TokenType::Unknown),
    ("<s>", TokenType::Control),
    ("</s>", TokenType::Control),
    ("<say>", TokenType::Control),
    ("</say>", TokenType::Control),
    ("<|im_start|>", TokenType::Control),
    ("<|im_end|>", TokenType::Control),
    ("<tool_call>", TokenType::UserDefined),
    ("</tool_call>", TokenType::UserDefined),
    ("<think>", TokenType::UserDefined),
    ("</think>", TokenType::UserDefined),
    ("<|start_header_id|>", TokenType::Control),
    ("<|end_header_id|>", TokenType::Control),
    ("<|eot_id|>", TokenType::Control),
    ("<|python_tag|>", TokenType::Control),
    ("[INST]", TokenType::Control),
    ("[/INST]", TokenType::Control),
    ("[TOOL_CALLS]", TokenType::Control),
];

fn pieces() -> Vec<(String, TokenType)> {
    let mut out: Vec<(String, TokenType)> = SPECIALS
        .iter()
        .map(|&(t, ty)| (t.to_string(), ty))
        .collect();
    out.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), TokenType::Byte)));
    out.push(("\u{2581}".into(), TokenType::Normal));
    out.extend((0x21..0x7fu8).map(|b| ((b as char).to_string(), TokenType::Normal)));
    out
}

/// The size of the vocabulary.
pub fn n_vocab() -> usize {
    pieces().len()
}

/// The vocabulary (see the module's header).
pub fn tokenizer() -> Result<Tokenizer> {
    let (tokens, types): (Vec<String>, Vec<TokenType>) = pieces().into_iter().unzip();
    crate::scripted::spm_tokenizer(tokens, types)
}

/// The token that follows `history` (see the module's header).
pub fn next_token(history: &[u32], _n_vocab: usize) -> u32 {
    let Some(open) = history.iter().rposition(|&t| t == SAY) else {
        return EOS;
    };
    let Some(len) = history[open + 1..].iter().position(|&t| t == END_SAY) else {
        return EOS;
    };
    let script = &history[open + 1..open + 1 + len];
    let tail = &history[open + 2 + len..];
    (0..=tail.len())
        .map(|i| &tail[i..])
        .find(|said| script.starts_with(said))
        .and_then(|said| script.get(said.len()).copied())
        .unwrap_or(EOS)
}

/// A backend of `n_blocks` blocks of `block_size` that says its scripts.
pub fn backend(block_size: usize, n_blocks: usize) -> ScriptedBackend {
    let mut b = ScriptedBackend::new(n_vocab(), block_size, n_blocks);
    b.next = next_token;
    // Certain at any temperature (p of another token ~ 1e-14), so clients' default sampling says the script too.
    b.peak = 40.0;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_the_script_after_the_template_then_ends() {
        let t = tokenizer().unwrap();
        let script = "<think>\nHm.</think>\n\n<tool_call>\n{\"a\": [1, \"é\"]}\n</tool_call>";
        let prompt = format!(
            "<|im_start|>user\n<say>{script}</say><|im_end|>\n<|im_start|>assistant\n<think>\n"
        );
        let mut ids = t.encode(&prompt, false, true);
        let start = ids.len();
        for _ in 0..200 {
            let next = next_token(&ids, n_vocab());
            if next == EOS {
                break;
            }
            ids.push(next);
        }
        // The template's `<think>\n` was taken as said.
        assert_eq!(
            t.decode(&ids[start..], false),
            script.strip_prefix("<think>\n").unwrap()
        );
        // One token per character, markers whole.
        assert!(ids[start..].contains(&t.vocab.id("<tool_call>").unwrap()));
        assert_eq!(t.encode("ab c", false, true).len(), 4);
    }

    #[test]
    fn no_script_or_a_history_that_left_it_ends() {
        let t = tokenizer().unwrap();
        assert_eq!(next_token(&t.encode("plain", false, true), n_vocab()), EOS);
        let ids = t.encode("<say>abc</say>x", false, true);
        // "x" is not how the script begins: the script starts over after it.
        assert_eq!(next_token(&ids, n_vocab()), t.vocab.id("a").unwrap());
        let ids = t.encode("<say>abc</say>abc", false, true);
        assert_eq!(next_token(&ids, n_vocab()), EOS);
    }
}
