//! LoRA adapters in the two forms people exchange them, read, checked against the base they adapt, and written:
//! - PEFT's directory: `adapter_config.json` (`r`, `lora_alpha`, `target_modules`, ...) and
//!   `adapter_model.safetensors` with tensors `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`
//!   (`[r, in]`) and `...lora_B.weight` (`[out, r]`), in the Hugging Face checkpoint's row order;
//! - llama.cpp's GGUF adapter: `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and tensors
//!   `blk.N.attn_q.weight.lora_a` / `.lora_b` named after the base tensor they adapt, in the GGUF file's row order
//!   (for Llama, Q and K rows permuted to adjacent pairs, as llama.cpp's converter permutes the base).
//!
//! A [`LoraAdapter`] holds the pairs under GGUF names and in its base's row order (pairs for a Llama GGUF,
//! rotate-half for a Hugging Face directory, which Lar runs as is), whichever form it came from, so the same
//! adapter read from either form is the same data; each writer puts the rows in its own form's order. The delta of a pair is `scale * B · A`, `scale = alpha / rank`
//! (1 when no alpha is given, as llama.cpp reads it). Only what Lar applies is accepted: the seven projections of a
//! block and the output matrix, unfused; DoRA, per-module ranks, `fan_in_fan_out`, trained biases and extra saved
//! modules are refused by name rather than dropped. This file knows formats only; the product runs in `lar-models`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};
use crate::gguf_write::GgufWriter;
use crate::hf_export::{permute_rows, unpermute_rows};
use crate::hparams::Hparams;
use crate::safetensors::{floats_to_f32, ggml_type, parse_header};

/// PEFT's file names inside an adapter directory, and the GGUF file Lar writes beside them.
pub const PEFT_CONFIG: &str = "adapter_config.json";
pub const PEFT_WEIGHTS: &str = "adapter_model.safetensors";
pub const GGUF_FILE: &str = "adapter.gguf";

/// Largest rank accepted (PEFT's own examples stay at or below 256).
pub const MAX_RANK: usize = 1024;

/// The modules a LoRA may adapt: PEFT's module name and the GGUF name of the block tensor.
pub const TARGETS: [(&str, &str); 7] = [
    ("q_proj", "attn_q"),
    ("k_proj", "attn_k"),
    ("v_proj", "attn_v"),
    ("o_proj", "attn_output"),
    ("gate_proj", "ffn_gate"),
    ("up_proj", "ffn_up"),
    ("down_proj", "ffn_down"),
];

/// One adapted matrix: `A` is `[rank, n_in]`, `B` is `[n_out, rank]`, both row-major f32.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraPair {
    pub rank: usize,
    pub n_in: usize,
    pub n_out: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// A LoRA adapter: its base's architecture, alpha, and its pairs by the GGUF name of the base tensor
/// (`blk.3.attn_q.weight`, `output.weight`), rows in the base's order.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraAdapter {
    pub arch: String,
    /// `None`: the delta is `B · A` unscaled (a GGUF adapter without `adapter.lora.alpha`).
    pub alpha: Option<f32>,
    pub tensors: BTreeMap<String, LoraPair>,
    /// What the adapter says it was trained on (PEFT's `base_model_name_or_path`), shown, never resolved.
    pub base_model: Option<String>,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("LoRA adapter {}: {msg}", path.display()))
}

