//! Which type each tensor gets: llama-quantize's file types (one type for every weight, or the k-quant mixtures
//! Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M that give the tensors most sensitive to error more bits) and its rules, as
//! `llama_tensor_get_type` applies them: the output tensor in Q6_K, attention V and FFN down promoted in the layers
//! `use_more_bits` picks (the first and last eighth and every third between), IQ4_NL and IQ4_XS (attention V in
//! Q5_K under grouped-query attention, the first eighth of FFN down without an importance matrix), the ternary TQ1_0
//! and TQ2_0 (token embeddings in Q4_K), grouped-query and mixture-of-experts models treated as llama.cpp treats them, `--tensor-type PATTERN=TYPE` overrides, and the fallback to a 32-block
//! type when a row is not a multiple of the superblock. The rules count tensors as they go (the i-th attention V of
//! n), so [`Mixture::choose`] must see them in llama.cpp's order, which [`llama_order`] gives.

use fancy_regex::Regex;
use lar_formats::ggml_type::GgmlType;
use lar_formats::gguf::{Gguf, Value};

use crate::{Error, Result};

/// A file type of llama-quantize: the default type of its weights and, for the mixtures, the rules that promote
/// some of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q2_K_S,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    IQ4_NL,
    IQ4_XS,
    TQ1_0,
    TQ2_0,
}

use FileType as F;

impl FileType {
    /// Every file type Lar writes.
    pub const ALL: [FileType; 22] = [
        F::F32,
        F::F16,
        F::BF16,
        F::Q4_0,
        F::Q4_1,
        F::Q5_0,
        F::Q5_1,
        F::Q8_0,
        F::Q2_K,
        F::Q2_K_S,
        F::Q3_K_S,
        F::Q3_K_M,
        F::Q3_K_L,
        F::Q4_K_S,
        F::Q4_K_M,
        F::Q5_K_S,
        F::Q5_K_M,
        F::Q6_K,
        F::IQ4_NL,
        F::IQ4_XS,
        F::TQ1_0,
        F::TQ2_0,
    ];

    pub fn name(self) -> &'static str {
        match self {
            F::F32 => "F32",
            F::F16 => "F16",
            F::BF16 => "BF16",
            F::Q4_0 => "Q4_0",
            F::Q4_1 => "Q4_1",
            F::Q5_0 => "Q5_0",
            F::Q5_1 => "Q5_1",
            F::Q8_0 => "Q8_0",
            F::Q2_K => "Q2_K",
            F::Q2_K_S => "Q2_K_S",
            F::Q3_K_S => "Q3_K_S",
            F::Q3_K_M => "Q3_K_M",
            F::Q3_K_L => "Q3_K_L",
            F::Q4_K_S => "Q4_K_S",
            F::Q4_K_M => "Q4_K_M",
            F::Q5_K_S => "Q5_K_S",
            F::Q5_K_M => "Q5_K_M",
            F::Q6_K => "Q6_K",
            F::IQ4_NL => "IQ4_NL",
            F::IQ4_XS => "IQ4_XS",
            F::TQ1_0 => "TQ1_0",
            F::TQ2_0 => "TQ2_0",
        }
    }

    /// llama.cpp's `llama_ftype`, written as `general.file_type`.
    pub fn id(self) -> u32 {
        match self {
            F::F32 => 0,
            F::F16 => 1,
            F::Q4_0 => 2,
            F::Q4_1 => 3,
            F::Q8_0 => 7,
            F::Q5_0 => 8,
            F::Q5_1 => 9,
            F::Q2_K => 10,
            F::Q3_K_S => 11,
            F::Q3_K_M => 12,
            F::Q3_K_L => 13,
            F::Q4_K_S => 14,
            F::Q4_K_M => 15,
            F::Q5_K_S => 16,
            F::Q5_K_M => 17,
            F::Q6_K => 18,
            F::Q2_K_S => 21,
            F::IQ4_NL => 25,
            F::IQ4_XS => 30,
            F::BF16 => 32,
            F::TQ1_0 => 36,
            F::TQ2_0 => 37,
        }
    }

    /// The type of the weights no rule promotes.
    pub fn base(self) -> GgmlType {
        match self {
            F::F32 => GgmlType::F32,
            F::F16 => GgmlType::F16,
            F::BF16 => GgmlType::BF16,
            F::Q4_0 => GgmlType::Q4_0,
            F::Q4_1 => GgmlType::Q4_1,
            F::Q5_0 => GgmlType::Q5_0,
            F::Q5_1 => GgmlType::Q5_1,
            F::Q8_0 => GgmlType::Q8_0,
            F::Q2_K | F::Q2_K_S => GgmlType::Q2_K,
            F::Q3_K_S | F::Q3_K_M | F::Q3_K_L => GgmlType::Q3_K,
            F::Q4_K_S | F::Q4_K_M => GgmlType::Q4_K,
            F::Q5_K_S | F::Q5_K_M => GgmlType::Q5_K,
            F::Q6_K => GgmlType::Q6_K,
            F::IQ4_NL => GgmlType::IQ4_NL,
            F::IQ4_XS => GgmlType::IQ4_XS,
            F::TQ1_0 => GgmlType::TQ1_0,
            F::TQ2_0 => GgmlType::TQ2_0,
        }
    }

    /// The file type named `s` (any case); `Q3_K`, `Q4_K` and `Q5_K` mean their `_M` mixtures, as in llama-quantize.
    pub fn parse(s: &str) -> Result<FileType> {
        let alias = match s.to_ascii_uppercase().as_str() {
            "Q3_K" => "Q3_K_M",
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            _ => s,
        };
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(alias))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|t| t.name()).collect();
                Error::Invalid(format!(
                    "unknown or unsupported type '{s}' (Lar writes {})",
                    names.join(", ")
                ))
            })
    }
}

