//! Token ids must equal llama.cpp's on multilingual text (English, Spanish, code, emoji, CJK, runs of spaces and
//! newlines), for both test models: byte-level BPE (SmolLM2) and SentencePiece-style (Gemma 3).
//! Goldens: tests/golden/*.json, made by scripts/make-goldens.py.

use lar_testdata as testdata;
use lar_tokenizer::Tokenizer;

fn check(model_file: &str, golden: &str) {
    let g = lar_formats::open_model(&testdata::model(model_file)).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let json = testdata::golden(golden);
    let cases = json["tokenize"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let t = case["text"].as_str().unwrap();
        let want = testdata::golden_ids(&case["ids"]);
        let got = tok.encode(t, true, true);
        assert_eq!(got, want, "{model_file}: {t:?}");
        // Decoding gives the text back (special tokens excluded, BOS dropped).
        assert_eq!(tok.decode(&got, false), t, "{model_file}: round trip");
    }
    // The greedy prompts too.
    for case in json["greedy"].as_array().unwrap() {
        let t = case["prompt"].as_str().unwrap();
        let want = testdata::golden_ids(&case["prompt_ids"]);
        assert_eq!(tok.encode(t, true, true), want, "{model_file}: {t:?}");
    }
}

#[test]
fn smollm2_bpe_matches_llama_cpp() {
    check(testdata::SMOLLM2, "smollm2.json");
}

#[test]
fn gemma3_spm_matches_llama_cpp() {
    check(testdata::GEMMA3, "gemma3.json");
}

// The same vocabularies as tokenizer.json files (written by transformers' GGUF conversion, run by the `tokenizers`
// library) must give llama.cpp's ids too.

#[test]
fn smollm2_tokenizer_json_matches_llama_cpp() {
    check(testdata::SMOLLM2_HF, "smollm2.json");
}

#[test]
fn gemma3_tokenizer_json_matches_llama_cpp() {
    check(testdata::GEMMA3_HF, "gemma3.json");
}

#[test]
fn control_tokens_are_text_unless_parsed() {
    for model in [testdata::SMOLLM2, testdata::SMOLLM2_HF] {
        let g = lar_formats::open_model(&testdata::model(model)).unwrap();
        let tok = Tokenizer::from_gguf(&g).unwrap();
        let im_start = tok.vocab.id("<|im_start|>").unwrap();
        assert_eq!(
            tok.encode("<|im_start|>user", false, true)[0],
            im_start,
            "{model}"
        );
        let plain = tok.encode("<|im_start|>user", false, false);
        assert!(!plain.contains(&im_start), "{model}");
        assert_eq!(tok.decode(&plain, false), "<|im_start|>user", "{model}");
        assert!(tok.is_eog(tok.vocab.id("<|im_end|>").unwrap()), "{model}");
        // Control tokens print only when asked.
        assert_eq!(tok.decode(&[im_start], false), "", "{model}");
        assert_eq!(tok.decode(&[im_start], true), "<|im_start|>", "{model}");
    }
}
