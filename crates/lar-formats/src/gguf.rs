//! GGUF reader (versions 2 and 3), memory-mapped.
//!
//! The file is untrusted: every count and length is checked against the bytes that remain before anything is
//! allocated, tensor extents are checked against the file size, and arithmetic on sizes is checked for overflow. A
//! bad file gives an [`Error`] naming the problem, never a panic or a huge allocation. Tensor data is not copied:
//! [`Gguf::tensor_data`] hands out slices of the map.
//!
//! Layout: magic `GGUF`, version u32, tensor count u64, metadata count u64, metadata (key string, type u32, value),
//! tensor infos (name, n_dims u32, dims u64 × n_dims, type u32, offset u64), padding to `general.alignment`
//! (default 32), then tensor data. All little-endian.

use std::collections::HashMap;
use std::path::Path;

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::ggml_type::GgmlType;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
        }
    }

    /// Any integer type, if it is non-negative and fits.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            Value::Bool(v) => Some(v as u64),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => self.as_u64().map(|v| v != 0),
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is the innermost (contiguous) dimension, e.g. `[n_cols, n_rows]` for a matrix.
    pub dims: Vec<usize>,
    pub ty: GgmlType,
    /// Absolute offset of the data in the file.
    pub offset: usize,
    /// Bytes of data.
    pub size: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// The raw bytes of a GGUF file: a memory map, or an owned buffer (tests, fuzzing, files written in memory).
pub enum Bytes {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file, or a model directory presented as one (see [`crate::safetensors`]): metadata under GGUF's
/// key names, a tensor table under GGUF's tensor names, and the bytes the table points into.
pub struct Gguf {
    /// GGUF version; 0 for a safetensors directory.
    pub version: u32,
    pub metadata: HashMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    pub data_offset: usize,
    /// The files, laid end to end: a tensor's `offset` falls in exactly one part (`starts[i]..starts[i] + len`).
    parts: Vec<Bytes>,
    starts: Vec<usize>,
    /// Only the header was read ([`Gguf::from_header`]): the tensor table is there, the data is not.
    header_only: Option<usize>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Most elements an array may claim; the largest real vocabularies are ~260k, merges ~500k.
const MAX_ARRAY: u64 = 1 << 24;
/// Deepest nesting of arrays of arrays.
const MAX_DEPTH: usize = 4;

impl Gguf {
    /// Memory-maps and parses `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |cause| Error::Io {
            path: path.to_path_buf(),
            cause,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(Error::Invalid(format!(
                "{} is a directory, not a GGUF file",
                path.display()
            )));
        }
        // SAFETY: the map is read-only; a file truncated by another process while mapped is the one case memmap
        // cannot guard against (SIGBUS), as with every mmap-based loader.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::parse(Bytes::Map(map))
    }

