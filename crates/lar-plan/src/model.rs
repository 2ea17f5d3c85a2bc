//! What the planner knows of a model: its shape (from the architecture's hyperparameters) and its bytes (from the
//! file's own tensor table), per layer and per type. Built from a [`Gguf`], so a local GGUF file, a model directory
//! and a header read over HTTP ([`Gguf::from_header`]) are planned the same way.

use std::collections::BTreeMap;

use lar_formats::{Gguf, Hparams};
use serde::Serialize;

/// Bytes and count of the tensors of one type.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TypeBytes {
    pub ty: String,
    pub tensors: usize,
    pub bytes: u64,
}

/// A model as the planner sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub arch: String,
    pub n_layers: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    /// The context length the model was trained for (`{arch}.context_length`).
    pub ctx_train: usize,
    /// Tokens a sliding-window layer attends to, and how many layers have such a window.
    pub sliding_window: Option<usize>,
    pub swa_layers: usize,
    /// Which layers slide.
    pub swa: Vec<bool>,
    pub n_params: u64,
    /// The whole file (all files of a directory).
    pub file_bytes: u64,
    /// Bytes of each repeating block `blk.N.*`.
    pub layer_bytes: Vec<u64>,
    /// `token_embd.weight`: read a row per token, so resident in full only when the output layer shares it.
    pub embd_bytes: u64,
    /// The output layer (`output.weight`, 0 when tied to the embeddings) and the final norm.
    pub output_bytes: u64,
    pub tied_output: bool,
    pub by_type: Vec<TypeBytes>,
    /// The type holding most of the repeating layers' bytes.
    pub layer_type: String,
    /// The output head's type (the embedding's where they are tied).
    pub head_type: String,
    /// Tokenizer entries the runtime keeps in memory.
    pub vocab_tokens: usize,
    pub vocab_merges: usize,
    /// Text of a `tokenizer.json` the runtime keeps in memory (model directories; 0 for GGUF files).
    pub tokenizer_json_bytes: u64,
}

impl ModelInfo {
    /// Reads the shape and the tensor table of `g`. Fails like loading would on an unknown architecture or
    /// missing hyperparameters.
    pub fn from_gguf(g: &Gguf) -> lar_formats::Result<Self> {
        let hp = Hparams::from_gguf(g)?;
        let mut layer_bytes = vec![0u64; hp.n_layers];
        let (mut embd_bytes, mut output_bytes, mut n_params) = (0u64, 0u64, 0u64);
        let mut by_type: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
        let mut layer_types: BTreeMap<&str, u64> = BTreeMap::new();
        for t in &g.tensors {
            let size = t.size as u64;
            n_params += t.n_elements() as u64;
            let e = by_type.entry(t.ty.name()).or_default();
            e.0 += 1;
            e.1 += size;
            let layer = t
                .name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse::<usize>().ok());
            match layer {
                Some(i) if i < hp.n_layers => {
                    layer_bytes[i] += size;
                    *layer_types.entry(t.ty.name()).or_default() += size;
                }
                _ if t.name == "token_embd.weight" => embd_bytes += size,
                _ => output_bytes += size,
            }
        }
        let count = |key: &str| g.get(key).and_then(|v| v.as_array()).map_or(0, <[_]>::len);
        let mut vocab_tokens = count("tokenizer.ggml.tokens");
        let mut vocab_merges = count("tokenizer.ggml.merges");
        let json = g.get("tokenizer.huggingface.json").and_then(|v| v.as_str());
        if vocab_tokens == 0 {
            // tokenizer.json (a model directory): its vocabulary is the embedding's, its merges are counted in the
            // text (parsing a file of up to 33 MB into a JSON tree here would cost more memory than it measures).
            vocab_tokens = hp.n_vocab;
            vocab_merges = json.map_or(0, |j| array_len(j, "merges"));
        }
        let swa: Vec<bool> = (0..hp.n_layers).map(|l| hp.is_swa_layer(l)).collect();
        let swa_layers = swa.iter().filter(|&&s| s).count();
        Ok(Self {
            arch: hp.arch.clone(),
            n_layers: hp.n_layers,
            n_embd: hp.n_embd,
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            n_ff: hp.n_ff,
            n_vocab: hp.n_vocab,
            ctx_train: hp.ctx_train,
            sliding_window: hp.sliding_window.filter(|_| swa_layers > 0),
            swa_layers,
            swa,
            n_params,
            file_bytes: g.file_size() as u64,
            layer_bytes,
            embd_bytes,
            output_bytes,
            tied_output: g.tensor("output.weight").is_none(),
            head_type: g
                .tensor("output.weight")
                .or_else(|| g.tensor("token_embd.weight"))
                .map_or_else(String::new, |t| t.ty.name().to_string()),
            by_type: by_type
                .into_iter()
                .map(|(ty, (tensors, bytes))| TypeBytes {
                    ty: ty.to_string(),
                    tensors,
                    bytes,
                })
                .collect(),
            layer_type: layer_types
                .into_iter()
                .max_by_key(|&(_, b)| b)
                .map_or("?".into(), |(t, _)| t.to_string()),
            vocab_tokens,
            vocab_merges,
            tokenizer_json_bytes: json.map_or(0, |j| j.len() as u64),
        })
    }

    /// Bytes of all tensors.
    pub fn tensor_bytes(&self) -> u64 {
        self.layer_bytes.iter().sum::<u64>() + self.embd_bytes + self.output_bytes
    }

    /// K and V width of one layer (elements per token).
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// The name a quantization is known by: the type holding most of the layers' bytes (`Q4_K`, `Q8_0`, `BF16`).
    pub fn main_type(&self) -> &str {
        &self.layer_type
    }
}

/// Entries of the first array under `"key": [` in JSON text, counted by a scan that skips strings (0 if absent).
fn array_len(json: &str, key: &str) -> usize {
    let pat = format!("\"{key}\"");
    let Some(start) = json.match_indices(&pat).find_map(|(at, _)| {
        let rest = json[at + pat.len()..]
            .trim_start()
            .strip_prefix(':')?
            .trim_start();
        rest.starts_with('[').then(|| json.len() - rest.len())
    }) else {
        return 0;
    };
    let (mut depth, mut commas, mut any) = (0usize, 0usize, false);
    let (mut in_str, mut escaped) = (false, false);
    for c in json[start..].chars() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                any = true;
            }
            '[' | '{' => {
                depth += 1;
                any |= depth > 1;
            }
            ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => commas += 1,
            c if depth >= 1 && !c.is_whitespace() => any = true,
            _ => {}
        }
    }
    if any { commas + 1 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::array_len;

    #[test]
    fn counts_merges_in_both_layouts() {
        assert_eq!(
            array_len(
                r#"{"vocab": {"merges": 1}, "merges": ["a b", "c, d", "e \" f"]}"#,
                "merges"
            ),
            3
        );
        assert_eq!(
            array_len(
                "{\"merges\": [\n [\"a\", \"b\"],\n [\"[\", \"]\"]\n]}",
                "merges"
            ),
            2
        );
        assert_eq!(array_len(r#"{"merges": []}"#, "merges"), 0);
        assert_eq!(array_len(r#"{"vocab": {}}"#, "merges"), 0);
    }
}
