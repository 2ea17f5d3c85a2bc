//! safetensors files: the header parser (untrusted input, every length checked) and the loader of a Hugging Face
//! model directory, presented as a [`Gguf`] so one model loader serves both formats.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and
//! byte range, then the data. A directory holds `config.json`, `tokenizer.json`, `tokenizer_config.json` and the
//! weights: `model.safetensors`, or shards listed in `model.safetensors.index.json`. The files are memory-mapped
//! and laid end to end; tensors are renamed to GGUF's names and their shapes reversed to GGUF order (innermost
//! first), without copying. What `config.json` and the tokenizer files say becomes GGUF metadata in [`crate::hf`].
//! F32, F16 and BF16 tensors are read; other dtypes are refused by name when the model needs them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::ggml_type::GgmlType;
use crate::gguf::{Bytes, Gguf, TensorInfo};
use crate::hf;

/// Largest JSON header accepted (real headers are well under 1 MB; the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// One tensor of a safetensors file, as its header describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub name: String,
    pub dtype: String,
    /// Row-major shape, outermost first (PyTorch order).
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: usize,
    pub end: usize,
}

/// Size in bytes of one element of a safetensors dtype.
fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" | "F8_E8M0" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// The GGML type Lar computes with for a safetensors dtype.
pub fn ggml_type(dtype: &str) -> Option<GgmlType> {
    match dtype {
        "F32" => Some(GgmlType::F32),
        "F16" => Some(GgmlType::F16),
        "BF16" => Some(GgmlType::BF16),
        _ => None,
    }
}

/// Values of an F32, F16 or BF16 tensor (the checkpoint types [`ggml_type`] admits) as f32.
pub fn floats_to_f32(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F16 | GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                let bits = u16::from_le_bytes([c[0], c[1]]);
                *o = if ty == GgmlType::F16 {
                    half::f16::from_bits(bits).to_f32()
                } else {
                    half::bf16::from_bits(bits).to_f32()
                };
            }
        }
        _ => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }
}

fn invalid(what: &str, msg: String) -> Error {
    Error::Invalid(format!("{what}: {msg}"))
}

/// Parses the header of a safetensors file held in `buf` (the whole file). `what` names the file in errors.
/// Every tensor's range is checked to lie in the file and to match its dtype and shape.
pub fn parse_header(buf: &[u8], what: &str) -> Result<Vec<Entry>> {
    parse_header_of(buf, buf.len() as u64, what)
}

