//! GGUF writer (version 3): metadata and tensors into one file, as [`crate::gguf`] reads it. Used for synthetic
//! test models (tiny random-weight models of each architecture) and, later, by `lar quantize`.

use crate::ggml_type::GgmlType;
use crate::gguf::Value;

const ALIGN: usize = 32;

#[derive(Default)]
pub struct GgufWriter {
    kv: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<usize>, GgmlType, Vec<u8>)>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, key: &str, value: Value) -> &mut Self {
        self.kv.push((key.to_string(), value));
        self
    }

    /// A tensor given in GGUF dimension order (`dims[0]` innermost) with its raw block data.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[usize],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> &mut Self {
        let n: usize = dims.iter().product();
        assert_eq!(
            data.len(),
            ty.row_bytes(n),
            "tensor {name}: {} bytes for {n} elements of {}",
            data.len(),
            ty.name()
        );
        self.tensors
            .push((name.to_string(), dims.to_vec(), ty, data));
        self
    }

    /// An f32 tensor (`dims` in GGUF order).
    pub fn add_f32(&mut self, name: &str, dims: &[usize], values: &[f32]) -> &mut Self {
        self.add_tensor(
            name,
            dims,
            GgmlType::F32,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    /// An f16 tensor (`dims` in GGUF order).
    pub fn add_f16(&mut self, name: &str, dims: &[usize], values: &[f32]) -> &mut Self {
        let data = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        self.add_tensor(name, dims, GgmlType::F16, data)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            put_str(&mut out, k);
            out.extend(type_id(v).to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0usize;
        for (name, dims, ty, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend((*d as u64).to_le_bytes());
            }
            out.extend(ty.id().to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            offset += data.len().div_ceil(ALIGN) * ALIGN;
        }
        out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
        for (_, _, _, data) in &self.tensors {
            out.extend(data);
            out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
        }
        out
    }

    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

pub(crate) fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

pub(crate) fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend(x.to_le_bytes()),
        Value::I16(x) => out.extend(x.to_le_bytes()),
        Value::U32(x) => out.extend(x.to_le_bytes()),
        Value::I32(x) => out.extend(x.to_le_bytes()),
        Value::U64(x) => out.extend(x.to_le_bytes()),
        Value::I64(x) => out.extend(x.to_le_bytes()),
        Value::F32(x) => out.extend(x.to_le_bytes()),
        Value::F64(x) => out.extend(x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            let ety = items.first().map_or(4, type_id);
            out.extend(ety.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for it in items {
                put_value(out, it);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::Gguf;

    #[test]
    fn round_trips_through_the_reader() {
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("llama".into()))
            .add("x.count", Value::U32(7))
            .add(
                "x.list",
                Value::Array(vec![Value::String("a".into()), Value::String("bc".into())]),
            )
            .add_f32("t.a", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .add_f16("t.b", &[5], &[0.5; 5]);
        let g = Gguf::from_bytes(w.to_bytes()).unwrap();
        assert_eq!(g.get_u64("x.count").unwrap(), 7);
        assert_eq!(
            g.get("x.list").unwrap().as_array().unwrap()[1].as_str(),
            Some("bc")
        );
        let a = g.tensor("t.a").unwrap();
        assert_eq!(a.dims, vec![3, 2]);
        assert_eq!(
            f32::from_le_bytes(g.tensor_data(a)[20..24].try_into().unwrap()),
            6.0
        );
        let b = g.tensor("t.b").unwrap();
        assert_eq!(b.offset % 32, 0);
        assert_eq!(g.tensor_data(b).len(), 10);
    }
}
