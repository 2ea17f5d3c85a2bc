//! `hf:ORG/REPO[:QUANT_OR_FILE][@REVISION]`: models from the Hugging Face Hub, through its HTTP API as the
//! `huggingface_hub` library speaks it ([`HubClient`]).
//!
//! The revision (default `main`: a branch, tag or commit) is resolved to a commit, the commit's files are listed,
//! and the manifest pins that commit (`source` `hf:ORG/REPO[:SELECTOR]@COMMIT`, `revision` the commit). What is
//! pulled ([`HfSource::choose`]): one GGUF file, chosen by quant name (`Q4_K_M`, matched case-insensitively as a
//! whole word of the file name) or by file name, or, for a repo without GGUF files that has `config.json` and
//! safetensors weights, the directory model (config, tokenizer, template and the weights the loader reads).
//! Split GGUF files (`-00001-of-00003.gguf`) are refused: the loader reads one file.
//!
//! Each file is downloaded into the store's `tmp/hf-<id>.part` (a later attempt resumes it), checked against what
//! the Hub publishes (the sha256 of LFS files, the git blob id of small ones), and moved into place as a blob; a
//! file that fails the check is deleted.

use std::fmt;
use std::io::Read;
use std::path::Path;

use sha1::Digest as _;

use crate::hub::is_hex;
pub use crate::hub::{HubClient, HubConfig, HubFile, RepoInfo};
use crate::store::{check_gguf, now, wanted_in_dir};
use crate::{Error, FileEntry, Manifest, ModelName, Result, Store};

/// A parsed `hf:` source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HfSource {
    /// `ORG/REPO`.
    pub repo: String,
    /// A quant name (`Q4_K_M`) or a file path in the repo.
    pub select: Option<String>,
    /// A branch, tag or commit; `None` is `main`.
    pub revision: Option<String>,
}

/// What to pull from a repo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// One GGUF file.
    Gguf(HubFile),
    /// A Hugging Face model directory: config, tokenizer, template and safetensors files (all of the repo's
    /// safetensors files; [`pull`] keeps the ones `model.safetensors.index.json` names, as the loader does).
    Directory(Vec<HubFile>),
}

/// Hugging Face's rules for a repo name part: letters, digits, `-`, `_`, `.`; no `--` or `..`; not starting or
/// ending with `-` or `.`; at most 96 characters.
fn valid_repo_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.contains("--")
        && !s.contains("..")
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

fn valid_repo(repo: &str) -> bool {
    repo.split_once('/')
        .is_some_and(|(org, name)| valid_repo_part(org) && valid_repo_part(name))
}

/// Refuses a repo id that is not `ORG/REPO` (it becomes part of a URL path).
pub(crate) fn check_repo(repo: &str) -> Result<()> {
    if valid_repo(repo) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "'{repo}' is not a Hugging Face repo id (ORG/REPO)"
        )))
    }
}

