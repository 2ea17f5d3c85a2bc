//! The chat model as a relevance judge for reranking (`lar kb search|eval --rerank MODEL`, `lar ask --rerank`):
//! asked whether a passage helps answer the question, its relevance is the probability it gives "yes" against
//! "no" as its first token (greedy, one token, the top 20 alternatives read).

use lar_engine::{EngineHandle, Event, Request};
use lar_types::{ChatMessage, Role, SamplingParams};

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

const RULES: &str = "You judge whether a passage from the user's documents helps answer their question. Reply \
                     with one word: yes or no.";

impl lar_rag::rerank::Judge for EngineJudge {
    fn relevance(
        &mut self,
        question: &str,
        passage: &str,
    ) -> Result<f32, Box<dyn std::error::Error + Send + Sync>> {
        let msgs = [
            ChatMessage::new(Role::System, RULES.to_string()),
            ChatMessage::new(
                Role::User,
                format!(
                    "Question: {question}\n\nPassage:\n{passage}\n\nDoes the passage help answer the question?"
                ),
            ),
        ];
        let prompt = self.engine.chat_tokens(&msgs, None)?;
        let params = SamplingParams {
            temperature: 0.0,
            max_tokens: 1,
            top_logprobs: 20,
            ..SamplingParams::default()
        };
        let mut stream = self.engine.submit(Request::new(prompt, params))?;
        let tok = self.engine.tokenizer();
        let (mut yes, mut no) = (0f32, 0f32);
        while let Some(ev) = stream.blocking_next() {
            match ev {
                Event::Token(t) => {
                    for a in &t.top_logprobs {
                        match tok.decode(&[a.token], false).trim().to_lowercase().as_str() {
                            "yes" => yes += a.logprob.exp(),
                            "no" => no += a.logprob.exp(),
                            _ => {}
                        }
                    }
                }
                Event::Done(f) if f.reason == lar_types::FinishReason::Error => {
                    return Err(f.error.unwrap_or_else(|| "the judge failed".into()).into());
                }
                Event::Done(_) => {}
            }
        }
        Ok(if yes + no > 0.0 {
            yes / (yes + no)
        } else {
            0.0
        })
    }
}
