//! `lar chat MODEL`: a conversation in the terminal. The history is re-rendered through the chat template each
//! turn. Commands: `/reset`, `/system TEXT`, `/set temperature 0.7` (also top_p, top_k, min_p, seed, max_tokens),
//! `/bye`. Ctrl-C stops the answer being written, not the program; Ctrl-D or `/bye` leaves.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use lar_types::{ChatMessage, Role};
use rustyline::error::ReadlineError;

use crate::common::{EngineArgs, LoraArgs, SamplingArgs};
use crate::run::template_source;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model name, file or directory; default: the starter chat model (qwen2.5-coder, pulled on first use).
    #[arg(default_value = lar_store::resolve::DEFAULT_CHAT)]
    pub model: String,
    #[arg(long)]
    pub system: Option<String>,
    /// Chat template: a built-in name (chatml, gemma, llama3) or a Jinja file; default: the model's own.
    #[arg(long)]
    pub template: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub lora: LoraArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn main(args: Args) -> Result<()> {
    let mut params = args.sampling.params()?;
    let template = template_source(&args.template)?;
    // Fail now, before the weights load, if there is no template; and before the first question if it does not
    // render.
    let engine = args.engine.load_checked(&args.model, &args.lora, |file| {
        lar_engine::check_chat_template(file, template.as_deref())
    })?;
    engine.chat_tokens(&[ChatMessage::new(Role::User, "hi")], template.as_deref())?;
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    }
    let mut history: Vec<ChatMessage> = Vec::new();
    let mut system = args.system.clone();
    let mut rl = rustyline::DefaultEditor::new()?;
    eprintln!(
        "Chatting with {}. /reset, /system TEXT, /set NAME VALUE, /bye; Ctrl-C stops an answer.",
        args.model
    );
    loop {
        let line = match rl.readline(">>> ") {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(line);
        if let Some(cmd) = line.strip_prefix('/') {
            match command(cmd, &mut history, &mut system, &mut params) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => eprintln!("{e}"),
            }
            continue;
        }
        history.push(ChatMessage::new(Role::User, line));
        let mut msgs: Vec<ChatMessage> = system
            .iter()
            .map(|s| ChatMessage::new(Role::System, s.clone()))
            .collect();
        msgs.extend(history.iter().cloned());
        // Keep room for the answer; drop the oldest turns when the conversation outgrows the context.
        let reserve = params.max_tokens.min(engine.ctx() / 2);
        let ids = match engine.chat_tokens_fitting(&msgs, template.as_deref(), reserve) {
            Ok((ids, 0)) => ids,
            Ok((ids, dropped)) => {
                eprintln!(
                    "(the conversation outgrew the context of {}: dropped the {dropped} oldest messages)",
                    engine.ctx()
                );
                history.drain(..dropped);
                ids
            }
            Err(e) => {
                eprintln!("error: {e}");
                history.pop();
                continue;
            }
        };
        interrupted.store(false, Ordering::SeqCst);
        let mut stdout = std::io::stdout();
        let req = lar_engine::Request {
            lora: args.lora.slot(),
            ..lar_engine::Request::new(ids, params.clone())
        };
        let result = engine.generate_request(req, |piece| {
            let _ = stdout
                .write_all(piece.as_bytes())
                .and_then(|_| stdout.flush());
            !interrupted.load(Ordering::SeqCst)
        });
        println!();
        match result {
            Ok(out) => history.push(ChatMessage::new(Role::Assistant, out.text)),
            Err(e) => {
                eprintln!("error: {e}");
                history.pop();
            }
        }
    }
    Ok(())
}

/// Handles a `/command`; true means leave.
fn command(
    cmd: &str,
    history: &mut Vec<ChatMessage>,
    system: &mut Option<String>,
    p: &mut lar_types::SamplingParams,
) -> Result<bool> {
    let (name, rest) = cmd
        .split_once(' ')
        .map_or((cmd, ""), |(a, b)| (a, b.trim()));
    match name {
        "bye" | "exit" | "quit" => return Ok(true),
        "reset" | "clear" => {
            history.clear();
            eprintln!("(history cleared)");
        }
        "system" => {
            *system = if rest.is_empty() {
                None
            } else {
                Some(rest.to_string())
            };
            eprintln!(
                "(system message {})",
                if system.is_some() { "set" } else { "cleared" }
            );
        }
        "set" => {
            let (k, v) = rest
                .split_once(' ')
                .map(|(a, b)| (a, b.trim()))
                .unwrap_or((rest, ""));
            let bad = || anyhow::anyhow!("/set {k}: '{v}' is not a valid value");
            let before = p.clone();
            match k {
                "temperature" => p.temperature = v.parse().map_err(|_| bad())?,
                "top_p" => p.top_p = v.parse().map_err(|_| bad())?,
                "top_k" => p.top_k = v.parse().map_err(|_| bad())?,
                "min_p" => p.min_p = v.parse().map_err(|_| bad())?,
                "seed" => p.seed = Some(v.parse().map_err(|_| bad())?),
                "max_tokens" => p.max_tokens = v.parse().map_err(|_| bad())?,
                "repeat_penalty" => p.repeat_penalty = v.parse().map_err(|_| bad())?,
                _ => bail!(
                    "/set knows temperature, top_p, top_k, min_p, seed, max_tokens, repeat_penalty"
                ),
            }
            // The engine's own ranges, checked now rather than at the next question; a bad value is not kept.
            if let Err(e) = p.validate() {
                *p = before;
                bail!("/set {k}: {e}");
            }
            eprintln!("({k} = {v})");
        }
        _ => bail!("unknown command /{name}: try /reset, /system, /set, /bye"),
    }
    Ok(false)
}