    /// Parses a GGUF file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::parse(Bytes::Owned(bytes))
    }

    /// Parses the start of a GGUF file whose full length is `file_len` (read with an HTTP Range request, say): the
    /// metadata and the tensor table, checked against `file_len`, without the tensor data. [`Error::Truncated`]
    /// when `head` ends before the tensor table does (read more and try again). Such a `Gguf` plans a model; it
    /// cannot run one ([`Gguf::is_header_only`]).
    pub fn from_header(head: &[u8], file_len: u64) -> Result<Self> {
        let file_len = usize::try_from(file_len)
            .map_err(|_| Error::Invalid(format!("file length {file_len} is out of range")))?;
        let mut g = Self::parse_table(head, file_len)?;
        g.header_only = Some(file_len);
        Ok(g)
    }

    /// Whether this is a header read by [`Gguf::from_header`], without tensor data.
    pub fn is_header_only(&self) -> bool {
        self.header_only.is_some()
    }

    fn parse(bytes: Bytes) -> Result<Self> {
        let mut g = Self::parse_table(bytes.as_slice(), bytes.as_slice().len())?;
        g.parts = vec![bytes];
        g.starts = vec![0];
        Ok(g)
    }

    /// Metadata and tensor table from `buf`, the first bytes of a file of `file_len` bytes; the caller attaches
    /// the data (or marks the result header-only).
    fn parse_table(buf: &[u8], file_len: usize) -> Result<Self> {
        let mut r = Reader { buf, pos: 0 };
        let magic: [u8; 4] = r
            .take(4, "magic")?
            .try_into()
            .map_err(|_| Error::Truncated("magic".into()))?;
        if &magic != b"GGUF" {
            return Err(Error::BadMagic(magic));
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedVersion(version));
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // Each metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8 + 4 + 4 + 8.
        if n_kv > file_len.saturating_sub(r.pos) as u64 / 13 {
            return Err(Error::Invalid(format!(
                "metadata count {n_kv} exceeds what the file can hold"
            )));
        }
        if n_tensors > file_len.saturating_sub(r.pos) as u64 / 24 {
            return Err(Error::Invalid(format!(
                "tensor count {n_tensors} exceeds what the file can hold"
            )));
        }
        let mut metadata = HashMap::with_capacity(n_kv as usize);
        for i in 0..n_kv {
            let key = r.string(&format!("metadata key #{i}"))?;
            let ty = r.u32(&format!("type of '{key}'"))?;
            let value = r.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(Error::Invalid(format!(
                    "metadata key '{key}' appears twice"
                )));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= 1 << 16 => a as usize,
                _ => {
                    return Err(Error::Invalid(format!(
                        "general.alignment {v:?} is not a power of two"
                    )));
                }
            },
        };
        let mut infos = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = r.string(&format!("name of tensor #{i}"))?;
            let n_dims = r.u32(&format!("dims of '{name}'"))?;
            if n_dims == 0 || n_dims > 4 {
                return Err(Error::Invalid(format!(
                    "tensor '{name}' has {n_dims} dimensions (1 to 4 allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let d = r.u64(&format!("dims of '{name}'"))?;
                let d = usize::try_from(d)
                    .ok()
                    .filter(|&d| d > 0 && d <= 1 << 40)
                    .ok_or_else(|| Error::Invalid(format!("tensor '{name}' has dimension {d}")))?;
                dims.push(d);
            }
            let ty_id = r.u32(&format!("type of '{name}'"))?;
            let ty = GgmlType::from_id(ty_id).ok_or(Error::UnsupportedType {
                name: name.clone(),
                id: ty_id,
            })?;
            let offset = r.u64(&format!("offset of '{name}'"))?;
            infos.push((name, dims, ty, offset));
        }
        let data_offset = r.pos.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(infos.len());
        let mut index = HashMap::with_capacity(infos.len());
        for (name, dims, ty, rel) in infos {
            let n: usize = dims
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| Error::Invalid(format!("tensor '{name}' has too many elements")))?;
            if dims[0] % ty.block_size() != 0 {
                return Err(Error::Invalid(format!(
                    "tensor '{name}' row length {} is not a multiple of {}'s block size {}",
                    dims[0],
                    ty.name(),
                    ty.block_size()
                )));
            }
            let size = (n / ty.block_size())
                .checked_mul(ty.type_size())
                .ok_or_else(|| Error::Invalid(format!("tensor '{name}' is too large")))?;
            let offset = usize::try_from(rel)
                .ok()
                .and_then(|o| o.checked_add(data_offset))
                .ok_or_else(|| {
                    Error::Invalid(format!("tensor '{name}' offset {rel} is out of range"))
                })?;
            if offset % alignment != 0 {
                return Err(Error::Invalid(format!(
                    "tensor '{name}' offset {rel} is not aligned to {alignment}"
                )));
            }
            let end = offset
                .checked_add(size)
                .ok_or_else(|| Error::Invalid(format!("tensor '{name}' extent overflows")))?;
            if end > file_len {
                return Err(Error::Truncated(format!(
                    "tensor '{name}' needs bytes {offset}..{end} but the file has {file_len}"
                )));
            }
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(Error::Invalid(format!("tensor '{name}' appears twice")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                size,
            });
        }
        Ok(Self {
            version,
            metadata,
            tensors,
            index,
            data_offset,
            parts: Vec::new(),
            starts: Vec::new(),
            header_only: None,
        })
    }

    /// A model assembled from several files (a safetensors directory): `tensors` carry offsets into `parts` laid
    /// end to end, and must each lie inside one part (the caller checked).
    pub fn from_parts(
        metadata: HashMap<String, Value>,
        tensors: Vec<TensorInfo>,
        parts: Vec<Bytes>,
    ) -> Result<Self> {
        let mut starts = Vec::with_capacity(parts.len());
        let mut at = 0usize;
        for p in &parts {
            starts.push(at);
            at += p.as_slice().len();
        }
        let mut index = HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            if index.insert(t.name.clone(), i).is_some() {
                return Err(Error::Invalid(format!("tensor '{}' appears twice", t.name)));
            }
        }
        Ok(Self {
            version: 0,
            metadata,
            tensors,
            index,
            data_offset: 0,
            parts,
            starts,
            header_only: None,
        })
    }

    /// A header-only model assembled from several files' headers (a remote safetensors repository): the tensor
    /// table of files totalling `total_len` bytes, without their data.
    pub(crate) fn header_parts(
        metadata: HashMap<String, Value>,
        tensors: Vec<TensorInfo>,
        total_len: usize,
    ) -> Result<Self> {
        let mut g = Self::from_parts(metadata, tensors, Vec::new())?;
        g.header_only = Some(total_len);
        Ok(g)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.get(key).ok_or_else(|| Error::MissingKey(key.into()))?;
        v.as_str().ok_or(Error::WrongKeyType {
            key: key.into(),
            expected: "string",
            found: v.type_name(),
        })
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.get(key).ok_or_else(|| Error::MissingKey(key.into()))?;
        v.as_u64().ok_or(Error::WrongKeyType {
            key: key.into(),
            expected: "unsigned integer",
            found: v.type_name(),
        })
    }

    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self.get(key).ok_or_else(|| Error::MissingKey(key.into()))?;
        v.as_f64().ok_or(Error::WrongKeyType {
            key: key.into(),
            expected: "number",
            found: v.type_name(),
        })
    }

    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor; in bounds by construction (checked at parse time).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        self.raw(info.offset, info.size)
    }

    /// Bytes `offset..offset + size` of the file(s); callers pass extents taken from a [`TensorInfo`].
    pub fn raw(&self, offset: usize, size: usize) -> &[u8] {
        if self.parts.is_empty() {
            return &[]; // header only: there is no data (Model::from_gguf refuses such a file)
        }
        let part = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let local = offset - self.starts[part];
        &self.parts[part].as_slice()[local..local + size]
    }

    /// Tells the OS that bytes `offset..offset + size` (extents from a [`TensorInfo`]) will not be read again, so their
    /// pages leave this process's resident memory (a repacked copy replaced them). A later read would still work: the
    /// map is read-only, so the pages come back from the file.
    pub fn release(&self, offset: usize, size: usize) {
        if self.parts.is_empty() || size == 0 {
            return;
        }
        let part = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        if let Bytes::Map(map) = &self.parts[part] {
            // Whole pages inside the range only: the neighbours' pages stay.
            let page = 4096;
            let local = offset - self.starts[part];
            let (start, end) = (local.next_multiple_of(page), (local + size) / page * page);
            if end > start {
                // SAFETY: DONTNEED on a private read-only file map only drops clean pages; nothing here holds a
                // pointer that relies on their contents staying resident (reads fault them back in).
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        end - start,
                    )
                };
            }
        }
    }

    /// Size of the whole file (all files of a directory) in bytes.
    pub fn file_size(&self) -> usize {
        if let Some(len) = self.header_only {
            return len;
        }
        self.parts.iter().map(|p| p.as_slice().len()).sum()
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::Truncated(format!(
                "{what} at byte {} needs {n} bytes, {} left",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(Error::Truncated(format!(
                "{what}: string of {len} bytes, {} left",
                self.remaining()
            )));
        }
        let bytes = self.take(len as usize, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::Invalid(format!("{what} is not valid UTF-8")))
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>(key)?[0]),
            1 => Value::I8(self.array::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(Error::Invalid(format!("'{key}' has bool byte {b}"))),
            },
            8 => Value::String(self.string(key)?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(Error::Invalid(format!(
                        "'{key}' nests arrays more than {MAX_DEPTH} deep"
                    )));
                }
                let ety = self.u32(key)?;
                let n = self.u64(key)?;
                let min = match ety {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    _ => {
                        return Err(Error::Invalid(format!(
                            "'{key}' is an array of unknown type {ety}"
                        )));
                    }
                };
                if n > MAX_ARRAY || n * min > self.remaining() as u64 {
                    return Err(Error::Truncated(format!(
                        "'{key}' claims {n} elements, more than the file holds"
                    )));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(ety, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            _ => {
                return Err(Error::Invalid(format!(
                    "'{key}' has unknown value type {ty}"
                )));
            }
        })
    }
}