impl HfSource {
    /// Parses `hf:ORG/REPO[:QUANT_OR_FILE][@REVISION]` (the `hf:` prefix is optional).
    pub fn parse(s: &str) -> Result<Self> {
        let spec = s.strip_prefix("hf:").unwrap_or(s);
        let bad = |why: &str| {
            Error::Invalid(format!(
                "'{s}' is not hf:ORG/REPO[:QUANT_OR_FILE][@REVISION]: {why}"
            ))
        };
        let (rest, revision) = match spec.split_once('@') {
            Some((a, r)) => (a, Some(r)),
            None => (spec, None),
        };
        let (repo, select) = match rest.split_once(':') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        if !valid_repo(repo) {
            return Err(bad("the repo must be ORG/REPO"));
        }
        if let Some(q) = select
            && (q.is_empty()
                || q.len() > 512
                || q.starts_with('/')
                || q.split('/').any(|c| c.is_empty() || c == "." || c == "..")
                || q.chars().any(|c| c.is_control() || c == '\\'))
        {
            return Err(bad(
                "the quant or file name is empty or not a relative path",
            ));
        }
        if let Some(r) = revision
            && (r.is_empty()
                || r.len() > 256
                || r.contains("..")
                || !r
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
        {
            return Err(bad("the revision is not a branch, tag or commit"));
        }
        Ok(Self {
            repo: repo.to_string(),
            select: select.map(str::to_string),
            revision: revision.map(str::to_string),
        })
    }

    /// The revision to resolve: the one given, else `main`.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    /// The name a pull stores this under by default: the repo's name lowercased, tagged with the quant (or the
    /// chosen file's stem) when there is one, else `latest`. Always a valid [`ModelName`].
    pub fn default_name(&self) -> String {
        let clean = |s: &str| -> String {
            let c: String = s
                .to_ascii_lowercase()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '-'
                    }
                })
                .take(128)
                .collect();
            let c = c.trim_start_matches('.');
            if c.is_empty() {
                "model".into()
            } else {
                c.into()
            }
        };
        let name = clean(self.repo.rsplit('/').next().unwrap_or(&self.repo));
        match &self.select {
            Some(q) => {
                let file = q.rsplit('/').next().unwrap_or(q);
                let stem = strip_suffix_ci(file, ".gguf").unwrap_or(file);
                format!("{name}:{}", clean(stem))
            }
            None => name,
        }
    }

    /// Chooses what to pull from the repo's files; errors list the GGUF files there are.
    pub fn choose(&self, info: &RepoInfo) -> Result<Selection> {
        let ggufs: Vec<&HubFile> = info.files.iter().filter(|f| is_gguf(&f.path)).collect();
        let listing = || {
            if ggufs.is_empty() {
                "the repo has no GGUF files".to_string()
            } else {
                let names: Vec<&str> = ggufs.iter().map(|f| f.path.as_str()).collect();
                format!("GGUF files: {}", names.join(", "))
            }
        };
        let at = format!("hf:{}@{}", self.repo, short(&info.commit));
        let Some(sel) = &self.select else {
            return match &groups(&ggufs)[..] {
                [one] => one_gguf(one, &at),
                [] => directory(info, &at),
                _ => Err(Error::Invalid(format!(
                    "{at} has several GGUF files: choose one by quant (hf:{}:Q4_K_M) or file name; {}",
                    self.repo,
                    listing()
                ))),
            };
        };
        // An exact path, or an exact file name.
        if let Some(f) = info.files.iter().find(|f| f.path == *sel) {
            if !is_gguf(&f.path) {
                return Err(Error::Invalid(format!(
                    "{at}: {sel} is not a GGUF file; {}",
                    listing()
                )));
            }
            return one_gguf(&groups(&[f])[0], &at);
        }
        let by_name: Vec<&HubFile> = ggufs
            .iter()
            .copied()
            .filter(|f| base_name(&f.path).eq_ignore_ascii_case(sel))
            .collect();
        let matched = if by_name.is_empty() {
            ggufs
                .iter()
                .copied()
                .filter(|f| has_word(base_name(&f.path), sel))
                .collect()
        } else {
            by_name
        };
        match &groups(&matched)[..] {
            [one] => one_gguf(one, &at),
            [] => Err(Error::Invalid(format!(
                "{at}: no GGUF file matches '{sel}'; {}",
                listing()
            ))),
            _ => Err(Error::Invalid(format!(
                "{at}: '{sel}' matches several GGUF files ({}); name one file: hf:{}:FILE",
                matched
                    .iter()
                    .map(|f| f.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.repo
            ))),
        }
    }
}

impl fmt::Display for HfSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hf:{}", self.repo)?;
        if let Some(q) = &self.select {
            write!(f, ":{q}")?;
        }
        if let Some(r) = &self.revision {
            write!(f, "@{r}")?;
        }
        Ok(())
    }
}

/// The first 12 characters of a commit id, as people quote them.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    (s.is_char_boundary(cut) && s[cut..].eq_ignore_ascii_case(suffix)).then(|| &s[..cut])
}

fn is_gguf(path: &str) -> bool {
    strip_suffix_ci(path, ".gguf").is_some()
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether `word` occurs in `name` case-insensitively, not inside a longer word: the characters around it are not
/// letters, digits or `_` (`Q4_K` does not match `Q4_K_M`, `F16` does not match `BF16`).
fn has_word(name: &str, word: &str) -> bool {
    let (n, w) = (name.to_ascii_lowercase(), word.to_ascii_lowercase());
    let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    n.match_indices(&w)
        .any(|(i, _)| !part(n[..i].chars().next_back()) && !part(n[i + w.len()..].chars().next()))
}

/// `(prefix, index, count)` of a split GGUF file name `PREFIX-00001-of-00003.gguf`.
fn split_part(path: &str) -> Option<(&str, u32, u32)> {
    let stem = strip_suffix_ci(path, ".gguf")?;
    let (left, count) = stem.rsplit_once("-of-")?;
    let (prefix, index) = left.rsplit_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(count) {
        return None;
    }
    Some((prefix, index.parse().ok()?, count.parse().ok()?))
}

/// GGUF files grouped into models: a split model's parts are one group.
fn groups<'a>(files: &[&'a HubFile]) -> Vec<Vec<&'a HubFile>> {
    let mut out: Vec<(String, Vec<&HubFile>)> = Vec::new();
    for f in files {
        let key = split_part(&f.path).map_or(f.path.clone(), |(p, _, _)| format!("{p}/split"));
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(f),
            None => out.push((key, vec![f])),
        }
    }
    out.into_iter().map(|(_, v)| v).collect()
}

