//! What the grammar tests share: Qwen2.5-Coder's tokenizer and its grammar vocabulary (built once per test
//! binary), and random walks under a processor: every token drawn at temperature 1 from random logits (with a
//! pull toward ending, so walks finish once the grammar allows it).
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use lar_engine::sampler::{LogitsProcessor, Sampler};
use lar_grammar::Vocabulary;
use lar_testdata::Rng;
use lar_tokenizer::Tokenizer;
use lar_types::SamplingParams;

/// Qwen's logits rows are longer than its vocabulary: the padding ids must never be drawn.
pub const N_LOGITS: usize = 151_936;

pub fn tokenizer() -> Arc<Tokenizer> {
    static T: OnceLock<Arc<Tokenizer>> = OnceLock::new();
    T.get_or_init(|| {
        let g = lar_formats::Gguf::open(&lar_testdata::model(lar_testdata::QWEN_CODER))
            .expect("run scripts/fetch-models.sh");
        Arc::new(Tokenizer::from_gguf(&g).expect("tokenizer"))
    })
    .clone()
}

pub fn vocab() -> &'static Vocabulary {
    static V: OnceLock<Vocabulary> = OnceLock::new();
    V.get_or_init(|| Vocabulary::new(tokenizer(), N_LOGITS).expect("vocabulary"))
}

/// One random walk under `p` after the tokens of `prefix` were taken: the text (prefix included), and whether it
/// ended (an end-of-generation token) within `max` tokens. A processor failure or a padding id fails the test.
pub fn walk(
    mut p: Box<dyn LogitsProcessor>,
    prefix: &[u32],
    seed: u64,
    max: usize,
) -> (String, bool) {
    for &t in prefix {
        p.accept(t);
    }
    let params = SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed: Some(seed),
        ..SamplingParams::default()
    };
    let mut sampler = Sampler::with_processors(params, vec![p]);
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9) | 1);
    let mut tokens = prefix.to_vec();
    for _ in 0..max {
        let mut logits: Vec<f32> = (0..N_LOGITS)
            .map(|_| (rng.below(8000) as f32) / 1000.0 - 4.0)
            .collect();
        for &t in vocab().eog() {
            logits[t as usize] = 6.0;
        }
        let s = sampler.sample(&mut logits, &tokens);
        assert!(
            sampler.failure().is_none(),
            "seed {seed}: {:?}",
            sampler.failure()
        );
        assert!(
            (s.token as usize) < tokenizer().vocab.len(),
            "a padding id was drawn"
        );
        if vocab().eog().contains(&s.token) {
            return (tokenizer().decode(&tokens, false), true);
        }
        tokens.push(s.token);
    }
    (tokenizer().decode(&tokens, false), false)
}