/// The tensor type named `s` (`q8_0`, `Q6_K`, `f16`...) among those Lar writes, for the per-tensor options.
pub fn parse_tensor_type(s: &str) -> Result<GgmlType> {
    let mut all = lar_kernels::quant::weights::TYPES.to_vec();
    all.extend([GgmlType::F16, GgmlType::BF16, GgmlType::F32]);
    all.iter()
        .copied()
        .find(|t| t.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|t| t.name()).collect();
            Error::Invalid(format!(
                "unknown or unsupported tensor type '{s}' (Lar writes {})",
                names.join(", ")
            ))
        })
}

/// `--tensor-type PATTERN=TYPE`: tensors whose name the regular expression finds get TYPE (the pattern is
/// lowercased, as llama-quantize does).
pub fn parse_override(s: &str) -> Result<(String, GgmlType)> {
    let (pattern, ty) = s
        .split_once('=')
        .ok_or_else(|| Error::Invalid(format!("--tensor-type '{s}' is not PATTERN=TYPE")))?;
    if pattern.is_empty() {
        return Err(Error::Invalid(format!(
            "--tensor-type '{s}' names no tensor"
        )));
    }
    let pattern = pattern.to_ascii_lowercase();
    Regex::new(&pattern).map_err(|e| {
        Error::Invalid(format!(
            "--tensor-type '{pattern}' is not a regular expression: {e}"
        ))
    })?;
    Ok((pattern, parse_tensor_type(ty)?))
}

/// What a file type's choices depend on.
#[derive(Clone, Debug)]
pub struct ModelFacts {
    pub arch: String,
    pub n_layer: usize,
    /// Query heads per KV head (layer 0).
    pub n_gqa: usize,
    pub n_expert: usize,
    /// llama.cpp's `LLM_TYPE_70B`: a llama of 80 layers with grouped-query attention.
    pub is_70b: bool,
    /// No `output.weight`: the token embedding is also the output.
    pub tied: bool,
    /// How many attention V (or fused QKV) tensors the model has.
    pub n_attention_wv: usize,
}

