//! `lar finetune BASE TEXT --qat --teacher REF`: quantization-aware repair. The text is cut into `--seq-len`
//! chunks; the teacher (the same model in higher precision) runs over each once and its top `--top-k` next tokens
//! are kept; the adapter is trained on the KL divergence from them. Before and after, the held-out chunks give the
//! student's perplexity and divergence beside the teacher's perplexity: how much of the quantization's gap the
//! adapter closed.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use lar_models::{Model, ThreadPool};
use lar_tokenizer::Tokenizer;
use lar_train::data::Example;
use lar_train::distill::{self, Taught};
use lar_train::{Adapter, Net};

use crate::common::model_path;

/// The teacher, loaded once for the training text and a held-out one.
pub struct Teacher {
    model: Model,
}

impl Teacher {
    /// Loads `name` and checks that it shares `student`'s vocabulary.
    pub fn load(name: &str, student: &Model) -> Result<Self> {
        let src = model_path(name)?;
        let file =
            lar_models::open_model(&src).with_context(|| format!("reading the teacher {name}"))?;
        let model = Model::from_gguf(Arc::new(file))
            .with_context(|| format!("loading the teacher {name}"))?;
        if model.hp.n_vocab != student.hp.n_vocab {
            return Err(anyhow!(
                "the teacher's vocabulary has {} tokens, the model's {}: a teacher must share the tokenizer",
                model.hp.n_vocab,
                student.hp.n_vocab
            ));
        }
        Ok(Self { model })
    }

    /// The teacher's targets for every `seq_len` chunk of `text` (`what` names it in errors; at least
    /// `min_chunks` of them), as training examples, and what it said of each.
    #[allow(clippy::too_many_arguments)]
    pub fn examples(
        &self,
        what: &str,
        tok: &Tokenizer,
        text: &str,
        seq_len: usize,
        top_k: usize,
        min_chunks: usize,
        pool: &ThreadPool,
    ) -> Result<(Vec<Example>, Vec<Taught>)> {
        if top_k == 0 {
            return Err(anyhow!("--top-k must be at least 1"));
        }
        let mut tokens = tok.encode(text, false, false);
        if let Some(b) = tok.vocab.bos
            && tok.vocab.add_bos
        {
            tokens.insert(0, b);
        }
        let chunks = distill::chunks(&tokens, seq_len);
        if chunks.len() < min_chunks {
            return Err(anyhow!(
                "{what} is {} tokens: too short for --qat with --seq-len {seq_len} (at least {min_chunks} chunk{})",
                tokens.len(),
                if min_chunks == 1 { "" } else { "s" }
            ));
        }
        let bar = ProgressBar::new(chunks.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("teacher {bar:30} {pos}/{len} chunks [{elapsed} < {eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let mut taught = Vec::with_capacity(chunks.len());
        for c in &chunks {
            taught.push(distill::teach(&self.model, c, top_k, pool)?);
            bar.inc(1);
        }
        bar.finish_and_clear();
        let examples = chunks
            .iter()
            .zip(&taught)
            .enumerate()
            .map(|(i, (c, t))| distill::example(i, c, t))
            .collect();
        Ok((examples, taught))
    }
}

/// The held-out figures of the student with `ad`: perplexity and mean KL divergence.
pub fn measure(net: &Net, ad: &Adapter, held: &[Example]) -> Result<(f64, f64)> {
    Ok(distill::measure(net, ad, held)?)
}

/// The report of a repair: the line printed and the metrics recorded.
pub fn report(
    before: (f64, f64),
    after: (f64, f64),
    held: &[Example],
    taught: &[Taught],
) -> (String, Vec<(&'static str, f64)>) {
    let held_taught: Vec<&Taught> = held.iter().filter_map(|e| taught.get(e.line - 1)).collect();
    let teacher = distill::teacher_perplexity(&held_taught);
    let closed = (before.0 - after.0) / (before.0 - teacher);
    let line = format!(
        "held-out perplexity {:.3} -> {:.3} (teacher {teacher:.3}: {:.0}% of the gap closed); KL divergence from the \
         teacher {:.4} -> {:.4} ({:.0}% less)",
        before.0,
        after.0,
        closed * 100.0,
        before.1,
        after.1,
        (1.0 - after.1 / before.1) * 100.0
    );
    let metrics = vec![
        ("perplexity_before", before.0),
        ("perplexity_after", after.0),
        ("perplexity_teacher", teacher),
        ("gap_closed", closed),
        ("kld_before", before.1),
        ("kld_after", after.1),
    ];
    (line, metrics)
}
