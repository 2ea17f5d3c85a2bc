//! Scripted models for the server's tests and fuzzing: a [`Catalog`] whose chat models run the real engine loop
//! on `lar_engine::scripted`'s deterministic backend (every greedy answer is `scripted::continuation` of its
//! prompt, known in advance) and whose embedder sums bytes. No files, no weights.
//!
//! Models: `scripted` (chat), `slow` (chat, 20 ms per forward pass), `slowload` (takes 300 ms to load), `long`
//! (chat, loaded with its whole 4 x CTX context by default: room for a grounded prompt), `thinker` (chat, a
//! reasoning model's template: it opens `<think>` for the model, or with `enable_thinking` false writes an empty
//! thinking block, as Qwen3's does), `embed`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lar_engine::engine_core::{CoreConfig, Limits};
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

/// The scripted models (see the module's header); `opens` counts loads.
#[derive(Default)]
pub struct ScriptedCatalog {
    pub opens: AtomicUsize,
}

pub fn core_config(ctx: usize, n_blocks: usize) -> CoreConfig {
    CoreConfig {
        limits: Limits {
            ctx,
            n_vocab: N_VOCAB,
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
        let default = if e.name.starts_with("long:") {
            4 * CTX
        } else {
            CTX
        };
        let ctx = opts.ctx.unwrap_or(default).min(4 * CTX);
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
}
