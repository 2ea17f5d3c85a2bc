//! The knowledge bases of one Lar home: `$LAR_HOME/kb/NAME/config.json` records the embedder, the store (`sqlite`,
//! kept as `index.sqlite` beside it, or a `postgres://` URL) and the roots that were added; [`Registry`] creates,
//! lists, opens and removes them. Names are checked so that a name can never point outside the registry.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ingest::Root;
use crate::lang::Analyzer;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreInfo};
use crate::{Error, Result};

/// A knowledge base's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbConfig {
    pub name: String,
    /// The embedder as the user named it (a model directory or a store name).
    pub embedder: String,
    pub dim: usize,
    /// `sqlite` or a `postgres://` URL.
    pub store: String,
    #[serde(default)]
    pub roots: Vec<Root>,
    /// Unix seconds.
    pub created: i64,
}

impl KbConfig {
    pub fn is_postgres(&self) -> bool {
        self.store.starts_with("postgres://") || self.store.starts_with("postgresql://")
    }
}

/// The knowledge bases under one directory.
pub struct Registry {
    root: PathBuf,
}

/// A knowledge-base name: 1-64 of `A-Z a-z 0-9 _ -`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid knowledge base name '{name}': use 1-64 letters, digits, '_' or '-', starting with a letter or digit"
        )))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Registry {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Registry { root: root.into() }
    }

    fn dir(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.root.join(name))
    }

    fn sqlite_path(dir: &Path) -> PathBuf {
        dir.join("index.sqlite")
    }

    /// Creates a knowledge base and its (empty) store, its full-text side analyzing words as `language` says.
    pub fn create(
        &self,
        name: &str,
        embedder: &str,
        dim: usize,
        store: &str,
        language: Analyzer,
    ) -> Result<KbConfig> {
        let dir = self.dir(name)?;
        if dir.join("config.json").exists() {
            return Err(Error::Invalid(format!(
                "knowledge base '{name}' already exists"
            )));
        }
        let cfg = KbConfig {
            name: name.to_string(),
            embedder: embedder.to_string(),
            dim,
            store: store.to_string(),
            roots: Vec::new(),
            created: now(),
        };
        if store != "sqlite" && !cfg.is_postgres() {
            return Err(Error::Invalid(format!(
                "unknown store '{store}': use sqlite or a postgres:// URL"
            )));
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        let info = StoreInfo {
            embedder: embedder.to_string(),
            dim,
            language,
        };
        let made = if cfg.is_postgres() {
            PgStore::create(store, name, info).map(|_| ())
        } else {
            SqliteStore::create(&Self::sqlite_path(&dir), info).map(|_| ())
        };
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.save(&cfg)?;
        Ok(cfg)
    }

    /// Writes a config atomically (temp file + rename), readable by the owner only (it may hold a database URL).
    pub fn save(&self, cfg: &KbConfig) -> Result<()> {
        let dir = self.dir(&cfg.name)?;
        let tmp = dir.join("config.json.tmp");
        let text = serde_json::to_string_pretty(cfg).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(tmp.display(), e))?;
        std::fs::rename(&tmp, dir.join("config.json")).map_err(|e| Error::io(dir.display(), e))
    }

    pub fn get(&self, name: &str) -> Result<KbConfig> {
        let path = self.dir(name)?.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(name.to_string()));
            }
            Err(e) => return Err(Error::io(path.display(), e)),
        };
        serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    /// The names of the knowledge bases (directories with a config), sorted; their configs are not read.
    pub fn names(&self) -> Result<Vec<String>> {
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(self.root.display(), e)),
        };
        let mut out: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| check_name(n).is_ok() && self.root.join(n).join("config.json").exists())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every knowledge base, by name.
    pub fn list(&self) -> Result<Vec<KbConfig>> {
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(self.root.display(), e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if check_name(&name).is_ok() && e.path().join("config.json").exists() {
                out.push(self.get(&name)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Opens a knowledge base's store and checks it was made for the same embedder.
    pub fn open(&self, cfg: &KbConfig) -> Result<Box<dyn Store>> {
        let store: Box<dyn Store> = if cfg.is_postgres() {
            Box::new(PgStore::open(&cfg.store, &cfg.name)?)
        } else {
            Box::new(SqliteStore::open(&Self::sqlite_path(
                &self.dir(&cfg.name)?,
            ))?)
        };
        let info = store.info();
        if info.dim != cfg.dim || info.embedder != cfg.embedder {
            return Err(Error::Invalid(format!(
                "knowledge base '{}': its store was made by {} ({} dims), the config says {} ({} dims)",
                cfg.name, info.embedder, info.dim, cfg.embedder, cfg.dim
            )));
        }
        Ok(store)
    }

    /// Removes a knowledge base: its directory and, for PostgreSQL, its schema. The indexed files are not touched.
    pub fn remove(&self, name: &str) -> Result<()> {
        let cfg = self.get(name)?;
        if cfg.is_postgres() {
            PgStore::drop_kb(&cfg.store, name)?;
        }
        let dir = self.dir(name)?;
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_registry() {
        for bad in ["", "../x", "a/b", ".hidden", "a b", "x\0", &"n".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["notes", "Mail_2024", "a-b", "9"] {
            check_name(good).unwrap();
        }
    }
}