/// The `[n_out, n_in]` of a base tensor a LoRA may adapt, or why it cannot be.
pub fn target_shape(hp: &Hparams, name: &str) -> std::result::Result<(usize, usize), String> {
    if name == "output.weight" {
        return Ok((hp.n_vocab, hp.n_embd));
    }
    let parsed = name
        .strip_prefix("blk.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(l, r)| Some((l.parse::<usize>().ok()?, r.strip_suffix(".weight")?)));
    let Some((layer, module)) = parsed else {
        return Err(format!(
            "'{name}' is not a matrix Lar adapts (the blocks' projections and output.weight)"
        ));
    };
    if layer >= hp.n_layers {
        return Err(format!(
            "'{name}' is beyond the base's {} layers",
            hp.n_layers
        ));
    }
    let (d, qd, kvd, ff) = (hp.n_embd, hp.n_head * hp.head_dim, hp.kv_dim(), hp.n_ff);
    let fused = |what: &str| {
        Err(format!(
            "'{name}': this {} base keeps {what} in one fused matrix, which Lar does not adapt yet",
            hp.arch
        ))
    };
    match module {
        "attn_q" | "attn_k" | "attn_v" if hp.fused_qkv => fused("Q, K and V"),
        "ffn_gate" | "ffn_up" if hp.fused_gate_up => fused("gate and up"),
        "attn_q" => Ok((qd, d)),
        "attn_k" | "attn_v" => Ok((kvd, d)),
        "attn_output" => Ok((d, qd)),
        "ffn_gate" | "ffn_up" => Ok((ff, d)),
        "ffn_down" => Ok((d, ff)),
        "token_embd" => Err(format!(
            "'{name}': adapters of the token embedding are not supported yet"
        )),
        _ => Err(format!(
            "'{name}' is not a matrix Lar adapts (the blocks' projections and output.weight)"
        )),
    }
}

/// Whether the base's Q and K rows are in llama.cpp's pair order (a Llama GGUF) rather than a checkpoint's
/// rotate-half order (a Hugging Face directory, which Lar reads as is and rotates NeoX-style).
fn rows_in_pairs(hp: &Hparams) -> bool {
    hp.arch == "llama" && !hp.rope_neox
}

/// The heads the rows of `name` split into when its rows are permuted (Llama's Q and K), else `None`.
fn permuted_heads(arch: &str, hp: &Hparams, name: &str) -> Option<usize> {
    if arch != "llama" {
        return None;
    }
    let module = name.strip_suffix(".weight")?.rsplit('.').next()?;
    match module {
        "attn_q" => Some(hp.n_head),
        "attn_k" => Some(hp.n_head_kv),
        _ => None,
    }
}

impl LoraPair {
    /// `alpha / rank`, or 1 without an alpha.
    pub fn scale(&self, alpha: Option<f32>) -> f32 {
        alpha.map_or(1.0, |a| a / self.rank as f32)
    }
}

impl LoraAdapter {
    /// Reads an adapter: a PEFT directory (or its `adapter_model.safetensors` / `adapter_config.json`), a
    /// directory holding only `adapter.gguf`, or a GGUF adapter file; checks it against the base `hp`.
    pub fn open(path: &Path, hp: &Hparams) -> Result<Self> {
        let io = |cause| Error::Io {
            path: path.to_path_buf(),
            cause,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let adapter = if meta.is_dir() {
            if path.join(PEFT_CONFIG).is_file() {
                Self::read_peft(path, hp)?
            } else if path.join(GGUF_FILE).is_file() {
                Self::read_gguf(&path.join(GGUF_FILE), hp)?
            } else {
                return Err(bad(
                    path,
                    format!("the directory holds neither {PEFT_CONFIG} nor {GGUF_FILE}"),
                ));
            }
        } else {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match (name, path.parent()) {
                (PEFT_CONFIG | PEFT_WEIGHTS, Some(dir)) => Self::read_peft(dir, hp)?,
                _ => Self::read_gguf(path, hp)?,
            }
        };
        Ok(adapter)
    }

    /// Reads a GGUF LoRA adapter as llama.cpp writes it, for the base `hp`.
    pub fn read_gguf(path: &Path, hp: &Hparams) -> Result<Self> {
        Self::from_gguf(&Gguf::open(path)?, hp, path)
    }

    /// [`Self::read_gguf`] of a parsed file (`path` names it in errors).
    pub fn from_gguf(g: &Gguf, hp: &Hparams, path: &Path) -> Result<Self> {
        let kind = g.get("general.type").and_then(Value::as_str).unwrap_or("");
        if kind != "adapter" {
            return Err(bad(
                path,
                format!("general.type is '{kind}', not 'adapter': this is a model, not an adapter"),
            ));
        }
        let ty = g.get("adapter.type").and_then(Value::as_str).unwrap_or("");
        if ty != "lora" {
            return Err(bad(path, format!("adapter.type is '{ty}', not 'lora'")));
        }
        let arch = g.get_str("general.architecture")?.to_string();
        let alpha = match g.get("adapter.lora.alpha").and_then(Value::as_f64) {
            Some(a) if a != 0.0 => Some(a as f32),
            _ => None,
        };
        let mut halves = Halves::new();
        for t in &g.tensors {
            let (base, which) = if let Some(b) = t.name.strip_suffix(".lora_a") {
                (b, 0)
            } else if let Some(b) = t.name.strip_suffix(".lora_b") {
                (b, 1)
            } else {
                return Err(bad(
                    path,
                    format!("tensor '{}' is neither a lora_a nor a lora_b", t.name),
                ));
            };
            if !matches!(
                t.ty,
                crate::GgmlType::F32 | crate::GgmlType::F16 | crate::GgmlType::BF16
            ) || t.dims.len() != 2
            {
                return Err(bad(
                    path,
                    format!(
                        "tensor '{}' is {} {:?}; adapters are F32, F16 or BF16 matrices",
                        t.name,
                        t.ty.name(),
                        t.dims
                    ),
                ));
            }
            let mut v = vec![0f32; t.n_elements()];
            floats_to_f32(t.ty, g.tensor_data(t), &mut v);
            // GGUF order is innermost first: [n_cols, n_rows].
            let shape = vec![t.dims[1], t.dims[0]];
            halves.entry(base.to_string()).or_default()[which] = Some((shape, v));
        }
        let tensors = pairs(path, halves, "lora_a", "lora_b")?;
        let mut adapter = Self {
            arch,
            alpha,
            tensors,
            base_model: g
                .get("general.base_model.0.name")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        adapter.check(path, hp)?;
        // A Llama adapter's Q/K rows are in pair order; a Hugging Face base keeps rotate-half order.
        if !rows_in_pairs(hp) {
            adapter.reorder(hp, unpermute_rows)?;
        }
        Ok(adapter)
    }

    /// Reads a PEFT adapter directory, for the base `hp`.
    pub fn read_peft(dir: &Path, hp: &Hparams) -> Result<Self> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|cause| Error::Io { path: p, cause })
        };
        Self::from_peft(&read(PEFT_CONFIG)?, &read(PEFT_WEIGHTS)?, hp, dir)
    }

    /// [`Self::read_peft`] of the two files' bytes (`dir` names them in errors).
    pub fn from_peft(config: &[u8], bytes: &[u8], hp: &Hparams, dir: &Path) -> Result<Self> {
        let cfg_path = dir.join(PEFT_CONFIG);
        let cfg: Json = serde_json::from_slice(config)
            .map_err(|e| bad(&cfg_path, format!("is not valid JSON: {e}")))?;
        let (alpha, base_model) = peft_config(&cfg_path, &cfg)?;
        let st = dir.join(PEFT_WEIGHTS);
        let what = st.display().to_string();
        let mut halves = Halves::new();
        for e in parse_header(bytes, &what)? {
            let (module, which) = if let Some(m) = e.name.strip_suffix(".lora_A.weight") {
                (m, 0)
            } else if let Some(m) = e.name.strip_suffix(".lora_B.weight") {
                (m, 1)
            } else {
                return Err(bad(
                    &st,
                    format!(
                        "tensor '{}' is not a lora_A or lora_B weight (embedding adapters, biases and saved modules are not supported yet)",
                        e.name
                    ),
                ));
            };
            let module = module.strip_prefix("base_model.model.").unwrap_or(module);
            let gguf =
                crate::hf::tensor_name(&hp.arch, &format!("{module}.weight")).ok_or_else(|| {
                    bad(
                        &st,
                        format!("'{module}' is not a module of a {} model", hp.arch),
                    )
                })?;
            let ty = ggml_type(&e.dtype).ok_or_else(|| {
                bad(
                    &st,
                    format!(
                        "tensor '{}' has dtype {}; adapters are F32, F16 or BF16",
                        e.name, e.dtype
                    ),
                )
            })?;
            if e.shape.len() != 2 {
                return Err(bad(
                    &st,
                    format!("tensor '{}' has shape {:?}, not a matrix", e.name, e.shape),
                ));
            }
            let mut v = vec![0f32; e.shape.iter().product()];
            floats_to_f32(ty, &bytes[e.start..e.end], &mut v);
            halves.entry(gguf).or_default()[which] = Some((e.shape.clone(), v));
        }
        let tensors = pairs(&st, halves, "lora_A", "lora_B")?;
        let mut adapter = Self {
            arch: hp.arch.clone(),
            alpha: Some(alpha),
            tensors,
            base_model,
        };
        adapter.check(&st, hp)?;
        if rows_in_pairs(hp) {
            adapter.reorder(hp, permute_rows)?;
        }
        Ok(adapter)
    }

    /// That the adapter fits the base: the same architecture, every pair a matrix Lar adapts, of its shape.
    pub fn check(&self, path: &Path, hp: &Hparams) -> Result<()> {
        if self.arch != hp.arch {
            return Err(bad(
                path,
                format!(
                    "it adapts a {} model, and this base is {}",
                    self.arch, hp.arch
                ),
            ));
        }
        if self.tensors.is_empty() {
            return Err(bad(path, "it adapts no tensor"));
        }
        if let Some(a) = self.alpha
            && !a.is_finite()
        {
            return Err(bad(path, format!("alpha {a} is not a finite number")));
        }
        for (name, p) in &self.tensors {
            let (out, inp) = target_shape(hp, name).map_err(|m| bad(path, m))?;
            if (p.n_out, p.n_in) != (out, inp) {
                return Err(bad(
                    path,
                    format!(
                        "'{name}' adapts a [{}, {}] matrix, and the base's is [{out}, {inp}] (an adapter for another model?)",
                        p.n_out, p.n_in
                    ),
                ));
            }
            if let Some(bad_v) = p.a.iter().chain(&p.b).find(|v| !v.is_finite()) {
                return Err(bad(path, format!("'{name}' holds {bad_v}")));
            }
        }
        Ok(())
    }

    /// Applies `f` (a row permutation) to the B rows of the tensors whose rows a Llama base permutes.
    fn reorder(
        &mut self,
        hp: &Hparams,
        f: fn(&mut [f32], usize, usize) -> Result<()>,
    ) -> Result<()> {
        for (name, p) in self.tensors.iter_mut() {
            if let Some(heads) = permuted_heads(&self.arch, hp, name) {
                f(&mut p.b, p.rank, heads)?;
            }
        }
        Ok(())
    }

    /// The GGUF adapter's bytes, as llama.cpp reads it (F32 tensors, rows in llama.cpp's order).
    pub fn gguf_bytes(&self, hp: &Hparams) -> Result<Vec<u8>> {
        let mut copy = self.clone();
        if !rows_in_pairs(hp) {
            copy.reorder(hp, permute_rows)?;
        }
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String(self.arch.clone()))
            .add("general.type", Value::String("adapter".into()))
            .add("adapter.type", Value::String("lora".into()));
        if let Some(a) = self.alpha {
            w.add("adapter.lora.alpha", Value::F32(a));
        }
        for (name, p) in &copy.tensors {
            w.add_f32(&format!("{name}.lora_a"), &[p.n_in, p.rank], &p.a);
            w.add_f32(&format!("{name}.lora_b"), &[p.rank, p.n_out], &p.b);
        }
        Ok(w.to_bytes())
    }

    /// PEFT's `adapter_config.json` and `adapter_model.safetensors` bytes (rows in the checkpoint's order).
    pub fn peft_bytes(&self, hp: &Hparams) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut copy = self.clone();
        if rows_in_pairs(hp) {
            copy.reorder(hp, unpermute_rows)?;
        }
        let ranks: std::collections::BTreeSet<usize> =
            copy.tensors.values().map(|p| p.rank).collect();
        let rank = match ranks.iter().collect::<Vec<_>>().as_slice() {
            [r] => **r,
            _ => {
                return Err(Error::Unsupported(format!(
                    "PEFT's format holds one rank per adapter (rank_pattern aside), and this one has {ranks:?}"
                )));
            }
        };
        // PEFT scales by lora_alpha / r; an adapter without alpha is unscaled, so alpha = r.
        let alpha = self.alpha.unwrap_or(rank as f32);
        let mut modules = std::collections::BTreeSet::new();
        let mut named = Vec::new();
        for (name, p) in &copy.tensors {
            let module = peft_module(name)
                .ok_or_else(|| Error::Unsupported(format!("'{name}' has no PEFT module name")))?;
            modules.insert(module.rsplit('.').next().unwrap_or(&module).to_string());
            named.push((
                format!("base_model.model.{module}.lora_A.weight"),
                vec![p.rank, p.n_in],
                p.a.as_slice(),
            ));
            named.push((
                format!("base_model.model.{module}.lora_B.weight"),
                vec![p.n_out, p.rank],
                p.b.as_slice(),
            ));
        }
        // Keys in sorted order: the same bytes whether serde_json sorts them or keeps this order.
        let config = serde_json::json!({
            "alpha_pattern": {},
            "base_model_name_or_path": self.base_model,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "lora_alpha": alpha,
            "lora_dropout": 0.0,
            "modules_to_save": null,
            "peft_type": "LORA",
            "r": rank,
            "rank_pattern": {},
            "target_modules": modules,
            "task_type": "CAUSAL_LM",
            "use_dora": false,
            "use_rslora": false,
        });
        let config = serde_json::to_vec_pretty(&config)
            .map_err(|e| Error::Invalid(format!("adapter config: {e}")))?;
        let weights = crate::safetensors_write::f32_file(&named, &[("format", "pt")]);
        Ok((config, weights))
    }

    /// Writes the adapter into `dir` in both forms (PEFT's two files and `adapter.gguf`). Each file is written
    /// beside its place and renamed over it, so a failure leaves no half-written file.
    pub fn write_dir(&self, dir: &Path, hp: &Hparams) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|cause| Error::Io {
            path: dir.to_path_buf(),
            cause,
        })?;
        let (config, weights) = self.peft_bytes(hp)?;
        let gguf = self.gguf_bytes(hp)?;
        write_atomic(&dir.join(PEFT_WEIGHTS), &weights)?;
        write_atomic(&dir.join(GGUF_FILE), &gguf)?;
        // The config last: a directory with a config is a whole adapter.
        write_atomic(&dir.join(PEFT_CONFIG), &config)
    }

    /// Parameters in all (A and B of every pair).
    pub fn n_params(&self) -> usize {
        self.tensors.values().map(|p| p.a.len() + p.b.len()).sum()
    }
}

