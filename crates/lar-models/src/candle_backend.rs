//! The forward pass of [`Model`] on candle's tensors, for the devices our own kernels do not cover: CUDA with the
//! `cuda` feature (weights stay quantized on the GPU and go through candle's GGUF matmul kernels), and candle's CPU
//! device, which is how CI checks this path without a GPU.
//!
//! It takes the same call as the CPU engine ([`CandleModel::forward`]: a batch of sequences at any positions, each
//! with its block table) and keeps its KV cache on the device with the same geometry (blocks of `block_size`
//! positions), so the engine's scheduler and block manager drive it unchanged. Every architecture of
//! [`crate::arch`] runs: biases, Q/K norms, post-norms, GELU or SiLU, sliding-window layers and their rope base come
//! from [`crate::model::Hparams`] and the loaded [`Model`]'s layers. Token embeddings are dequantized on the host
//! from the mapped file (one row per token) and sent over.
//!
//! Not here: our batch-invariant kernels (candle's reductions order floats their own way, so logits agree with the
//! CPU engine closely but not bit for bit), paged attention kernels (keys are gathered per sequence with
//! `index_select`), and a quantized KV cache (f32 on the CPU device, f16 on CUDA).

use candle_core::quantized::{GgmlDType, QMatMul, ggml_file::qtensor_from_ggml};
use candle_core::{D, DType, Device, Module, Tensor};

use crate::model::{Activation, Hparams, Layer, Model, SeqBatch, logit_rows, split_logits};
use crate::quant::GgmlType;
use crate::tensor::Weight;
use crate::{Error, Result};

/// A candle error as ours, on one line (candle appends a backtrace to some).
fn ce(e: candle_core::Error) -> Error {
    let s = e.to_string();
    Error::Backend(s.lines().next().unwrap_or_default().to_string())
}

/// Opens the device named by `spec`: `cpu` (candle's own CPU kernels), `cuda` or `cuda:N`.
pub fn device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map_err(|_| Error::Invalid(format!("bad CUDA device '{s}'")))?,
                None => 0,
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(Error::Unsupported(
                    "this build of lar has no CUDA support: build it with `--features cuda`".into(),
                ));
            }
            Device::new_cuda(ordinal).map_err(|e| match ce(e) {
                Error::Backend(m) => {
                    Error::Backend(format!("cannot open CUDA device {ordinal}: {m}"))
                }
                other => other,
            })
        }
        other => Err(Error::Invalid(format!(
            "unknown device '{other}' (cpu, cuda, cuda:N)"
        ))),
    }
}

/// Our tensor type as candle's.
fn dtype(ty: GgmlType) -> Result<GgmlDType> {
    use GgmlType::*;
    Ok(match ty {
        F32 => GgmlDType::F32,
        F16 => GgmlDType::F16,
        BF16 => GgmlDType::BF16,
        Q4_0 => GgmlDType::Q4_0,
        Q4_1 => GgmlDType::Q4_1,
        Q5_0 => GgmlDType::Q5_0,
        Q5_1 => GgmlDType::Q5_1,
        Q8_0 => GgmlDType::Q8_0,
        Q2_K => GgmlDType::Q2K,
        Q3_K => GgmlDType::Q3K,
        Q4_K => GgmlDType::Q4K,
        Q5_K => GgmlDType::Q5K,
        Q6_K => GgmlDType::Q6K,
        Q8_K => GgmlDType::Q8K,
        Q8_1 => {
            return Err(Error::Unsupported(
                "Q8_1 weights (an activation type)".into(),
            ));
        }
        // Candle has no kernels for these: `qmatmul` widens them to F16.
        IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ1_S | IQ1_M | IQ4_NL | IQ4_XS | TQ1_0
        | TQ2_0 | MXFP4 | NVFP4 | Q1_0 | Q2_0 => GgmlDType::F16,
    })
}

/// Whether candle lacks kernels for `ty`, so its weights go to the device widened to F16.
fn widened(ty: GgmlType) -> bool {
    dtype(ty).is_ok_and(|d| d == GgmlDType::F16) && ty != GgmlType::F16
}

/// A weight on the device, still quantized (types candle has no kernel for are widened to F16 first).
fn qmatmul(w: &Weight, dev: &Device) -> Result<QMatMul> {
    let shape = vec![w.rows, w.cols];
    let q = if widened(w.ty) {
        let mut row = vec![0f32; w.cols];
        let mut f16 = Vec::with_capacity(w.rows * w.cols * 2);
        for r in 0..w.rows {
            w.dequantize_row(r, &mut row);
            f16.extend(
                row.iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes()),
            );
        }
        qtensor_from_ggml(GgmlDType::F16, &f16, shape, dev)
    } else {
        qtensor_from_ggml(dtype(w.ty)?, w.data(), shape, dev)
    };
    QMatMul::from_qtensor(q.map_err(ce)?).map_err(ce)
}

