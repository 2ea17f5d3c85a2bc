//! `lar quantize`: a GGUF model rewritten with its weights in another type, as llama-quantize does it without an
//! importance matrix, so the same source and file type give the same tensors. Which tensors change follows
//! llama-quantize: 2-D (and larger) tensors whose names end in `weight`, except norms, expert gates, positional
//! embeddings, token types, convolutions and the other small tensors it keeps; which type each gets (the output in
//! Q6_K, the mixtures' promotions, the fallbacks) is [`crate::mixture`]'s. The rest of the file (metadata,
//! tokenizer, template) is copied, with `general.file_type` and `general.quantization_version` set.
//!
//! Memory holds one tensor at a time (read from the memory-mapped source, dequantized to f32, quantized on every
//! core) and the output is written through [`GgufStream`], so a failure (a full disk) leaves nothing behind.
//!
//! `lar merge` is the same pass with a LoRA adapter ([`Options::lora`]): each adapted tensor gets `scale * B · A`
//! added in f32 before it is quantized again (into its own type with [`Options::keep_types`], or Q8_0 where that
//! type is too coarse to keep the delta; else the file type's).

use std::path::Path;
use std::time::Instant;

use lar_engine::load::physical_cores;
use lar_formats::ggml_type::GgmlType;
use lar_formats::gguf::{Gguf, Value};
use lar_formats::gguf_stream::{GgufStream, TensorSpec};
use lar_formats::hf_export;
use lar_kernels::quant::{self, weighted, weights};

use crate::imatrix::Imatrix;
use crate::mixture::{Choices, FileType, Mixture, ModelFacts, llama_order};
use serde::Serialize;

use crate::{Error, Result};

/// What to write.
#[derive(Clone, Debug)]
pub struct Options {
    /// The file type: one type for the weights, or a mixture (`Q4_K_M`...).
    pub ft: FileType,
    /// Every quantized tensor in the file type's base type: no special type for the output tensor, no mixture.
    pub pure: bool,
    /// Accept a source that is already quantized (its weights are dequantized first, which loses more).
    pub allow_requantize: bool,
    /// The output tensor's type instead of llama-quantize's choice.
    pub output_type: Option<GgmlType>,
    /// The token embedding's type.
    pub token_embedding_type: Option<GgmlType>,
    /// `--tensor-type PATTERN=TYPE`, in the order given: the first pattern found in a name decides.
    pub overrides: Vec<(String, GgmlType)>,
    /// An importance matrix to weigh each value's error by (`--imatrix`).
    pub imatrix: Option<Imatrix>,
    /// Threads (0: the physical cores).
    pub threads: usize,
    /// A LoRA adapter to bake into the weights it adapts, at a strength (`lar merge`).
    pub lora: Option<(lar_formats::lora::LoraAdapter, f32)>,
    /// Every tensor keeps its type (`ft` is then only the `general.file_type` written), but for tensors `lora`
    /// adapts that are below 8 bits: those are written in Q8_0, which keeps the delta.
    pub keep_types: bool,
}

impl Options {
    /// `ft` with llama-quantize's defaults.
    pub fn new(ft: FileType) -> Options {
        Options {
            ft,
            pure: false,
            allow_requantize: false,
            output_type: None,
            token_embedding_type: None,
            overrides: Vec::new(),
            imatrix: None,
            threads: 0,
            lora: None,
            keep_types: false,
        }
    }
}

/// What was written.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub tensors: usize,
    pub quantized: usize,
    /// Tensors per type in the output.
    pub types: std::collections::BTreeMap<String, usize>,
    pub source_bytes: u64,
    pub output_bytes: u64,
    pub seconds: f64,
}