/// The files [`LoraAdapter::open`] reads for `path` (what a record of the adapter hashes).
pub fn adapter_files(path: &Path) -> Vec<PathBuf> {
    let dir_files = |d: &Path| {
        if d.join(PEFT_CONFIG).is_file() {
            vec![d.join(PEFT_CONFIG), d.join(PEFT_WEIGHTS)]
        } else {
            vec![d.join(GGUF_FILE)]
        }
    };
    if path.is_dir() {
        return dir_files(path);
    }
    match (path.file_name().and_then(|n| n.to_str()), path.parent()) {
        (Some(PEFT_CONFIG | PEFT_WEIGHTS), Some(d)) => dir_files(d),
        _ => vec![path.to_path_buf()],
    }
}

/// PEFT's module path of a GGUF base tensor name (`blk.3.attn_q.weight` -> `model.layers.3.self_attn.q_proj`).
fn peft_module(name: &str) -> Option<String> {
    if name == "output.weight" {
        return Some("lm_head".into());
    }
    let (layer, rest) = name.strip_prefix("blk.")?.split_once('.')?;
    let module = rest.strip_suffix(".weight")?;
    let (peft, _) = TARGETS.iter().find(|(_, g)| *g == module)?;
    let group = if peft.ends_with("_proj") && matches!(*peft, "gate_proj" | "up_proj" | "down_proj")
    {
        "mlp"
    } else {
        "self_attn"
    };
    Some(format!("model.layers.{layer}.{group}.{peft}"))
}

