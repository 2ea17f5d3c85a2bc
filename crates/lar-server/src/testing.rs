//! Scripted models for the server's tests and fuzzing: a [`Catalog`] whose chat models run the real engine loop
//! on `lar_engine::scripted`'s deterministic backend (every greedy answer is `scripted::continuation` of its
//! prompt, known in advance) and whose embedder sums bytes. No files, no weights.
//!
//! Models: `scripted` (chat), `slow` (chat, 20 ms per forward pass), `slowload` (takes 300 ms to load), `long`
//! (chat, loaded with its whole 4 x CTX context by default: room for a grounded prompt), `thinker` (chat, a
//! reasoning model's template: it opens `<think>` for the model, or with `enable_thinking` false writes an empty
//! thinking block, as Qwen3's does), `embed`; and the `say` models (`lar_engine::say`: they answer with the text
//! of the last `<say>...</say>` in the prompt, one character per token; 4 x CTX of context) with the templates of the tool-call
//! families: `say` (Hermes/Qwen `<tool_call>`), `say-llama3` (`<|python_tag|>`), `say-mistral` (`[TOOL_CALLS]`)
//! and `say-thinker` (Qwen3: thinking, then Hermes calls).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lar_engine::engine_core::{CoreConfig, Limits};
use lar_engine::say;
use lar_engine::scripted::{self, ScriptedBackend};

use crate::catalog::{
    Catalog, Kind, LoadOptions, ModelDetails, ModelEntry, Opened, Progress, Runner,
};
use crate::error::ApiError;

pub const N_VOCAB: usize = 64;

/// The `thinker` model's template: ChatML whose assistant turn opens the thinking (DeepSeek-R1's way), or closes it
/// at once when `enable_thinking` is false (Qwen3's way).
pub const THINKER_TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and \
enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}{% endif %}";
pub const CTX: usize = 256;

/// `say`'s template: ChatML, with the tools in a system message and Hermes' call syntax.
pub const SAY_TEMPLATE: &str = "{% if tools %}<|im_start|>system\nYou may call these tools:\n<tools>\n\
{% for t in tools %}{{ t | tojson }}\n{% endfor %}</tools>\nCall one as <tool_call>\n{\"name\": <name>, \
\"arguments\": <object>}\n</tool_call><|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n\
{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// `say-thinker`'s: [`SAY_TEMPLATE`] whose answer opens with thinking, as [`THINKER_TEMPLATE`]'s does.
pub const SAY_THINKER_TEMPLATE: &str = "{% if tools %}<|im_start|>system\n<tools>\n{% for t in tools %}\
{{ t | tojson }}\n{% endfor %}</tools>\nCall one as <tool_call>\n{\"name\": <name>, \"arguments\": <object>}\n\
</tool_call><|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and \
enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}{% endif %}";

/// `say-llama3`'s: Llama 3's headers, the tools and `<|python_tag|>` in the last message.
pub const SAY_LLAMA3_TEMPLATE: &str = "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n\
{% if tools and loop.last %}Call a tool as <|python_tag|>{\"name\": <name>, \"parameters\": <object>}. Tools: \
{% for t in tools %}{{ t | tojson }}{% endfor %}\n\n{% endif %}{{ m.content }}<|eot_id|>{% endfor %}\
{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

/// `say-mistral`'s: `[INST]` turns, the tools in the last, earlier calls after `[TOOL_CALLS]`.
pub const SAY_MISTRAL_TEMPLATE: &str = "{% for m in messages %}{% if m.role == 'assistant' %}\
{% if m.tool_calls %}[TOOL_CALLS]{{ m.tool_calls | tojson }}{% endif %}{{ m.content }}</s>{% else %}[INST] \
{% if tools and loop.last %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}{{ m.content }}\
[/INST]{% endif %}{% endfor %}";

/// The template of a `say` model.
fn say_template(name: &str) -> Option<&'static str> {
    match name.split(':').next()? {
        "say" => Some(SAY_TEMPLATE),
        "say-llama3" => Some(SAY_LLAMA3_TEMPLATE),
        "say-mistral" => Some(SAY_MISTRAL_TEMPLATE),
        "say-thinker" => Some(SAY_THINKER_TEMPLATE),
        _ => None,
    }
}

/// The scripted models (see the module's header); `opens` counts loads; `adapters` are listed as served (the
/// scripted engines load none, so a request naming one is the manager's 404).
#[derive(Default)]
pub struct ScriptedCatalog {
    pub opens: AtomicUsize,
    pub adapters: Vec<crate::catalog::ServedAdapter>,
}