/// Whether llama-quantize changes the type of tensor `name` of `n_dims` dimensions.
pub fn allows_quantization(name: &str, n_dims: usize) -> bool {
    const KEEP: [&str; 16] = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_",
        "attn_rel_b.weight",
        ".position_embd",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
    ];
    n_dims >= 2
        && name.ends_with("weight")
        && !KEEP.iter().any(|k| name.contains(k))
        && name != "position_embd.weight"
        && name != "token_types.weight"
}

/// `data` (a `ty` tensor of `n` values in rows of `ncols`) as f32 in `out`, dequantized on `threads` threads;
/// `out` is kept from tensor to tensor of similar size so its pages are faulted in once, not once per tensor.
fn to_f32(
    ty: GgmlType,
    data: &[u8],
    n: usize,
    ncols: usize,
    threads: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    if ty.row_bytes(n) != data.len() || !ncols.is_multiple_of(ty.block_size()) || ncols == 0 {
        return Err(Error::Invalid(format!(
            "a {} tensor of {n} values in rows of {ncols} cannot hold {} bytes",
            ty.name(),
            data.len()
        )));
    }
    if out.capacity() > 2 * n {
        // Past the largest tensor (the embedding, usually first), give its memory back: peak RSS stays one
        // tensor's floats.
        *out = Vec::new();
    }
    out.clear();
    out.resize(n, 0.0);
    let rows = n / ncols;
    let per = rows.div_ceil(threads.clamp(1, rows.max(1)));
    let row_bytes = ty.row_bytes(ncols);
    std::thread::scope(|s| {
        for (o, d) in out
            .chunks_mut(per * ncols)
            .zip(data.chunks(per * row_bytes))
        {
            s.spawn(move || quant::dequantize(ty, d, o));
        }
    });
    Ok(())
}

/// A tensor for the writer thread: the source's bytes as they are, or quantized in consecutive parts.
enum Chunk<'a> {
    Same(&'a [u8]),
    Parts(Vec<Vec<u8>>),
}

/// An importance matrix's weights for one tensor: one row of `ncols` per expert, each expert `rows` rows.
struct RowWeights<'a> {
    w: &'a [f32],
    rows_per_expert: usize,
}