/// `alpha` (folded so that `alpha / r` is PEFT's scale, rsLoRA's `alpha / sqrt(r)` included) and the base model
/// named in a PEFT config; refuses what would change the product and Lar does not do.
fn peft_config(path: &Path, cfg: &Json) -> Result<(f32, Option<String>)> {
    let peft_type = cfg.get("peft_type").and_then(Json::as_str).unwrap_or("");
    if peft_type != "LORA" {
        return Err(bad(
            path,
            format!("peft_type is '{peft_type}'; Lar reads LORA adapters"),
        ));
    }
    let r = cfg
        .get("r")
        .and_then(Json::as_u64)
        .filter(|&r| r > 0 && r as usize <= MAX_RANK)
        .ok_or_else(|| bad(path, format!("'r' must be a rank from 1 to {MAX_RANK}")))?;
    let alpha = cfg
        .get("lora_alpha")
        .and_then(Json::as_f64)
        .filter(|a| a.is_finite())
        .ok_or_else(|| bad(path, "'lora_alpha' must be a number"))?;
    let truthy = |k: &str| cfg.get(k).and_then(Json::as_bool).unwrap_or(false);
    let nonempty = |k: &str| match cfg.get(k) {
        None | Some(Json::Null) => false,
        Some(Json::Object(m)) => !m.is_empty(),
        Some(Json::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    for (key, why) in [
        ("use_dora", "DoRA adapters are not supported yet"),
        (
            "fan_in_fan_out",
            "fan_in_fan_out (Conv1D layers, GPT-2) is not supported",
        ),
        ("lora_bias", "trained LoRA biases are not supported yet"),
        ("use_qalora", "QALoRA's pooled inputs are not supported"),
    ] {
        if truthy(key) {
            return Err(bad(path, format!("{key} is true: {why}")));
        }
    }
    for (key, why) in [
        ("rank_pattern", "per-module ranks are not supported yet"),
        ("alpha_pattern", "per-module alphas are not supported yet"),
        (
            "modules_to_save",
            "fully trained extra modules are not supported yet",
        ),
        ("layer_replication", "layer replication is not supported"),
        (
            "alora_invocation_tokens",
            "activated LoRA (on from an invocation onwards) is not supported",
        ),
        (
            "trainable_token_indices",
            "trained token embeddings are not supported yet",
        ),
        (
            "target_parameters",
            "adapters on bare parameters (MoE experts) are not supported",
        ),
    ] {
        if nonempty(key) {
            return Err(bad(path, format!("{key} is set: {why}")));
        }
    }
    // Variants enabled by a sub-config, whatever it holds (training-only ones, VeLoRA's, are read as plain LoRA).
    for (key, why) in [
        (
            "kasa_config",
            "KaSA (truncated base weights) is not supported",
        ),
        ("monteclora_config", "MonteCLoRA is not supported"),
        ("use_bdlora", "block-diagonal LoRA is not supported"),
        (
            "arrow_config",
            "Arrow routing between adapters is not supported",
        ),
    ] {
        if cfg.get(key).is_some_and(|v| !v.is_null()) {
            return Err(bad(path, format!("{key} is set: {why}")));
        }
    }
    match cfg.get("bias").and_then(Json::as_str) {
        None | Some("none") => {}
        Some(b) => {
            return Err(bad(
                path,
                format!("bias is '{b}': trained biases are not supported yet"),
            ));
        }
    }
    let alpha = if truthy("use_rslora") {
        alpha * (r as f64).sqrt()
    } else {
        alpha
    };
    let base = cfg
        .get("base_model_name_or_path")
        .and_then(Json::as_str)
        .map(str::to_string);
    Ok((alpha as f32, base))
}

/// The A and B halves of each adapted tensor as read (row-major shape and values), by base tensor name.
type Halves = BTreeMap<String, [Option<(Vec<usize>, Vec<f32>)>; 2]>;

/// The pairs of `halves`, each checked whole (`a` and `b` name the halves in errors).
fn pairs(path: &Path, halves: Halves, a: &str, b: &str) -> Result<BTreeMap<String, LoraPair>> {
    let mut out = BTreeMap::new();
    for (name, [ha, hb]) in halves {
        let (Some((sa, va)), Some((sb, vb))) = (ha, hb) else {
            return Err(bad(path, format!("'{name}' lacks its {a} or its {b}")));
        };
        out.insert(name.clone(), pair(path, &name, &sa, va, &sb, vb)?);
    }
    Ok(out)
}

/// A pair from its two tensors (`[rank, n_in]` and `[n_out, rank]`), checked against each other.
fn pair(
    path: &Path,
    name: &str,
    sa: &[usize],
    a: Vec<f32>,
    sb: &[usize],
    b: Vec<f32>,
) -> Result<LoraPair> {
    let (rank, n_in) = (sa[0], sa[1]);
    let (n_out, rank_b) = (sb[0], sb[1]);
    if rank != rank_b {
        return Err(bad(
            path,
            format!(
                "'{name}': A has rank {rank} and B rank {rank_b} (A is [rank, in], B is [out, rank])"
            ),
        ));
    }
    if rank == 0 || rank > MAX_RANK {
        return Err(bad(
            path,
            format!("'{name}': rank {rank} (1 to {MAX_RANK})"),
        ));
    }
    Ok(LoraPair {
        rank,
        n_in,
        n_out,
        a,
        b,
    })
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |p: &Path| {
        let p: PathBuf = p.to_path_buf();
        move |cause| Error::Io { path: p, cause }
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.partial"));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
#[path = "lora_tests.rs"]
mod tests;