/// Parses the header of a safetensors file of `file_len` bytes from `buf`, its first bytes (at least the length
/// and the JSON header: read with an HTTP Range request, say). Tensor ranges are checked against `file_len`.
pub fn parse_header_of(buf: &[u8], file_len: u64, what: &str) -> Result<Vec<Entry>> {
    let len_bytes: [u8; 8] = buf
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            Error::Truncated(format!(
                "{what}: {} bytes, no safetensors header",
                buf.len()
            ))
        })?;
    let n = u64::from_le_bytes(len_bytes);
    let rest = file_len.saturating_sub(8);
    if n > MAX_HEADER || n > rest {
        return Err(invalid(
            what,
            format!("header claims {n} bytes, the file has {rest} after the length"),
        ));
    }
    let data_start = 8 + n as usize;
    if buf.len() < data_start {
        return Err(Error::Truncated(format!(
            "{what}: the header needs {data_start} bytes, {} were read",
            buf.len()
        )));
    }
    let header: serde_json::Value = serde_json::from_slice(&buf[8..data_start])
        .map_err(|e| invalid(what, format!("header is not valid JSON: {e}")))?;
    let obj = header
        .as_object()
        .ok_or_else(|| invalid(what, "header is not a JSON object".into()))?;
    let data_len = usize::try_from(file_len)
        .map_err(|_| invalid(what, format!("length {file_len} is out of range")))?
        - data_start;
    let mut out = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        if name == "__metadata__" {
            continue;
        }
        let bad = |m: &str| invalid(what, format!("tensor '{name}' {m}"));
        let dtype = v["dtype"].as_str().ok_or_else(|| bad("has no dtype"))?;
        let size = dtype_size(dtype).ok_or_else(|| bad(&format!("has unknown dtype {dtype:?}")))?;
        let shape = v["shape"]
            .as_array()
            .ok_or_else(|| bad("has no shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad("has a shape that is not a list of sizes"))?;
        let offsets = v["data_offsets"]
            .as_array()
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
            .ok_or_else(|| bad("has no [start, end] data_offsets"))?;
        let (s, e) = offsets;
        if s > e || e > data_len as u64 {
            return Err(Error::Truncated(format!(
                "{what}: tensor '{name}' needs data bytes {s}..{e}, the file has {data_len}"
            )));
        }
        let bytes = shape
            .iter()
            .try_fold(size, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad("has too many elements"))?;
        if bytes as u64 != e - s {
            return Err(bad(&format!(
                "has shape {shape:?} of {dtype} ({bytes} bytes) but {} bytes of data",
                e - s
            )));
        }
        out.push(Entry {
            name: name.clone(),
            dtype: dtype.to_string(),
            shape,
            start: data_start + s as usize,
            end: data_start + e as usize,
        });
    }
    out.sort_by_key(|e| e.start);
    Ok(out)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// The safetensors files of a directory: the shards its index names, else `model.safetensors`, else every
/// `*.safetensors` file in name order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(io(&index))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| invalid("model.safetensors.index.json", e.to_string()))?;
        let map = json["weight_map"].as_object().ok_or_else(|| {
            invalid(
                "model.safetensors.index.json",
                "no weight_map object".into(),
            )
        })?;
        let mut files = BTreeSet::new();
        for v in map.values() {
            let f = v.as_str().ok_or_else(|| {
                invalid(
                    "model.safetensors.index.json",
                    "a shard name is not a string".into(),
                )
            })?;
            // A shard is a file name in this directory: no separators, no parent references.
            if f.is_empty() || f.contains(['/', '\\']) || f == ".." || f == "." {
                return Err(invalid(
                    "model.safetensors.index.json",
                    format!("shard name {f:?} is not a plain file name"),
                ));
            }
            files.insert(f.to_string());
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "{} has no .gguf file and no .safetensors weights",
            dir.display()
        )));
    }
    Ok(files)
}

/// `config.json` of a model directory, parsed, and the architecture it names.
fn read_config(dir: &Path) -> Result<(serde_json::Value, String)> {
    let config_path = dir.join("config.json");
    let config_text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let config: serde_json::Value = serde_json::from_str(&config_text)
        .map_err(|e| invalid("config.json", format!("not valid JSON: {e}")))?;
    let arch = hf::architecture(&config)?;
    Ok((config, arch))
}

