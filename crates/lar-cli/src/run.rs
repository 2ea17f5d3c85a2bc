//! `lar run MODEL "prompt"`: one chat turn through the model's template (or `--raw` text), streamed to stdout;
//! `--json` prints one object with the text, token counts and speeds instead.

use std::io::Write;

use anyhow::{Context, Result, bail};
use lar_types::{ChatMessage, Role};

use crate::common::{EngineArgs, LoraArgs, SamplingArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A .gguf file or a directory holding one.
    pub model: String,
    /// The prompt; `-` reads standard input.
    pub prompt: Option<String>,
    /// Read the prompt from a file (must be UTF-8).
    #[arg(long, conflicts_with = "prompt")]
    pub prompt_file: Option<std::path::PathBuf>,
    /// System message.
    #[arg(long)]
    pub system: Option<String>,
    /// Feed the prompt as is, without the chat template (control tokens such as `<|im_start|>` in it are parsed).
    #[arg(long)]
    pub raw: bool,
    /// Chat template: a built-in name (chatml, gemma, llama3) or a Jinja file; default: the model's own.
    #[arg(long)]
    pub template: Option<String>,
    /// Print one JSON object: text, prompt_tokens, completion_tokens, prompt_tps, gen_tps.
    #[arg(long)]
    pub json: bool,
    /// Record this generation in the audit log ($LAR_HOME/audit.sqlite; `lar audit` reads it).
    #[arg(long)]
    pub audit: bool,
    /// With --audit: keep the prompt and answer texts, not only their sha256.
    #[arg(long, requires = "audit")]
    pub audit_text: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub lora: LoraArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Reads a template argument: a built-in name stays a name, anything else is a file to read.
pub fn template_source(t: &Option<String>) -> Result<Option<String>> {
    match t {
        None => Ok(None),
        Some(name)
            if lar_tokenizer::template::BUILTIN
                .iter()
                .any(|(n, _)| n == name) =>
        {
            Ok(Some(name.clone()))
        }
        Some(path) => std::fs::read_to_string(path)
            .map(Some)
            .with_context(|| format!("reading template {path}")),
    }
}

fn read_prompt(args: &Args) -> Result<String> {
    let bytes = match (&args.prompt, &args.prompt_file) {
        (_, Some(f)) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        (Some(p), None) if p == "-" => {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                .context("reading standard input")?;
            b
        }
        (Some(p), None) => p.clone().into_bytes(),
        (None, None) => bail!("give a prompt (or --prompt-file, or - for standard input)"),
    };
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "the prompt is not valid UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

pub fn main(args: Args) -> Result<()> {
    let prompt = read_prompt(&args)?;
    let params = args.sampling.params()?;
    let template = template_source(&args.template)?;
    let engine = args.engine.load_checked(&args.model, &args.lora, |file| {
        if args.raw {
            Ok(())
        } else {
            lar_engine::check_chat_template(file, template.as_deref())
        }
    })?;
    let ids = if args.raw {
        // A raw prompt is the model's own format: its control tokens (`<|im_start|>`) are parsed as tokens, as
        // llama.cpp and Ollama do. (Message content in a chat never is: no user can inject them there.)
        engine.tokenizer().encode(&prompt, true, true)
    } else {
        let mut msgs = Vec::new();
        if let Some(s) = &args.system {
            msgs.push(ChatMessage::new(Role::System, s.clone()));
        }
        msgs.push(ChatMessage::new(Role::User, prompt));
        engine.chat_tokens(&msgs, template.as_deref())?
    };
    let json = args.json;
    let audit = args.audit.then(|| {
        (
            engine.tokenizer().decode(&ids, true),
            serde_json::to_value(&params).unwrap_or_default(),
        )
    });
    let mut stdout = std::io::stdout();
    let req = lar_engine::Request {
        lora: args.lora.slot(),
        ..lar_engine::Request::new(ids, params)
    };
    let out = engine.generate_request(req, |piece| {
        if !json {
            // A closed stdout (e.g. `| head`) ends the generation instead of failing.
            return stdout
                .write_all(piece.as_bytes())
                .and_then(|_| stdout.flush())
                .is_ok();
        }
        true
    })?;
    if let Some((prompt, params)) = audit {
        let home = lar_store::default_home();
        let path = crate::common::model_path(&args.model)?;
        let sha = lar_lab::runs::RunStore::open_home(&home)
            .and_then(|s| lar_lab::digest::file_sha256(&s, &path))
            .ok();
        let r = lar_lab::audit::Record {
            source: "run".into(),
            model: args.model.clone(),
            model_sha256: sha,
            params,
            prompt_tokens: out.stats.prompt_tokens,
            completion_tokens: out.stats.completion_tokens,
            finish: serde_json::to_value(out.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            ..lar_lab::audit::Record::of_texts(&prompt, &out.text, args.audit_text)
        };
        lar_lab::audit::AuditLog::open_home(&home)
            .and_then(|log| log.append(&r))
            .context("writing the audit log")?;
    }
    if json {
        let v = serde_json::json!({
            "text": out.text,
            "finish_reason": out.reason,
            "prompt_tokens": out.stats.prompt_tokens,
            "completion_tokens": out.stats.completion_tokens,
            "prompt_tps": out.stats.prompt_tps(),
            "gen_tps": out.stats.gen_tps(),
        });
        println!("{v}");
    } else {
        println!();
        eprintln!(
            "[{} prompt tokens at {:.1} tok/s, {} generated at {:.1} tok/s, {:?}]",
            out.stats.prompt_tokens,
            out.stats.prompt_tps(),
            out.stats.completion_tokens,
            out.stats.gen_tps(),
            out.reason
        );
    }
    Ok(())
}