impl ModelFacts {
    pub fn of(g: &Gguf) -> ModelFacts {
        let arch = g.get_str("general.architecture").unwrap_or("").to_string();
        let num = |k: &str| -> usize {
            match g.get(&format!("{arch}.{k}")) {
                Some(Value::Array(a)) => a.first().and_then(Value::as_u64).unwrap_or(0) as usize,
                Some(v) => v.as_u64().unwrap_or(0) as usize,
                None => 0,
            }
        };
        let (heads, kv) = (num("attention.head_count"), num("attention.head_count_kv"));
        let kv = if kv == 0 { heads } else { kv };
        let n_layer = num("block_count");
        let names = g.tensors.iter().map(|t| t.name.as_str());
        ModelFacts {
            n_gqa: heads.checked_div(kv).unwrap_or(0),
            n_expert: num("expert_count"),
            is_70b: arch == "llama" && n_layer == 80 && heads != kv,
            tied: !names.clone().any(|n| n == "output.weight"),
            n_attention_wv: names.filter(|n| category(n).is_attn_v()).count(),
            n_layer,
            arch,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnQkv,
    AttnKvB,
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

impl Category {
    fn is_attn_v(self) -> bool {
        matches!(
            self,
            Category::AttnV | Category::AttnQkv | Category::AttnKvB
        )
    }
}

fn category(name: &str) -> Category {
    use Category as C;
    if name == "output.weight" {
        return C::Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return C::TokenEmbd;
    }
    let table = [
        ("attn_qkv.weight", C::AttnQkv),
        ("attn_kv_b.weight", C::AttnKvB),
        ("attn_v.weight", C::AttnV),
        ("attn_k.weight", C::AttnK),
        ("attn_q.weight", C::AttnQ),
        ("attn_output.weight", C::AttnOutput),
        ("ffn_up", C::FfnUp),
        ("ffn_gate", C::FfnGate),
        ("ffn_down", C::FfnDown),
    ];
    table
        .iter()
        .find(|(k, _)| name.contains(k))
        .map_or(C::Other, |&(_, c)| c)
}

/// The layer of `blk.N.…`, or -1.
fn layer_of(name: &str) -> i64 {
    name.strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

/// The order llama-quantize visits tensors in (and writes them): by layer (tensors outside the blocks first), then
/// by name. Returns indexes into `names`.
pub fn llama_order<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<usize> {
    let names: Vec<&str> = names.into_iter().collect();
    let mut idx: Vec<usize> = (0..names.len()).collect();
    idx.sort_by(|&a, &b| (layer_of(names[a]), names[a]).cmp(&(layer_of(names[b]), names[b])));
    idx
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third one between.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64).rem_euclid(3) == 2
}

/// The choices for one file, stateful as llama-quantize's are (it counts attention V and FFN tensors).
pub struct Mixture {
    ft: FileType,
    facts: ModelFacts,
    pure: bool,
    has_imatrix: bool,
    output_type: Option<GgmlType>,
    token_embedding_type: Option<GgmlType>,
    overrides: Vec<(Regex, GgmlType)>,
    i_attention_wv: usize,
    i_ffn_down: usize,
    i_ffn_gate: usize,
    i_ffn_up: usize,
}

/// What a [`Mixture`] is asked for besides the file type.
#[derive(Clone, Debug, Default)]
pub struct Choices {
    pub pure: bool,
    pub has_imatrix: bool,
    pub output_type: Option<GgmlType>,
    pub token_embedding_type: Option<GgmlType>,
    /// `(pattern, type)`: the first pattern found in a tensor's name gives its type.
    pub overrides: Vec<(String, GgmlType)>,
}

impl Mixture {
    pub fn new(ft: FileType, facts: ModelFacts, c: &Choices) -> Result<Mixture> {
        let overrides = c
            .overrides
            .iter()
            .map(|(p, t)| {
                Regex::new(p)
                    .map(|r| (r, *t))
                    .map_err(|e| Error::Invalid(format!("--tensor-type '{p}': {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(Mixture {
            ft,
            facts,
            pure: c.pure,
            has_imatrix: c.has_imatrix,
            output_type: c.output_type,
            token_embedding_type: c.token_embedding_type,
            overrides,
            i_attention_wv: 0,
            i_ffn_down: 0,
            i_ffn_gate: 0,
            i_ffn_up: 0,
        })
    }

    /// The type of tensor `name` (`n_dims` dimensions, rows of `ncols`, now `current`); call in [`llama_order`].
    pub fn choose(
        &mut self,
        name: &str,
        n_dims: usize,
        ncols: usize,
        current: GgmlType,
    ) -> Result<GgmlType> {
        if !crate::quantize::allows_quantization(name, n_dims) {
            return Ok(current);
        }
        let cat = category(name);
        if let (Some(t), Category::TokenEmbd) = (self.token_embedding_type, cat) {
            let named = name == "per_layer_token_embd.weight"
                && self
                    .overrides
                    .iter()
                    .any(|(r, _)| r.is_match(name).unwrap_or(false));
            if !named {
                return Ok(t);
            }
        }
        if let (Some(t), Category::Output) = (self.output_type, cat) {
            return Ok(t);
        }
        let mut t = self.ft.base();
        if matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            return Ok(t);
        }
        let manual = self
            .overrides
            .iter()
            .find(|(r, _)| r.is_match(name).unwrap_or(false))
            .map(|&(_, t)| t);
        match manual {
            Some(m) => t = m,
            None if !self.pure => t = self.rules(t, name, ncols, cat)?,
            None => {}
        }
        let t = fallback(t, ncols);
        if t == GgmlType::Q2_K
            && self.ft == F::Q2_K_S
            && !self.has_imatrix
            && cat != Category::TokenEmbd
        {
            return Err(Error::Invalid(format!(
                "Q2_K_S needs an importance matrix ({name} would be Q2_K): give --imatrix"
            )));
        }
        Ok(t)
    }

    /// `llama_tensor_get_type_impl` for the k-quant and legacy file types.
    fn rules(
        &mut self,
        mut t: GgmlType,
        name: &str,
        ncols: usize,
        cat: Category,
    ) -> Result<GgmlType> {
        use GgmlType as G;
        let ft = self.ft;
        let f = &self.facts;
        let falcon = f.arch == "falcon";
        if cat == Category::Output || (f.tied && cat == Category::TokenEmbd) {
            return Ok(match self.output_type {
                Some(o) => o,
                None if falcon || !ncols.is_multiple_of(t.block_size()) => G::Q8_0,
                None if t != G::Q8_0 => G::Q6_K,
                None => t,
            });
        }
        if cat == Category::TokenEmbd {
            return Ok(match self.token_embedding_type {
                Some(e) => e,
                // The ternary types keep the embeddings (a lookup, not a product) in Q4_K.
                None if matches!(ft, F::TQ1_0 | F::TQ2_0) => G::Q4_K,
                None => t,
            });
        }
        let layer = |counter: usize, n: usize| -> Result<(usize, usize)> {
            if f.n_expert > 1 {
                let l = layer_of(name);
                if l < 0 || l as usize >= n {
                    return Err(Error::Invalid(format!(
                        "cannot tell the layer of {name} (of {n})"
                    )));
                }
                return Ok((l as usize, n));
            }
            Ok((counter, n))
        };
        match cat {
            c if c.is_attn_v() => {
                let (i, n) = (self.i_attention_wv, f.n_attention_wv);
                t = match ft {
                    F::Q2_K if f.n_gqa >= 4 => G::Q4_K,
                    F::Q2_K => G::Q3_K,
                    F::Q2_K_S if f.n_gqa >= 4 => G::Q4_K,
                    F::Q3_K_M if i < 2 => G::Q5_K,
                    F::Q3_K_M => G::Q4_K,
                    F::Q3_K_L => G::Q5_K,
                    F::IQ4_NL | F::IQ4_XS if f.n_gqa >= 4 => G::Q5_K,
                    F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => G::Q6_K,
                    F::Q4_K_S if i < 4 => G::Q5_K,
                    _ => t,
                };
                if f.is_70b && matches!(t, G::Q3_K | G::Q4_K) {
                    t = G::Q5_K;
                }
                if f.n_expert == 8 {
                    t = G::Q8_0;
                }
                self.i_attention_wv += 1;
            }
            Category::AttnK if f.n_expert == 8 => t = G::Q8_0,
            Category::FfnDown => {
                let (i, n) = layer(self.i_ffn_down, f.n_layer)?;
                t = match ft {
                    F::Q2_K => G::Q3_K,
                    F::Q2_K_S if i < n / 8 => G::Q4_K,
                    F::Q3_K_M if i < n / 16 => G::Q5_K,
                    F::Q3_K_M if !falcon || use_more_bits(i, n) => G::Q4_K,
                    F::Q3_K_M => G::Q3_K,
                    F::Q3_K_L if falcon => G::Q4_K,
                    F::Q3_K_L => G::Q5_K,
                    F::Q4_K_M if falcon && i < n / 16 => G::Q6_K,
                    F::Q4_K_M if falcon && use_more_bits(i, n) => G::Q5_K,
                    F::Q4_K_M if falcon => G::Q4_K,
                    F::Q4_K_M if use_more_bits(i, n) => G::Q6_K,
                    F::IQ4_NL | F::IQ4_XS if i < n / 8 && !self.has_imatrix => G::Q5_K,
                    F::Q5_K_M if use_more_bits(i, n) => G::Q6_K,
                    F::Q4_K_S if !falcon && i < n / 8 => G::Q5_K,
                    F::Q4_0 if self.has_imatrix && i < n / 8 => G::Q4_1,
                    F::Q5_0 if self.has_imatrix && i < n / 8 => G::Q5_1,
                    _ => t,
                };
                self.i_ffn_down += 1;
            }
            Category::AttnOutput => {
                if !falcon {
                    if f.n_expert == 8 {
                        if matches!(
                            ft,
                            F::Q2_K
                                | F::Q3_K_S
                                | F::Q3_K_M
                                | F::Q4_K_S
                                | F::Q4_K_M
                                | F::IQ4_NL
                                | F::IQ4_XS
                        ) {
                            t = G::Q5_K;
                        }
                    } else {
                        t = match ft {
                            F::Q2_K => G::Q3_K,
                            F::Q3_K_M => G::Q4_K,
                            F::Q3_K_L => G::Q5_K,
                            _ => t,
                        };
                    }
                } else if ft == F::Q3_K_L {
                    t = G::Q4_K;
                }
            }
            // The fused QKV is counted as attention V above (`category_is_attn_v`), so llama.cpp's own QKV branch
            // is never reached; it is not repeated here.
            Category::FfnGate => {
                layer(self.i_ffn_gate, f.n_layer)?;
                self.i_ffn_gate += 1;
            }
            Category::FfnUp => {
                layer(self.i_ffn_up, f.n_layer)?;
                self.i_ffn_up += 1;
            }
            _ => {}
        }
        Ok(t)
    }
}

/// llama-quantize's fallback for a row of `ncols` the type's blocks do not divide.
pub fn fallback(ty: GgmlType, ncols: usize) -> GgmlType {
    if ncols.is_multiple_of(ty.block_size()) {
        return ty;
    }
    let t = match ty {
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::TQ1_0 | GgmlType::TQ2_0 => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        GgmlType::IQ4_XS => GgmlType::IQ4_NL,
        t => t,
    };
    if ncols.is_multiple_of(t.block_size()) {
        t
    } else {
        GgmlType::F16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_bits_for_the_ends_and_every_third_layer() {
        let picked: Vec<usize> = (0..8).filter(|&i| use_more_bits(i, 8)).collect();
        assert_eq!(picked, [0, 3, 6, 7]);
        let picked: Vec<usize> = (0..24).filter(|&i| use_more_bits(i, 24)).collect();
        assert_eq!(picked, [0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]);
    }

    #[test]
    fn names_and_aliases() {
        assert_eq!(FileType::parse("q4_k").unwrap(), F::Q4_K_M);
        assert_eq!(FileType::parse("Q3_K_L").unwrap(), F::Q3_K_L);
        assert_eq!(FileType::parse("q8_0").unwrap().id(), 7);
        let e = FileType::parse("IQ2_XXS").unwrap_err().to_string();
        assert!(
            e.contains("unknown or unsupported type 'IQ2_XXS'") && e.contains("Q4_K_M"),
            "{e}"
        );
        assert_eq!(
            parse_override("attn_V=q8_0").unwrap(),
            ("attn_v".into(), GgmlType::Q8_0)
        );
        for bad in ["attn_v", "=q8_0", "attn_v=q9_9", "attn_(=q8_0"] {
            assert!(parse_override(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn llama_visits_tensors_by_layer_then_name() {
        let names = [
            "blk.10.a",
            "blk.2.b",
            "output.weight",
            "blk.2.a",
            "token_embd.weight",
        ];
        let order: Vec<&str> = llama_order(names).into_iter().map(|i| names[i]).collect();
        assert_eq!(
            order,
            [
                "output.weight",
                "token_embd.weight",
                "blk.2.a",
                "blk.2.b",
                "blk.10.a"
            ]
        );
    }
}