/// A vector on the device.
fn vector(v: &[f32], dev: &Device) -> Result<Tensor> {
    Tensor::from_slice(v, v.len(), dev).map_err(ce)
}

fn opt_vector(v: &Option<Vec<f32>>, dev: &Device) -> Result<Option<Tensor>> {
    v.as_deref().map(|v| vector(v, dev)).transpose()
}

struct CLayer {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    bq: Option<Tensor>,
    bk: Option<Tensor>,
    bv: Option<Tensor>,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
    post_ffn_norm: Option<Tensor>,
}

impl CLayer {
    fn new(l: &Layer, dev: &Device) -> Result<Self> {
        Ok(Self {
            attn_norm: vector(&l.attn_norm, dev)?,
            wq: qmatmul(&l.wq, dev)?,
            wk: qmatmul(&l.wk, dev)?,
            wv: qmatmul(&l.wv, dev)?,
            wo: qmatmul(&l.wo, dev)?,
            bq: opt_vector(&l.bq, dev)?,
            bk: opt_vector(&l.bk, dev)?,
            bv: opt_vector(&l.bv, dev)?,
            q_norm: opt_vector(&l.q_norm, dev)?,
            k_norm: opt_vector(&l.k_norm, dev)?,
            post_attn_norm: opt_vector(&l.post_attn_norm, dev)?,
            ffn_norm: vector(&l.ffn_norm, dev)?,
            gate: qmatmul(&l.gate, dev)?,
            up: qmatmul(&l.up, dev)?,
            down: qmatmul(&l.down, dev)?,
            post_ffn_norm: opt_vector(&l.post_ffn_norm, dev)?,
        })
    }
}

/// One layer's cache: `[blocks · block_size, kv_dim]` for K and for V; row `block · block_size + offset` holds a
/// position.
struct CacheLayer {
    k: Tensor,
    v: Tensor,
}

/// A model loaded onto a candle device, with its KV cache there.
pub struct CandleModel {
    pub hp: Hparams,
    dev: Device,
    tok_embd: Weight,
    layers: Vec<CLayer>,
    output_norm: Tensor,
    output: QMatMul,
    inv_freq: Vec<f32>,
    inv_freq_swa: Vec<f32>,
    block_size: usize,
    max_blocks: usize,
    cache: Vec<CacheLayer>,
}

impl CandleModel {
    /// `model`'s weights onto `dev`, and a cache of `max_blocks` blocks of `block_size` positions.
    pub fn new(model: &Model, dev: Device, block_size: usize, max_blocks: usize) -> Result<Self> {
        let hp = model.hp.clone();
        let layers = model
            .layers
            .iter()
            .map(|l| CLayer::new(l, &dev))
            .collect::<Result<Vec<_>>>()?;
        let kv_dtype = if dev.is_cuda() {
            DType::F16
        } else {
            DType::F32
        };
        let slots = block_size.max(1) * max_blocks.max(1);
        let cache = (0..hp.n_layers)
            .map(|_| {
                Ok(CacheLayer {
                    k: Tensor::zeros((slots, hp.kv_dim()), kv_dtype, &dev).map_err(ce)?,
                    v: Tensor::zeros((slots, hp.kv_dim()), kv_dtype, &dev).map_err(ce)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            output_norm: vector(&model.output_norm, &dev)?,
            output: qmatmul(&model.output, &dev)?,
            tok_embd: model.tok_embd.clone(),
            inv_freq: model.inv_freq.clone(),
            inv_freq_swa: model.inv_freq_swa.clone(),
            hp,
            layers,
            block_size: block_size.max(1),
            max_blocks: max_blocks.max(1),
            cache,
            dev,
        })
    }

    /// As [`Model::forward`]: logits per sequence (the last token's, or every token's from `logits_from` on); writes the
    /// batch's K and V into the device cache at their block-table slots.
    pub fn forward(&mut self, batch: &[SeqBatch]) -> Result<Vec<Vec<f32>>> {
        let hp = &self.hp;
        let d = hp.n_embd;
        let mut slots_of: Vec<Vec<u32>> = Vec::with_capacity(batch.len());
        let mut tokens = Vec::new();
        for sb in batch {
            sb.check(self.block_size, self.max_blocks, hp.n_vocab)?;
            if sb.lora.is_some() {
                return Err(Error::Unsupported(
                    "LoRA adapters run on the CPU backend only for now".into(),
                ));
            }
            let end = sb.pos + sb.tokens.len();
            let bs = self.block_size;
            slots_of.push(
                (0..end)
                    .map(|p| sb.block_table[p / bs] * bs as u32 + (p % bs) as u32)
                    .collect(),
            );
            tokens.extend_from_slice(sb.tokens);
        }
        let n = tokens.len();
        if n == 0 {
            return Ok(vec![Vec::new(); batch.len()]);
        }
        let mut x = vec![0f32; n * d];
        for (row, &t) in x.chunks_exact_mut(d).zip(&tokens) {
            self.tok_embd.dequantize_row(t as usize, row);
            if hp.embed_scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= hp.embed_scale);
            }
        }
        let mut x = Tensor::from_vec(x, (n, d), &self.dev).map_err(ce)?;
        for il in 0..self.layers.len() {
            x = self.layer(il, &x, batch, &slots_of).map_err(ce)?;
        }
        let rows: Vec<u32> = logit_rows(batch).iter().map(|&r| r as u32).collect();
        let logits = (|| {
            let idx = Tensor::new(rows.as_slice(), &self.dev)?;
            let sel = x.index_select(&idx, 0)?;
            let sel = candle_nn::ops::rms_norm(&sel, &self.output_norm, hp.rms_eps)?;
            self.output
                .forward(&sel)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()
        })()
        .map_err(ce)?;
        Ok(split_logits(batch, &logits, hp.n_vocab))
    }