pub fn core_config(ctx: usize, n_blocks: usize) -> CoreConfig {
    CoreConfig {
        limits: Limits {
            ctx,
            n_vocab: N_VOCAB,
            n_loras: 0,
        },
        block_size: 4,
        n_blocks,
        max_batch_tokens: 64,
        max_seqs: 8,
        reserve_per_seq: 1,
        event_buffer: 1024,
        prefix_caching: true,
    }
}

fn entry(name: &str, kind: Kind) -> ModelEntry {
    ModelEntry {
        name: format!("{name}:latest"),
        size: 1000,
        digest: "ab".repeat(32),
        modified: 1_700_000_000,
        kind,
        format: "gguf".into(),
        family: "scripted".into(),
        parameter_size: "1.00M".into(),
        quantization_level: "F32".into(),
        context_length: 4 * CTX,
    }
}

pub struct SumEmbedder;

impl lar_types::Embedder for SumEmbedder {
    fn dim(&self) -> usize {
        3
    }
    fn max_tokens(&self) -> usize {
        8
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
    fn embed(
        &self,
        texts: &[&str],
    ) -> Result<Vec<Vec<f32>>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(texts
            .iter()
            .map(|t| vec![t.len() as f32, t.bytes().map(f32::from).sum(), 0.5])
            .collect())
    }
}

impl Catalog for ScriptedCatalog {
    fn list(&self) -> Result<Vec<ModelEntry>, ApiError> {
        Ok(vec![
            entry("embed", Kind::Embed),
            entry("long", Kind::Chat),
            entry("say", Kind::Chat),
            entry("say-llama3", Kind::Chat),
            entry("say-mistral", Kind::Chat),
            entry("say-thinker", Kind::Chat),
            entry("scripted", Kind::Chat),
            entry("slow", Kind::Chat),
            entry("slowload", Kind::Chat),
            entry("thinker", Kind::Chat),
        ])
    }

    fn entry(&self, name: &str) -> Result<ModelEntry, ApiError> {
        let n = crate::catalog::parse_name(name)?.to_string();
        self.list()?
            .into_iter()
            .find(|e| e.name == n)
            .ok_or_else(|| ApiError::model_not_found(name))
    }

    fn details(&self, name: &str, _verbose: bool) -> Result<ModelDetails, ApiError> {
        self.entry(name)?;
        Ok(ModelDetails {
            template: Some("chatml".into()),
            model_info: [("general.architecture".to_string(), "scripted".into())].into(),
        })
    }

    fn open(&self, name: &str, opts: &LoadOptions) -> Result<Opened, ApiError> {
        let e = self.entry(name)?;
        self.opens.fetch_add(1, Ordering::SeqCst);
        if e.kind == Kind::Embed {
            return Ok(Opened {
                runner: Runner::Embed(Arc::new(SumEmbedder)),
                size: 10,
                ctx: 0,
            });
        }
        // The scripted models' own context is 4 x CTX: a larger ask is capped, as a real model's is.
        let default = if e.name.starts_with("long:") || say_template(&e.name).is_some() {
            4 * CTX
        } else {
            CTX
        };
        let ctx = opts.ctx.unwrap_or(default).min(4 * CTX);
        if let Some(template) = say_template(&e.name) {
            let mut cfg = core_config(ctx, ctx);
            cfg.limits.n_vocab = say::n_vocab();
            let tokenizer = say::tokenizer().map_err(ApiError::from)?;
            let h = scripted::start_with(say::backend(4, ctx), tokenizer, cfg, template)
                .map_err(ApiError::from)?;
            return Ok(Opened {
                runner: Runner::Chat(h),
                size: 1000,
                ctx,
            });
        }
        let mut b = ScriptedBackend::new(N_VOCAB, 4, 4 * ctx / 4);
        if e.name.starts_with("slow:") {
            b.delay = Duration::from_millis(20);
        }
        if e.name.starts_with("slowload:") {
            std::thread::sleep(Duration::from_millis(300));
        }
        let cfg = core_config(ctx, 4 * ctx / 4);
        let h = if e.name.starts_with("thinker:") {
            scripted::start_with_template(b, cfg, THINKER_TEMPLATE)
        } else {
            scripted::start(b, cfg)
        }
        .map_err(ApiError::from)?;
        Ok(Opened {
            runner: Runner::Chat(h),
            size: 1000,
            ctx,
        })
    }

    fn pull(&self, source: &str, _: Option<&str>, _: Progress) -> Result<ModelEntry, ApiError> {
        Err(ApiError::bad_request(format!(
            "no registry here for {source}"
        )))
    }

    fn delete(&self, name: &str) -> Result<(), ApiError> {
        self.entry(name).map(|_| ())
    }

    fn copy(&self, src: &str, _: &str) -> Result<(), ApiError> {
        self.entry(src).map(|_| ())
    }

    fn adapters(&self) -> Vec<crate::catalog::ServedAdapter> {
        self.adapters.clone()
    }
}