/// Memory-maps a weight file; also returns its file name for errors.
pub fn map_file(f: &Path) -> Result<(Mmap, String)> {
    let file = std::fs::File::open(f).map_err(io(f))?;
    // SAFETY: read-only map; see `Gguf::open` on files truncated while mapped.
    let map = unsafe { Mmap::map(&file) }.map_err(io(f))?;
    let what = f.file_name().map_or_else(
        || f.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok((map, what))
}

/// The tensor-table entry for `e` under `name`, its offset moved by `base` (files laid end to end); refuses dtypes
/// Lar does not compute in.
pub fn tensor_info(e: &Entry, name: String, base: usize) -> Result<TensorInfo> {
    let ty = ggml_type(&e.dtype).ok_or_else(|| {
        Error::Unsupported(format!(
            "tensor '{}' has dtype {}; Lar reads safetensors in F32, F16 and BF16",
            e.name, e.dtype
        ))
    })?;
    Ok(TensorInfo {
        name,
        dims: e.shape.iter().rev().copied().collect(),
        ty,
        offset: base + e.start,
        size: e.end - e.start,
    })
}

/// Opens a model: a GGUF file, or a Hugging Face directory of safetensors weights.
pub fn open_model(path: &Path) -> Result<Gguf> {
    if path.is_dir() {
        open_dir(path)
    } else {
        Gguf::open(path)
    }
}

/// Opens a Hugging Face model directory.
pub fn open_dir(dir: &Path) -> Result<Gguf> {
    let (config, arch) = read_config(dir)?;

    let mut parts = Vec::new();
    let mut tensors = Vec::new();
    let mut extra_tensors = Vec::new();
    let mut base = 0usize;
    for f in weight_files(dir)? {
        let (map, what) = map_file(&f)?;
        for e in parse_header(&map, &what)? {
            let Some(name) = hf::tensor_name(&arch, &e.name) else {
                continue;
            };
            let t = tensor_info(&e, name, base)?;
            if hf::adds_one_to_norms(&arch) && t.name.ends_with("norm.weight") {
                // Gemma computes `x * (1 + w)`; GGUF (and Lar) store `1 + w`. Norms are small: f32 copies.
                let mut v = vec![0f32; t.n_elements()];
                floats_to_f32(t.ty, &map[e.start..e.end], &mut v);
                extra_tensors.push((t.name, t.dims, v.iter().map(|x| x + 1.0).collect()));
                continue;
            }
            tensors.push(t);
        }
        base += map.len();
        parts.push(Bytes::Map(map));
    }
    let metadata = hf::metadata(&arch, &config, dir, &mut extra_tensors)?;
    // Tensors computed here live in one owned part after the files.
    let mut extra: Vec<u8> = Vec::new();
    for (name, dims, values) in extra_tensors {
        tensors.push(TensorInfo {
            name,
            dims,
            ty: GgmlType::F32,
            offset: base + extra.len(),
            size: 4 * values.len(),
        });
        extra.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    if !extra.is_empty() {
        parts.push(Bytes::Owned(extra));
    }
    Gguf::from_parts(metadata, tensors, parts)
}

/// A model directory known from `config.json` alone plus the headers of its safetensors files (`(file name,
/// first bytes, file length)`, as read with HTTP Range requests): a header-only [`Gguf`] whose tensor table the
/// planner sizes. `dir` holds `config.json` (and the tokenizer files, if any).
pub fn open_headers(dir: &Path, headers: &[(String, Vec<u8>, u64)]) -> Result<Gguf> {
    let (config, arch) = read_config(dir)?;
    let mut tensors = Vec::new();
    let mut base = 0usize;
    for (what, head, len) in headers {
        for e in parse_header_of(head, *len, what)? {
            if let Some(name) = hf::tensor_name(&arch, &e.name) {
                tensors.push(tensor_info(&e, name, base)?);
            }
        }
        base += usize::try_from(*len).map_err(|_| invalid(what, "too large".into()))?;
    }
    let metadata = hf::metadata(&arch, &config, dir, &mut Vec::new())?;
    Gguf::header_parts(metadata, tensors, base)
}

/// Tensors computed at load time (Gemma's norms, Llama 3's rope factors): name, GGUF dims, f32 values.
pub(crate) type ExtraTensors = Vec<(String, Vec<usize>, Vec<f32>)>;

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend(header.as_bytes());
        b.extend(std::iter::repeat_n(0u8, data));
        b
    }

    #[test]
    fn parses_a_valid_header() {
        let h = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let e = parse_header(&file(h, 12), "t").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].name.as_str(), e[0].start, e[0].end),
            ("a", 8 + h.len(), 16 + h.len())
        );
        assert_eq!(e[1].shape, vec![2]);
    }

    #[test]
    fn refuses_hostile_headers() {
        // One tensor `a` over 8 bytes of data.
        let one = |t: &str| file(&format!(r#"{{"a":{t}}}"#), 8);
        let cases = [
            (file("", 0)[..4].to_vec(), "no safetensors header"),
            ((u64::MAX).to_le_bytes().to_vec(), "header claims"),
            (file("[1,2]", 0), "not a JSON object"),
            (file("{\"a\":", 0), "not valid JSON"),
            (
                one(r#"{"dtype":"F32","shape":[4],"data_offsets":[0,16]}"#),
                "needs data bytes",
            ),
            (
                one(r#"{"dtype":"F32","shape":[3],"data_offsets":[0,8]}"#),
                "but 8 bytes of data",
            ),
            (
                one(r#"{"dtype":"X9","shape":[2],"data_offsets":[0,8]}"#),
                "unknown dtype",
            ),
            (
                one(r#"{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}"#),
                "too many elements",
            ),
            (
                one(r#"{"dtype":"F32","shape":[2],"data_offsets":[8,0]}"#),
                "needs data bytes",
            ),
            (
                one(r#"{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}"#),
                "not a list of sizes",
            ),
        ];
        for (bytes, want) in cases {
            let e = parse_header(&bytes, "t").unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should say {want:?}");
        }
    }
}
