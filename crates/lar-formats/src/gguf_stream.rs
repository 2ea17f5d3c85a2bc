//! A GGUF file written tensor by tensor (`lar quantize`): the header, with every tensor's name, shape, type and
//! offset, is written first from sizes known in advance, then each tensor's data in order, so memory holds one
//! tensor at a time. The file is written under a temporary name beside its destination and renamed into place
//! by [`GgufStream::finish`]; dropped before that (an error, a full disk), it is removed: nothing half-written is
//! left behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::ggml_type::GgmlType;
use crate::gguf::Value;
use crate::gguf_write::{put_str, put_value, type_id};

/// A tensor as the header describes it.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    pub name: String,
    /// GGUF dimension order (`dims[0]` innermost).
    pub dims: Vec<usize>,
    pub ty: GgmlType,
}

impl TensorSpec {
    pub fn bytes(&self) -> usize {
        self.ty.row_bytes(self.dims.iter().product())
    }
}

pub struct GgufStream {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
    specs: Vec<TensorSpec>,
    next: usize,
    align: usize,
}

fn pad(w: &mut impl Write, at: usize, align: usize) -> std::io::Result<usize> {
    let to = at.div_ceil(align) * align;
    w.write_all(&vec![0u8; to - at])?;
    Ok(to)
}

impl GgufStream {
    /// Starts `dest` with metadata `kv` (in this order) and the tensors `specs` (whose data must follow in this
    /// order), aligned to `align` bytes.
    pub fn create(
        dest: &Path,
        kv: &[(String, Value)],
        specs: Vec<TensorSpec>,
        align: usize,
    ) -> std::io::Result<Self> {
        let name = dest
            .file_name()
            .map_or("out".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dest.with_file_name(format!(".{name}.part-{}", std::process::id()));
        let mut out = BufWriter::new(File::create(&tmp)?);
        let mut this = Self {
            out: None,
            tmp,
            dest: dest.to_path_buf(),
            specs,
            next: 0,
            align: align.max(1),
        };
        let mut head = Vec::new();
        head.extend(b"GGUF");
        head.extend(3u32.to_le_bytes());
        head.extend((this.specs.len() as u64).to_le_bytes());
        head.extend((kv.len() as u64).to_le_bytes());
        for (k, v) in kv {
            put_str(&mut head, k);
            head.extend(type_id(v).to_le_bytes());
            put_value(&mut head, v);
        }
        let mut offset = 0usize;
        for s in &this.specs {
            put_str(&mut head, &s.name);
            head.extend((s.dims.len() as u32).to_le_bytes());
            for d in &s.dims {
                head.extend((*d as u64).to_le_bytes());
            }
            head.extend(s.ty.id().to_le_bytes());
            head.extend((offset as u64).to_le_bytes());
            offset += s.bytes().div_ceil(this.align) * this.align;
        }
        out.write_all(&head)?;
        pad(&mut out, head.len(), this.align)?;
        this.out = Some(out);
        Ok(this)
    }

    /// The next tensor's data (its size must be the header's).
    pub fn write_tensor(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.write_tensor_parts(&[data])
    }

    /// The next tensor's data in consecutive parts (rows quantized on several threads), written without joining
    /// them first; their sizes must add up to the header's.
    pub fn write_tensor_parts<P: AsRef<[u8]>>(&mut self, parts: &[P]) -> std::io::Result<()> {
        let len: usize = parts.iter().map(|p| p.as_ref().len()).sum();
        let spec = self.specs.get(self.next).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "more tensors than the header lists",
            )
        })?;
        if len != spec.bytes() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "tensor {}: {} bytes, the header says {}",
                    spec.name,
                    len,
                    spec.bytes()
                ),
            ));
        }
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the file is closed"))?;
        for p in parts {
            out.write_all(p.as_ref())?;
        }
        pad(out, len, self.align)?;
        self.next += 1;
        Ok(())
    }

    /// Flushes, syncs and renames the file into place; every tensor must have been written.
    pub fn finish(mut self) -> std::io::Result<()> {
        if self.next != self.specs.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} of {} tensors written", self.next, self.specs.len()),
            ));
        }
        let out = self
            .out
            .take()
            .ok_or_else(|| std::io::Error::other("the file is closed"))?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.dest)
    }
}

impl Drop for GgufStream {
    fn drop(&mut self) {
        if self.out.is_some() || self.tmp.exists() {
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::Gguf;

    #[test]
    fn streamed_files_read_back_and_unfinished_ones_vanish() {
        let dir = std::env::temp_dir().join(format!("lar-gguf-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("m.gguf");
        let specs = vec![
            TensorSpec {
                name: "a".into(),
                dims: vec![3],
                ty: GgmlType::F32,
            },
            TensorSpec {
                name: "b".into(),
                dims: vec![32, 2],
                ty: GgmlType::Q8_0,
            },
        ];
        let kv = vec![(
            "general.architecture".to_string(),
            Value::String("llama".into()),
        )];
        let mut w = GgufStream::create(&dest, &kv, specs.clone(), 32).unwrap();
        w.write_tensor(&[0u8; 12]).unwrap();
        assert!(
            w.write_tensor(&[0u8; 5]).is_err(),
            "a wrong size is refused"
        );
        w.write_tensor(&[7u8; 68]).unwrap();
        w.finish().unwrap();
        let g = Gguf::open(&dest).unwrap();
        assert_eq!(g.architecture().unwrap(), "llama");
        let b = g.tensor("b").unwrap();
        assert_eq!((b.ty, g.tensor_data(b)[0]), (GgmlType::Q8_0, 7));
        assert_eq!(b.offset % 32, 0);

        let other = dir.join("half.gguf");
        let mut w = GgufStream::create(&other, &kv, specs, 32).unwrap();
        w.write_tensor(&[0u8; 12]).unwrap();
        drop(w);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("m.gguf")],
            "nothing half-written"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