fn one_gguf(group: &[&HubFile], at: &str) -> Result<Selection> {
    match group {
        [f] if split_part(&f.path).is_none_or(|(_, _, n)| n == 1) => {
            Ok(Selection::Gguf((*f).clone()))
        }
        _ => Err(Error::Invalid(format!(
            "{at}: {} is a GGUF split into {} files; split GGUF models are not supported (join them with \
             llama-gguf-split --merge and import the result)",
            group[0].path,
            split_part(&group[0].path).map_or(group.len() as u32, |(_, _, n)| n)
        ))),
    }
}

/// The directory model of a repo with `config.json` and safetensors weights at its top level.
fn directory(info: &RepoInfo, at: &str) -> Result<Selection> {
    let top: Vec<&HubFile> = info
        .files
        .iter()
        .filter(|f| !f.path.contains('/') && wanted_in_dir(&f.path))
        .collect();
    let has = |pred: &dyn Fn(&str) -> bool| top.iter().any(|f| pred(&f.path));
    if !has(&|p| p == "config.json") || !has(&|p| p.ends_with(".safetensors")) {
        return Err(Error::Invalid(format!(
            "{at} has no GGUF file and is not a transformers model (config.json with *.safetensors weights); \
             files: {}",
            info.files
                .iter()
                .map(|f| f.path.as_str())
                .take(40)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    // The loader reads the shards the index names, else model.safetensors, else every safetensors file.
    let indexed = has(&|p| p == "model.safetensors.index.json");
    let single = has(&|p| p == "model.safetensors");
    Ok(Selection::Directory(
        top.into_iter()
            .filter(|f| {
                !f.path.ends_with(".safetensors")
                    || indexed
                    || !single
                    || f.path == "model.safetensors"
            })
            .cloned()
            .collect(),
    ))
}

/// Downloads one file of the pinned commit into the store: resumable, checked against the Hub's sha256 (LFS) or
/// git blob id, then moved into place as a blob.
fn fetch_file(
    client: &HubClient,
    store: &Store,
    repo: &str,
    commit: &str,
    f: &HubFile,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<FileEntry> {
    let name = base_name(&f.path).to_string();
    let id = f
        .sha256
        .clone()
        .or_else(|| f.git_oid.clone())
        .unwrap_or_else(|| {
            format!(
                "{:x}",
                sha2::Sha256::digest(format!("{repo}/{commit}/{}", f.path))
            )
        });
    let part = store.root().join("tmp").join(format!("hf-{id}.part"));
    let dl = client
        .download(repo, commit, &f.path, &part, &|d, t| {
            progress(&name, d, t.max(f.size))
        })
        .map_err(|e| store.disk_full(e))?;
    let what = format!("hf:{repo}@{} {}", short(commit), f.path);
    let fail = |e: Error| {
        let _ = std::fs::remove_file(&part);
        Err(e)
    };
    if let Some(c) = dl.hops.header("x-repo-commit")
        && c != commit
    {
        return fail(Error::Invalid(format!(
            "{what}: the Hub served commit {c}, not the pinned {commit}"
        )));
    }
    // The sha256 published for LFS files: the tree's LFS oid, else the redirect's X-Linked-Etag.
    let linked = dl
        .hops
        .header("x-linked-etag")
        .map(|e| {
            e.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_ascii_lowercase()
        })
        .filter(|e| is_hex(e, 64));
    let want = f.sha256.clone().or(linked);
    if dl.size < f.size {
        return Err(Error::Invalid(format!(
            "{what}: the download stopped at {} of {} bytes; pull again to resume",
            dl.size, f.size
        )));
    }
    if dl.size > f.size {
        return fail(Error::Invalid(format!(
            "{what}: {} bytes downloaded, the Hub lists {}",
            dl.size, f.size
        )));
    }
    let got = crate::sha256_file(&part, &|_, _| {})?;
    if let Some(want) = want {
        if got != want {
            return fail(Error::Corrupt {
                name: format!("hf:{repo}"),
                file: f.path.clone(),
                got,
                want,
            });
        }
    } else if let Some(oid) = &f.git_oid {
        let blob = git_blob_id(&part)?;
        if blob != *oid {
            return fail(Error::Invalid(format!(
                "hf:{repo}: {} is corrupt: git blob id {blob}, expected {oid}",
                f.path
            )));
        }
    }
    if is_gguf(&f.path)
        && let Err(e) = check_gguf(&part)
    {
        return fail(Error::Invalid(format!("{what}: {e}")));
    }
    store.adopt(&part, &got, &name)
}

/// Git's id of a file's content: sha1 of `blob <size>\0<content>`.
fn git_blob_id(path: &Path) -> Result<String> {
    let io = |cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {size}\0"));
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            return Ok(format!("{:x}", h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Pulls `src` into the store as `name`, pinned to the commit its revision points at now. If it fails part way,
/// the files it stored that no other model uses are removed again.
pub fn pull(
    client: &HubClient,
    store: &Store,
    src: &HfSource,
    name: &ModelName,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<Manifest> {
    let info = client.repo_files(&src.repo, src.revision())?;
    let selection = src.choose(&info)?;
    let stored = std::cell::RefCell::new(Vec::new());
    let fetch = |f: &HubFile| {
        let e = fetch_file(client, store, &src.repo, &info.commit, f, progress)?;
        stored.borrow_mut().push(e.sha256.clone());
        Ok::<_, Error>(e)
    };
    let result = (|| {
        let (format, files) = match selection {
            Selection::Gguf(f) => ("gguf", vec![fetch(&f)?]),
            Selection::Directory(all) => (
                "safetensors",
                fetch_directory(src, &info, &all, store, &fetch)?,
            ),
        };
        let pinned = HfSource {
            revision: Some(info.commit.clone()),
            ..src.clone()
        };
        let m = Manifest {
            name: name.name.clone(),
            tag: name.tag.clone(),
            format: format.into(),
            source: pinned.to_string(),
            revision: Some(info.commit.clone()),
            files,
            created: now(),
        };
        store.put_manifest(&m)?;
        Ok(m)
    })();
    if result.is_err() {
        let _ = store.remove_unreferenced(stored.borrow().iter().map(String::as_str));
    }
    result
}

const INDEX: &str = "model.safetensors.index.json";

/// The files of a directory model; with an index, only the shards it names (the loader reads those), checked to be
/// in the repo before any weights are downloaded.
fn fetch_directory(
    src: &HfSource,
    info: &RepoInfo,
    all: &[HubFile],
    store: &Store,
    fetch: &dyn Fn(&HubFile) -> Result<FileEntry>,
) -> Result<Vec<FileEntry>> {
    let mut files = Vec::new();
    let mut wanted: Vec<&HubFile> = all.iter().filter(|f| f.path != INDEX).collect();
    if let Some(index) = all.iter().find(|f| f.path == INDEX) {
        let e = fetch(index)?;
        let shards = index_shards(&store.blob_path(&e.sha256))?;
        if let Some(missing) = shards.iter().find(|s| !all.iter().any(|f| f.path == **s)) {
            return Err(Error::Invalid(format!(
                "hf:{}@{}: {INDEX} names {missing}, which the repo lacks",
                src.repo,
                short(&info.commit)
            )));
        }
        wanted.retain(|f| !f.path.ends_with(".safetensors") || shards.contains(&f.path));
        files.push(e);
    }
    for f in wanted {
        files.push(fetch(f)?);
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The shard file names of a `model.safetensors.index.json`.
fn index_shards(path: &Path) -> Result<std::collections::BTreeSet<String>> {
    let bad = |m: String| Error::Invalid(format!("model.safetensors.index.json: {m}"));
    let text = std::fs::read_to_string(path).map_err(|cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| bad("no weight_map object".into()))?;
    map.values()
        .map(|s| {
            s.as_str()
                .filter(|s| !s.is_empty() && !s.contains(['/', '\\']) && !s.starts_with('.'))
                .map(str::to_string)
                .ok_or_else(|| bad(format!("shard {s} is not a plain file name")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> HubFile {
        HubFile {
            path: path.into(),
            size: 1,
            sha256: None,
            git_oid: None,
        }
    }

    fn repo(paths: &[&str]) -> RepoInfo {
        RepoInfo {
            repo: "o/r".into(),
            commit: "c".repeat(40),
            files: paths.iter().map(|p| file(p)).collect(),
        }
    }

    #[test]
    fn sources_parse() {
        let s = HfSource::parse("hf:bartowski/SmolLM2-135M-GGUF:Q4_K_M@v1.0").expect("parse");
        assert_eq!(s.repo, "bartowski/SmolLM2-135M-GGUF");
        assert_eq!(s.select.as_deref(), Some("Q4_K_M"));
        assert_eq!(s.revision(), "v1.0");
        assert_eq!(s.to_string(), "hf:bartowski/SmolLM2-135M-GGUF:Q4_K_M@v1.0");
        assert_eq!(s.default_name(), "smollm2-135m-gguf:q4_k_m");
        let s = HfSource::parse("hf:o/r").expect("parse");
        assert_eq!((s.select.as_deref(), s.revision()), (None, "main"));
        let s = HfSource::parse("o/r:sub/model.Q8_0.gguf@refs/pr/1").expect("parse");
        assert_eq!(s.select.as_deref(), Some("sub/model.Q8_0.gguf"));
        assert_eq!(s.revision(), "refs/pr/1");
        assert_eq!(s.default_name(), "r:model.q8_0");
        assert!(ModelName::parse(&s.default_name()).is_ok());
        for bad in [
            "hf:",
            "hf:repo",
            "hf:o/r/x",
            "hf:../r",
            "hf:o/r:",
            "hf:o/r:../x",
            "hf:o/r:/etc/x",
            "hf:o/r@",
            "hf:o/r@a..b",
            "hf:o/r@a b",
            "hf:-o/r",
            "hf:o--x/r",
            "hf:o/r:a\\b",
        ] {
            assert!(HfSource::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn quant_names_match_whole_words() {
        assert!(has_word("SmolLM2-135M-Instruct-Q4_K_M.gguf", "q4_k_m"));
        assert!(has_word("model.Q8_0.gguf", "Q8_0"));
        assert!(!has_word("model-Q4_K_M.gguf", "Q4_K"));
        assert!(!has_word("model-BF16.gguf", "F16"));
        assert!(!has_word("model-IQ4_XS.gguf", "Q4_XS"));
        assert!(has_word("model-Q4_K_M-00001-of-00002.gguf", "Q4_K_M"));
        assert_eq!(
            split_part("m-Q4_K_M-00002-of-00003.gguf"),
            Some(("m-Q4_K_M", 2, 3))
        );
        assert_eq!(split_part("m-Q4_K_M.gguf"), None);
    }

    #[test]
    fn choosing_files() {
        let info = repo(&[
            "README.md",
            "m-Q4_K_M.gguf",
            "m-Q4_K_S.gguf",
            "m-Q8_0.gguf",
            "big/m-F16-00001-of-00002.gguf",
            "big/m-F16-00002-of-00002.gguf",
        ]);
        let pick = |sel: Option<&str>| {
            HfSource {
                repo: "o/r".into(),
                select: sel.map(str::to_string),
                revision: None,
            }
            .choose(&info)
        };
        assert_eq!(
            pick(Some("q4_k_m")).ok(),
            Some(Selection::Gguf(file("m-Q4_K_M.gguf")))
        );
        assert_eq!(
            pick(Some("m-Q8_0.gguf")).ok(),
            Some(Selection::Gguf(file("m-Q8_0.gguf")))
        );
        let e = pick(Some("Q5_K_M")).unwrap_err().to_string();
        assert!(
            e.contains("no GGUF file matches 'Q5_K_M'") && e.contains("m-Q8_0.gguf"),
            "{e}"
        );
        let e = pick(Some("m-Q4")).unwrap_err().to_string();
        assert!(e.contains("no GGUF file matches"), "{e}");
        let e = pick(None).unwrap_err().to_string();
        assert!(
            e.contains("several GGUF files") && e.contains("m-Q4_K_S.gguf"),
            "{e}"
        );
        let e = pick(Some("F16")).unwrap_err().to_string();
        assert!(e.contains("split into 2 files"), "{e}");
        let e = pick(Some("README.md")).unwrap_err().to_string();
        assert!(e.contains("is not a GGUF file"), "{e}");
    }

    #[test]
    fn directory_models() {
        let info = repo(&[
            "config.json",
            "tokenizer.json",
            "README.md",
            "model.safetensors",
            "consolidated.safetensors",
            "onnx/model.onnx",
        ]);
        let src = HfSource::parse("o/r").expect("parse");
        let Ok(Selection::Directory(files)) = src.choose(&info) else {
            panic!("not a directory model");
        };
        let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            ["config.json", "tokenizer.json", "model.safetensors"]
        );
        let e = src
            .choose(&repo(&["README.md", "x.bin"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a transformers model"), "{e}");
    }
}