    /// One transformer layer over the batch's rows `x` (`[n, d]`).
    fn layer(
        &self,
        il: usize,
        x: &Tensor,
        batch: &[SeqBatch],
        slots_of: &[Vec<u32>],
    ) -> candle_core::Result<Tensor> {
        let hp = &self.hp;
        let (nh, nkv, hd) = (hp.n_head, hp.n_head_kv, hp.head_dim);
        let l = &self.layers[il];
        let n = x.dim(0)?;
        let xn = candle_nn::ops::rms_norm(x, &l.attn_norm, hp.rms_eps)?;
        let bias = |t: Tensor, b: &Option<Tensor>| match b {
            Some(b) => t.broadcast_add(b),
            None => Ok(t),
        };
        let q = bias(l.wq.forward(&xn)?, &l.bq)?.reshape((n, nh, hd))?;
        let k = bias(l.wk.forward(&xn)?, &l.bk)?.reshape((n, nkv, hd))?;
        let v = bias(l.wv.forward(&xn)?, &l.bv)?;
        let q = match &l.q_norm {
            Some(w) => candle_nn::ops::rms_norm(&q.contiguous()?, w, hp.rms_eps)?,
            None => q,
        };
        let k = match &l.k_norm {
            Some(w) => candle_nn::ops::rms_norm(&k.contiguous()?, w, hp.rms_eps)?,
            None => k,
        };
        let swa = hp.is_swa_layer(il);
        let freqs = if swa {
            &self.inv_freq_swa
        } else {
            &self.inv_freq
        };
        let window = hp.sliding_window.filter(|_| swa);
        let kv_dtype = self.cache[il].k.dtype();
        let mut outs = Vec::with_capacity(batch.len());
        let mut start = 0;
        for (sb, slots) in batch.iter().zip(slots_of) {
            let len = sb.tokens.len();
            if len == 0 {
                continue;
            }
            let (cos, sin) = rope_tables(freqs, sb.pos, len, &self.dev)?;
            let qs = rope(&q.narrow(0, start, len)?, &cos, &sin, hp)?;
            let ks = rope(&k.narrow(0, start, len)?, &cos, &sin, hp)?;
            let vs = v.narrow(0, start, len)?;
            // Into the cache, one run of consecutive slots at a time.
            let new = &slots[sb.pos..];
            let c = &self.cache[il];
            let mut i = 0;
            while i < len {
                let mut j = i + 1;
                while j < len && new[j] == new[j - 1] + 1 {
                    j += 1;
                }
                let at = new[i] as usize;
                c.k.slice_set(
                    &ks.narrow(0, i, j - i)?
                        .reshape((j - i, nkv * hd))?
                        .to_dtype(kv_dtype)?,
                    0,
                    at,
                )?;
                c.v.slice_set(&vs.narrow(0, i, j - i)?.to_dtype(kv_dtype)?, 0, at)?;
                i = j;
            }
            let end = sb.pos + len;
            let idx = Tensor::new(&slots[..end], &self.dev)?;
            let keys = c.k.index_select(&idx, 0)?.to_dtype(DType::F32)?;
            let vals = c.v.index_select(&idx, 0)?.to_dtype(DType::F32)?;
            outs.push(attend(&qs, &keys, &vals, sb.pos, window, hp)?);
            start += len;
        }
        let att = Tensor::cat(&outs, 0)?;
        let mut o = l.wo.forward(&att)?;
        if let Some(w) = &l.post_attn_norm {
            o = candle_nn::ops::rms_norm(&o, w, hp.rms_eps)?;
        }
        let x = (x + o)?;
        let xn = candle_nn::ops::rms_norm(&x, &l.ffn_norm, hp.rms_eps)?;
        let g = l.gate.forward(&xn)?;
        let g = match hp.activation {
            Activation::Silu => candle_nn::ops::silu(&g)?,
            Activation::Gelu => g.gelu()?,
        };
        let h = (g * l.up.forward(&xn)?)?;
        let mut o = l.down.forward(&h)?;
        if let Some(w) = &l.post_ffn_norm {
            o = candle_nn::ops::rms_norm(&o, w, hp.rms_eps)?;
        }
        x + o
    }
}

