//! The sha256 a run records for its model file: taken from a store blob's name (`sha256-<hex>`, the link
//! followed), else remembered in the runs database by path, size and modification time, else computed once.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::runs::RunStore;
use crate::{Error, Result};

/// The sha256 (hex) of the file at `path`; for a directory (a Hugging Face model), the sha256 of its files'
/// names and digests, one `NAME SHA256` line each in name order.
pub fn file_sha256(store: &RunStore, path: &Path) -> Result<String> {
    let io = |e| Error::Io(path.display().to_string(), e);
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(io)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let mut listing = String::new();
        for f in files {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            listing.push_str(&format!("{name} {}\n", file_sha256(store, &f)?));
        }
        return Ok(Sha256::digest(listing.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect());
    }
    let real = std::fs::canonicalize(path).map_err(io)?;
    if let Some(hex) = real
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("sha256-"))
        .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Ok(hex.to_string());
    }
    let meta = std::fs::metadata(&real).map_err(io)?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let key = real.display().to_string();
    if let Some(s) = store.cached_digest(&key, meta.len(), mtime)? {
        return Ok(s);
    }
    let hex = sha256_of(&real)?;
    store.cache_digest(&key, meta.len(), mtime, &hex)?;
    Ok(hex)
}

/// The sha256 (hex) of the file at `path`, read through (no cache).
pub fn sha256_of(path: &Path) -> Result<String> {
    let io = |e| Error::Io(path.display().to_string(), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computed_once_then_remembered_and_blob_names_are_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open_home(dir.path()).unwrap();
        let f = dir.path().join("m.gguf");
        std::fs::write(&f, b"abc").unwrap();
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(file_sha256(&store, &f).unwrap(), want);
        assert_eq!(file_sha256(&store, &f).unwrap(), want);
        let blob = dir.path().join(format!("sha256-{}", "0".repeat(64)));
        std::fs::write(&blob, b"not what the name says").unwrap();
        assert_eq!(file_sha256(&store, &blob).unwrap(), "0".repeat(64));
        assert!(file_sha256(&store, &dir.path().join("missing")).is_err());
        // A directory: its files' names and digests.
        let model = dir.path().join("model");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("a.json"), b"abc").unwrap();
        let one = file_sha256(&store, &model).unwrap();
        std::fs::write(model.join("b.safetensors"), b"abc").unwrap();
        let two = file_sha256(&store, &model).unwrap();
        assert_ne!(one, two);
        assert_eq!(two, file_sha256(&store, &model).unwrap());
    }
}