/// `x` (rows of `ncols`) quantized to `ty` on `threads` threads, rows split evenly; with `qw`, row by row under
/// the importance weights of its expert.
fn quantize_rows(
    ty: GgmlType,
    x: &[f32],
    ncols: usize,
    threads: usize,
    qw: Option<RowWeights>,
) -> Result<Vec<Vec<u8>>> {
    let rows = x.len() / ncols.max(1);
    let parts = threads.clamp(1, rows.max(1));
    let per = rows.div_ceil(parts);
    let chunks: Vec<&[f32]> = x.chunks(per * ncols).collect();
    let qw = qw.as_ref();
    let outs: Vec<Option<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(ty.row_bytes(c.len()));
                    let Some(qw) = qw else {
                        return weights::quantize(ty, c, &mut out).map(|_| out);
                    };
                    for (r, row) in c.chunks_exact(ncols).enumerate() {
                        let e = (i * per + r) / qw.rows_per_expert.max(1);
                        let w = qw.w.get(e * ncols..(e + 1) * ncols)?;
                        weighted::quantize_row(ty, row, w, &mut out)?;
                    }
                    Some(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    outs.into_iter()
        .map(|o| o.ok_or_else(|| Error::Invalid(format!("Lar cannot write {} tensors", ty.name()))))
        .collect()
}

/// The importance weights of tensor `t` (going to `ty`, rows of `ncols`) in `o`'s matrix, checked as
/// llama-quantize checks them: a matrix that has the tensor must have one row per expert of its width (the token
/// embedding excepted, which is then quantized without); one that lacks it quantizes it without, except for Q2_K
/// in a Q2_K_S file, which needs it.
fn importance(
    o: &Options,
    t: &lar_formats::gguf::TensorInfo,
    ty: GgmlType,
    ncols: usize,
) -> Result<Option<Vec<f32>>> {
    let Some(m) = &o.imatrix else {
        return Ok(None);
    };
    let experts = t.dims.get(2).copied().unwrap_or(1);
    match m.weights(&t.name) {
        Some(w) if w.len() == ncols * experts => Ok(Some(w)),
        Some(_) if t.name == "token_embd.weight" || t.name == "per_layer_token_embd.weight" => {
            Ok(None)
        }
        Some(w) => Err(Error::Invalid(format!(
            "the importance matrix has {} values for {}, which has rows of {ncols}{}: it was made for another model",
            w.len(),
            t.name,
            if experts > 1 {
                format!(" in {experts} experts")
            } else {
                String::new()
            }
        ))),
        None if ty == GgmlType::Q2_K
            && o.ft == FileType::Q2_K_S
            && !matches!(t.name.as_str(), "token_embd.weight" | "output.weight") =>
        {
            Err(Error::Invalid(format!(
                "Q2_K_S needs importance weights for {}, and the matrix has none",
                t.name
            )))
        }
        None => Ok(None),
    }
}

/// The metadata of the output: the source's (`general.architecture` first, the rest by name), with the file type
/// and quantization version set.
fn metadata(src: &Gguf, o: &Options, dir: Option<&Path>) -> Result<Vec<(String, Value)>> {
    // Types kept: the source's file type stays true.
    let own = src
        .get("general.file_type")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    let ft = match (o.keep_types, own) {
        (true, Some(v)) => v,
        _ => o.ft.id(),
    };
    let source: Vec<(String, Value)> = match dir {
        Some(d) => hf_export::llama_cpp_metadata(src, d)
            .map_err(|e| Error::Invalid(format!("{}: {e}", d.display())))?,
        None => src
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let mut kv: Vec<(String, Value)> = source
        .into_iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "general.file_type" | "general.quantization_version"
            )
        })
        .collect();
    kv.sort_by(|a, b| {
        (a.0 != "general.architecture")
            .cmp(&(b.0 != "general.architecture"))
            .then(a.0.cmp(&b.0))
    });
    kv.push(("general.file_type".into(), Value::U32(ft)));
    kv.push(("general.quantization_version".into(), Value::U32(2)));
    Ok(kv)
}