/// `cos` and `sin` of `(pos + t)·freq` for `t < len`, `[len, freqs]`.
fn rope_tables(
    freqs: &[f32],
    pos: usize,
    len: usize,
    dev: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let angles: Vec<f32> = (pos..pos + len)
        .flat_map(|p| freqs.iter().map(move |f| p as f32 * f))
        .collect();
    let (c, s): (Vec<f32>, Vec<f32>) = angles.iter().map(|a| (a.cos(), a.sin())).unzip();
    Ok((
        Tensor::from_vec(c, (len, freqs.len()), dev)?,
        Tensor::from_vec(s, (len, freqs.len()), dev)?,
    ))
}

/// Rotary embedding of `x` (`[len, heads, head_dim]`) over its first `rope_dim` dimensions.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, hp: &Hparams) -> candle_core::Result<Tensor> {
    let (len, heads, hd) = x.dims3()?;
    let r = hp.rope_dim;
    let xt = x.transpose(0, 1)?.unsqueeze(0)?; // [1, heads, len, hd]
    let rot = xt.narrow(D::Minus1, 0, r)?.contiguous()?;
    let rot = if hp.rope_neox {
        candle_nn::rotary_emb::rope(&rot, cos, sin)?
    } else {
        candle_nn::rotary_emb::rope_i(&rot, cos, sin)?
    };
    let out = if r < hd {
        Tensor::cat(&[&rot, &xt.narrow(D::Minus1, r, hd - r)?], D::Minus1)?
    } else {
        rot
    };
    out.squeeze(0)?.transpose(0, 1)?.reshape((len, heads, hd))
}

/// Attention of one sequence's new queries `q` (`[len, n_head, head_dim]`, positions `pos..`) over its keys and
/// values `[end, kv_dim]`: causal, and windowed on sliding-window layers. Returns `[len, n_head · head_dim]`.
fn attend(
    q: &Tensor,
    keys: &Tensor,
    vals: &Tensor,
    pos: usize,
    window: Option<usize>,
    hp: &Hparams,
) -> candle_core::Result<Tensor> {
    let (len, nh, hd) = q.dims3()?;
    let (nkv, end) = (hp.n_head_kv, keys.dim(0)?);
    let group = nh / nkv;
    // Heads sharing a KV head side by side: [nkv, group·len, hd] against [nkv, end, hd].
    let q = q
        .reshape((len, nkv, group, hd))?
        .permute((1, 2, 0, 3))?
        .reshape((nkv, group * len, hd))?;
    let k = keys
        .reshape((end, nkv, hd))?
        .transpose(0, 1)?
        .contiguous()?;
    let v = vals
        .reshape((end, nkv, hd))?
        .transpose(0, 1)?
        .contiguous()?;
    let scores = (q.contiguous()?.matmul(&k.t()?)? * hp.attn_scale as f64)?;
    let mask: Vec<f32> = (0..group * len)
        .flat_map(|r| {
            let qp = pos + r % len;
            (0..end).map(move |kp| {
                let visible = kp <= qp && window.is_none_or(|w| kp + w > qp);
                if visible { 0.0 } else { f32::NEG_INFINITY }
            })
        })
        .collect();
    let mask = Tensor::from_vec(mask, (group * len, end), q.device())?;
    let p = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?;
    let o = p.matmul(&v)?; // [nkv, group·len, hd]
    o.reshape((nkv, group, len, hd))?
        .permute((2, 0, 1, 3))?
        .reshape((len, nh * hd))
}
