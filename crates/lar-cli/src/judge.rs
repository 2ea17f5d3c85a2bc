//! The chat model as a relevance judge for reranking (`lar kb search|eval --rerank MODEL`, `lar ask --rerank`), by
//! query likelihood (UPR, Sachan et al. 2022): shown the passage and asked to write a question about it, how
//! likely the model finds the user's question, token by token. The mean log-probability of the question's tokens
//! is mapped into [0, 1] by `exp`. One prompt per candidate, scored in one forward pass (no generation).

use lar_engine::{EngineHandle, Event, Request};
use lar_types::SamplingParams;

pub struct EngineJudge {
    pub engine: EngineHandle,
}

impl EngineJudge {
    /// `model` loaded as a judge: a context of 2048 (a passage and the question), on `threads`.
    pub fn load(model: &str, threads: usize) -> anyhow::Result<Self> {
        let args = crate::common::EngineArgs {
            ctx: Some(2048),
            threads,
            device: "cpu".into(),
            parallel: 1,
            kv_budget: None,
        };
        Ok(Self {
            engine: args.load(model)?,
        })
    }
}

impl lar_rag::rerank::Judge for EngineJudge {
    fn relevance(
        &mut self,
        question: &str,
        passage: &str,
    ) -> Result<f32, Box<dyn std::error::Error + Send + Sync>> {
        let tok = self.engine.tokenizer();
        let mut prompt = tok.encode(
            &format!("Passage: {passage}\n\nA question this passage answers:"),
            true,
            false,
        );
        let q = tok.encode(&format!(" {}", question.trim()), false, false);
        if q.is_empty() {
            return Ok(0.0);
        }
        let from = prompt.len();
        prompt.extend_from_slice(&q);
        let params = SamplingParams {
            temperature: 0.0,
            max_tokens: 1,
            ..SamplingParams::default()
        };
        let mut req = Request::new(prompt, params);
        req.prompt_logprobs = Some(0);
        let mut stream = self.engine.submit(req)?;
        while let Some(ev) = stream.blocking_next() {
            if let Event::Done(f) = ev {
                if f.reason == lar_types::FinishReason::Error {
                    return Err(f.error.unwrap_or_else(|| "the judge failed".into()).into());
                }
                let scored = f.prompt_logprobs.unwrap_or_default();
                let lps: Vec<f32> = scored
                    .iter()
                    .skip(from)
                    .flatten()
                    .map(|p| p.logprob)
                    .collect();
                if lps.is_empty() {
                    return Ok(0.0);
                }
                let mean = lps.iter().sum::<f32>() / lps.len() as f32;
                return Ok(mean.exp().clamp(0.0, 1.0));
            }
        }
        Err("the judge's stream ended early".into())
    }
}