/// Quantizes the GGUF file `src` into `dst`; `progress(done, total, tensor name)` after each tensor.
pub fn quantize(
    src: &Path,
    dst: &Path,
    o: &Options,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Summary> {
    let started = Instant::now();
    if src.canonicalize().ok() == dst.canonicalize().ok() && dst.exists() {
        return Err(Error::Invalid(
            "the output would overwrite the source".into(),
        ));
    }
    let g = lar_formats::open_model(src)
        .map_err(|e| Error::Invalid(format!("{}: {e}", src.display())))?;
    // A Hugging Face directory is converted on the way, as llama.cpp's converter writes it.
    let hf = hf_export::is_hf(&g).then_some(src);
    let arch = g.get_str("general.architecture").unwrap_or("").to_string();
    if g.is_header_only() {
        return Err(Error::Invalid(format!(
            "{} has no tensor data",
            src.display()
        )));
    }
    if let Some((a, _)) = &o.lora
        && let Some(missing) = a.tensors.keys().find(|n| g.tensor(n).is_none())
    {
        return Err(Error::Invalid(format!(
            "the adapter adapts {missing}, which {} does not hold (a tied output matrix is the embedding \
             table's): it cannot be baked in",
            src.display()
        )));
    }
    let mut mixture = Mixture::new(
        o.ft,
        ModelFacts::of(&g),
        &Choices {
            pure: o.pure,
            has_imatrix: o.imatrix.is_some(),
            output_type: o.output_type,
            token_embedding_type: o.token_embedding_type,
            overrides: o.overrides.clone(),
        },
    )?;
    let mut chosen = vec![GgmlType::F32; g.tensors.len()];
    for i in llama_order(g.tensors.iter().map(|t| t.name.as_str())) {
        let t = &g.tensors[i];
        let ncols = t.dims.first().copied().unwrap_or(0);
        let adapted = o
            .lora
            .as_ref()
            .is_some_and(|(a, _)| a.tensors.contains_key(&t.name));
        chosen[i] = if o.keep_types {
            // A coarse grid snaps a small delta back onto the base's values (measured in tests/merge.rs: a
            // Q4_1 merge kept almost none of the adapter), so an adapted tensor below 8 bits is written in Q8_0.
            let fine = matches!(
                t.ty,
                GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0
            );
            if adapted && !fine && ncols.is_multiple_of(GgmlType::Q8_0.block_size()) {
                GgmlType::Q8_0
            } else {
                t.ty
            }
        } else {
            mixture.choose(&t.name, t.dims.len(), ncols, t.ty)?
        };
        // llama.cpp's converter writes vectors and norms in F32.
        if hf.is_some()
            && chosen[i] == t.ty
            && (t.dims.len() <= 1 || t.name.ends_with("_norm.weight"))
        {
            chosen[i] = GgmlType::F32;
        }
    }
    let threads = if o.threads == 0 {
        physical_cores()
    } else {
        o.threads
    };
    let mut specs = Vec::with_capacity(g.tensors.len());
    for (t, &ty) in g.tensors.iter().zip(&chosen) {
        let ncols = t.dims.first().copied().unwrap_or(0);
        if ty != t.ty && allows_quantization(&t.name, t.dims.len()) {
            let quantized = !matches!(t.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
            if quantized && !o.allow_requantize && o.lora.is_none() {
                return Err(Error::Invalid(format!(
                    "{} is already quantized ({} is {}): give --allow-requantize to quantize it again",
                    src.display(),
                    t.name,
                    t.ty.name()
                )));
            }
            if !ncols.is_multiple_of(ty.block_size()) {
                return Err(Error::Invalid(format!(
                    "{}: rows of {ncols} values do not fill {}'s blocks of {}",
                    t.name,
                    ty.name(),
                    ty.block_size()
                )));
            }
        }
        specs.push(TensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ty,
        });
    }
    let align = g
        .get("general.alignment")
        .and_then(Value::as_u64)
        .map_or(32, |a| a as usize);
    let kv = metadata(&g, o, hf)?;
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge => {
            Error::Invalid(format!(
                "no space left on the disk holding {} (nothing was written)",
                dst.parent().unwrap_or(dst).display()
            ))
        }
        _ => Error::Io(dst.display().to_string(), e),
    };
    let out = GgufStream::create(dst, &kv, specs.clone(), align).map_err(io)?;
    let mut types = std::collections::BTreeMap::new();
    let mut quantized = 0;
    let total = g.tensors.len();
    // A writer thread takes each tensor as it is ready, so the next one is dequantized and quantized while the
    // kernel copies this one into the file (a third of the time, single-threaded, before). A rendezvous channel:
    // at most the tensor being written and the one being made are in memory.
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(0);
        let writer = s.spawn(move || -> std::io::Result<GgufStream> {
            let mut out = out;
            for c in rx {
                match c {
                    Chunk::Same(d) => out.write_tensor(d)?,
                    Chunk::Parts(p) => out.write_tensor_parts(&p)?,
                }
            }
            Ok(out)
        });
        let mut scratch = Vec::new();
        for (i, (t, spec)) in g.tensors.iter().zip(&specs).enumerate() {
            let data = g.tensor_data(t);
            let permute = hf.is_some() && hf_export::permutes(&arch, &t.name);
            let adapted = o
                .lora
                .as_ref()
                .and_then(|(a, s)| Some((a.tensors.get(&t.name)?, a.alpha, *s)));
            let chunk = if spec.ty == t.ty && !permute && adapted.is_none() {
                Chunk::Same(data)
            } else {
                let n = t.n_elements();
                let ncols = t.dims.first().copied().unwrap_or(n).max(1);
                to_f32(t.ty, data, n, ncols, threads, &mut scratch)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", t.name)))?;
                let x = &mut scratch;
                if let Some((p, alpha, strength)) = adapted {
                    // In the base's row order, so before an HF source's Q/K rows are permuted.
                    add_delta(x, p, strength * p.scale(alpha))
                        .map_err(|e| Error::Invalid(format!("{}: {e}", t.name)))?;
                }
                if permute {
                    let cols = if t.dims.len() <= 1 { 1 } else { ncols };
                    hf_export::permute_rows(x, cols, hf_export::permute_heads(&g, &t.name))
                        .map_err(|e| Error::Invalid(format!("{}: {e}", t.name)))?;
                }
                let qw = importance(o, t, spec.ty, ncols)?;
                let q = quantize_rows(
                    spec.ty,
                    x,
                    ncols,
                    threads,
                    qw.as_deref().map(|w| RowWeights {
                        w,
                        rows_per_expert: t.dims.get(1).copied().unwrap_or(1),
                    }),
                )?;
                quantized += usize::from(spec.ty != t.ty);
                Chunk::Parts(q)
            };
            if tx.send(chunk).is_err() {
                // The writer stopped on an error, reported below.
                break;
            }
            *types.entry(spec.ty.name().to_string()).or_insert(0) += 1;
            progress(i + 1, total, &t.name);
        }
        drop(tx);
        let out = writer
            .join()
            .map_err(|_| Error::Invalid("the file writer thread panicked".into()))?
            .map_err(io)?;
        out.finish().map_err(io)
    })?;
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let source_bytes = if src.is_dir() {
        std::fs::read_dir(src)
            .map(|d| d.flatten().map(|e| size(&e.path())).sum())
            .unwrap_or(0)
    } else {
        size(src)
    };
    Ok(Summary {
        tensors: total,
        quantized,
        types,
        source_bytes,
        output_bytes: size(dst),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `w += scale * B · A` for a weight of `[n_out, n_in]` rows.
fn add_delta(w: &mut [f32], p: &lar_formats::lora::LoraPair, scale: f32) -> Result<()> {
    if w.len() != p.n_out * p.n_in {
        return Err(Error::Invalid(format!(
            "the adapter's [{}, {}] does not match the weight's {} values",
            p.n_out,
            p.n_in,
            w.len()
        )));
    }
    for (o, row) in w.chunks_exact_mut(p.n_in).enumerate() {
        for r in 0..p.rank {
            let b = scale * p.b[o * p.rank + r];
            for (v, a) in row.iter_mut().zip(&p.a[r * p.n_in..(r + 1) * p.n_in]) {
                *v += b * a;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delta_is_b_times_a_scaled() {
        let p = lar_formats::lora::LoraPair {
            rank: 2,
            n_in: 3,
            n_out: 2,
            a: vec![1.0, 0.0, 2.0, 0.0, 1.0, 1.0],
            b: vec![1.0, 2.0, 3.0, 4.0],
        };
        let mut w = vec![0.0; 6];
        add_delta(&mut w, &p, 0.5).unwrap();
        // B · A = [[1, 2, 4], [3, 4, 10]], halved.
        assert_eq!(w, [0.5, 1.0, 2.0, 1.5, 2.0, 5.0]);
        assert!(add_delta(&mut [0.0; 5], &p, 1.0).is_err());
    }

    #[test]
    fn llama_quantizes_only_weight_matrices() {
        assert!(allows_quantization("blk.0.attn_q.weight", 2));
        assert!(!allows_quantization("blk.0.attn_norm.weight", 1));
        assert!(!allows_quantization("blk.0.ffn_gate_inp.weight", 2));
        assert!(!allows_quantization("blk.0.attn_q.bias", 2));
        assert!(!allows_quantization("position_embd.weight", 2));
    }
}
