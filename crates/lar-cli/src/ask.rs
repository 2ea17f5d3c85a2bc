//! `lar ask --kb NAME "question"`: retrieval from a knowledge base, a grounded prompt with numbered sources, the
//! model's answer with [n] citations, then the sources (path plus page, heading, message or event). When
//! nothing relevant is found it says so without running the model. `--json` prints `answer` and `sources`.

use std::io::Write;

use anyhow::Result;
use lar_engine::EngineHandle;
use lar_rag::answer::{AskOptions, answer_from, retrieve};
use lar_rag::search::SearchOptions;
use lar_types::{ChatMessage, Generator, SamplingParams};

use crate::common::EngineArgs;
use crate::kb::FilterArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The knowledge base to answer from.
    #[arg(long)]
    pub kb: String,
    pub question: String,
    /// The chat model (a .gguf file, a model directory or a store name).
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// Chunks to retrieve.
    #[arg(short, default_value_t = 5)]
    pub k: usize,
    /// Most tokens of the answer.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 384)]
    pub max_tokens: usize,
    /// 0 is greedy (the default: answers from sources should not be creative).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Chat template: a built-in name (chatml, gemma, llama3) or a Jinja file; default: the model's own.
    #[arg(long)]
    pub template: Option<String>,
    /// Print one JSON object: answer, sources, cited, grounded.
    #[arg(long)]
    pub json: bool,
    /// Rerank the best candidates by the chat model's judgement of their relevance before answering.
    #[arg(long)]
    pub rerank: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// The engine as the knowledge base sees a chat model.
struct EngineGenerator {
    engine: EngineHandle,
    template: Option<String>,
}

impl Generator for EngineGenerator {
    fn context_tokens(&self) -> usize {
        self.engine.ctx()
    }
    fn count_tokens(&self, text: &str) -> usize {
        self.engine.tokenizer().encode(text, false, false).len()
    }
    fn chat(
        &mut self,
        messages: &[ChatMessage],
        params: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let ids = self
            .engine
            .chat_tokens(messages, self.template.as_deref())?;
        Ok(self
            .engine
            .generate(ids, params.clone(), |p| on_text(p))?
            .text)
    }
}

pub fn main(a: Args) -> Result<()> {
    let params = SamplingParams {
        temperature: a.temperature,
        max_tokens: a.max_tokens,
        seed: a.seed,
        ..SamplingParams::default()
    };
    params.validate().map_err(crate::common::param_error)?;
    let filter = a.filter.filter()?;
    let opts = AskOptions {
        search: SearchOptions {
            k: a.k,
            filter,
            ..Default::default()
        },
        answer_tokens: a.max_tokens,
        params,
        ..Default::default()
    };
    opts.search.validate()?;
    let (_, store, emb) = crate::kb::open(&a.kb, a.engine.threads)?;
    let template = crate::run::template_source(&a.template)?;
    let (sources, mut generator) = if a.rerank {
        // The chat model judges the candidates, then answers.
        let engine = a.engine.load(&a.model)?;
        let mut judge = crate::judge::EngineJudge {
            engine: engine.clone(),
        };
        let hits = lar_rag::rerank::search_reranked(
            store.as_ref(),
            &emb,
            &a.question,
            &opts.search,
            &mut judge,
            lar_rag::rerank::DEFAULT_DEPTH,
        )?;
        let sources = lar_rag::answer::sources_for(&hits, &opts);
        (sources, Some(EngineGenerator { template, engine }))
    } else {
        // Retrieval first: when nothing is relevant the answer is "I don't know" and the chat model is never
        // loaded.
        let sources = retrieve(store.as_ref(), &emb, &a.question, &opts)?;
        let generator = if sources.is_empty() {
            None
        } else {
            Some(EngineGenerator {
                template,
                engine: a.engine.load(&a.model)?,
            })
        };
        (sources, generator)
    };
    // Not streamed: when the model cites nothing, citations are added to the whole answer afterwards.
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message("answering");
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let answer = answer_from(
        generator.as_mut().map(|g| g as &mut dyn Generator),
        &a.question,
        sources,
        &opts,
        &mut |_| true,
    )?;
    spinner.finish_and_clear();
    let json = a.json;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&answer)?)?;
        return Ok(());
    }
    if !answer.grounded {
        writeln!(out, "{}", answer.answer)?;
        return Ok(());
    }
    writeln!(out, "{}\n\nSources:", answer.answer)?;
    for s in &answer.sources {
        let mark = if answer.cited.contains(&s.n) {
            ""
        } else {
            " (not cited)"
        };
        writeln!(out, "[{}] {}{mark}", s.n, s.cite())?;
    }
    if answer.attributed && !answer.cited.is_empty() {
        writeln!(
            out,
            "(the model cited no source; Lar matched its sentences to the sources by their words)"
        )?;
    }
    Ok(())
}
