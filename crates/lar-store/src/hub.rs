//! The Hugging Face Hub's HTTP API, spoken as the `huggingface_hub` library speaks it:
//!
//! ```text
//! GET  {ep}/api/models/{repo}/revision/{rev}               {"sha": commit, "siblings": [...]}
//! GET  {ep}/api/models/{repo}/tree/{commit}?recursive=true  [{type, path, size, oid, lfs: {oid, size}}], pages
//!                                                            linked by `Link: <...>; rel="next"`
//! GET  {ep}/{repo}/resolve/{commit}/{path}                   the file; LFS files answer 302 to a CDN, with
//!                                                            X-Repo-Commit, X-Linked-Etag (sha256), X-Linked-Size
//! ```
//! The endpoint is `HF_ENDPOINT` (default `https://huggingface.co`); the token `HF_TOKEN`, else the file that
//! `huggingface-cli login` writes (`HF_TOKEN_PATH`, else `$HF_HOME/token`, else `~/.cache/huggingface/token`),
//! sent as `Authorization: Bearer` to the endpoint's origin only (never to the CDN a download is redirected to).
//! `LAR_OFFLINE` (or `HF_HUB_OFFLINE`) refuses every request.

use std::path::{Path, PathBuf};

use reqwest::Url;

use crate::http::{Download, Http};
use crate::{Error, Result};

/// Where the Hub is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// Base URL, without a trailing `/`.
    pub endpoint: String,
    pub token: Option<String>,
    pub offline: bool,
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

impl HubConfig {
    /// From the environment (see the module documentation).
    pub fn from_env() -> Self {
        let endpoint = env("HF_ENDPOINT")
            .unwrap_or_else(|| "https://huggingface.co".into())
            .trim()
            .trim_end_matches('/')
            .to_string();
        let token_file = env("HF_TOKEN_PATH").map(PathBuf::from).unwrap_or_else(|| {
            env("HF_HOME")
                .map_or_else(
                    || {
                        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                            .join(".cache/huggingface")
                    },
                    PathBuf::from,
                )
                .join("token")
        });
        let token = env("HF_TOKEN")
            .or_else(|| std::fs::read_to_string(token_file).ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let hf_offline = env("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
        });
        Self {
            endpoint,
            token,
            offline: crate::http::offline() || hf_offline,
        }
    }
}

/// A file of a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubFile {
    /// Path in the repo (`model-Q4_K_M.gguf`, `onnx/model.onnx`).
    pub path: String,
    pub size: u64,
    /// The sha256 the Hub publishes for LFS files (lowercase hex).
    pub sha256: Option<String>,
    /// The git blob id (sha1 of `blob <size>\0<content>`), for files stored in git itself.
    pub git_oid: Option<String>,
}

/// A repo at one commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoInfo {
    pub repo: String,
    /// The commit the revision resolved to (40 hex digits).
    pub commit: String,
    /// Every file of the commit, in the Hub's order.
    pub files: Vec<HubFile>,
}

/// A client for one Hub endpoint.
pub struct HubClient {
    http: Http,
    endpoint: String,
    has_token: bool,
}

/// Percent-encodes `s` for a URL path (`/` kept when `keep_slash`).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

/// A file entry of the tree API; `None` for directories.
fn tree_entry(e: &serde_json::Value) -> std::result::Result<Option<HubFile>, String> {
    if e["type"] != "file" {
        return Ok(None);
    }
    let path = e["path"].as_str().ok_or("an entry without a path")?;
    if path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || path.chars().any(|c| c.is_control() || c == '\\')
    {
        return Err(format!("file path {path:?} is not a plain relative path"));
    }
    let lfs = &e["lfs"];
    let size = lfs["size"]
        .as_u64()
        .or_else(|| e["size"].as_u64())
        .ok_or_else(|| format!("{path}: no size"))?;
    let hex = |v: &serde_json::Value, n| {
        v.as_str()
            .filter(|s| is_hex(s, n))
            .map(str::to_ascii_lowercase)
    };
    let sha256 = hex(&lfs["oid"], 64);
    if lfs.is_object() && sha256.is_none() {
        return Err(format!("{path}: an LFS file without a sha256"));
    }
    Ok(Some(HubFile {
        path: path.to_string(),
        size,
        sha256,
        git_oid: hex(&e["oid"], 40),
    }))
}

impl HubClient {
    /// A client configured from the environment ([`HubConfig::from_env`]).
    pub fn new() -> Result<Self> {
        Self::with_config(HubConfig::from_env())
    }

    pub fn with_config(c: HubConfig) -> Result<Self> {
        let endpoint = c.endpoint.trim_end_matches('/').to_string();
        Url::parse(&endpoint)
            .map_err(|e| Error::Invalid(format!("HF_ENDPOINT {endpoint:?}: {e}")))?;
        let mut http = Http::new()?.with_offline(c.offline);
        if let Some(t) = &c.token {
            http = http.with_bearer(&endpoint, t)?;
        }
        Ok(Self {
            http,
            endpoint,
            has_token: c.token.is_some(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The Hub's answer `e` to a request about `repo` (`what`: the revision, the file), in words.
    fn hub_error(&self, repo: &str, what: &str, e: Error) -> Error {
        let Error::Http { status, .. } = e else {
            return e;
        };
        let at = format!("hf:{repo} on {}", self.endpoint);
        Error::Invalid(match (status, self.has_token) {
            (401, false) => format!(
                "{at}: no such repo, or it is private or gated and needs a token: set HF_TOKEN (HTTP 401)"
            ),
            (401, true) => {
                format!("{at}: no such repo, or HF_TOKEN gives no access to it (HTTP 401)")
            }
            (403, _) => format!(
                "{at}: access denied (HTTP 403); a gated repo needs its terms accepted on the Hub and HF_TOKEN set"
            ),
            (404, _) => format!("{at}: {what} not found (HTTP 404)"),
            (s, _) => format!("{at}: {what}: HTTP {s}"),
        })
    }

    /// Resolves `revision` (a branch, tag or commit) to a commit and lists that commit's files.
    pub fn repo_files(&self, repo: &str, revision: &str) -> Result<RepoInfo> {
        crate::hf::check_repo(repo)?;
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            encode(revision, false)
        );
        let not_found = || {
            Error::Invalid(format!(
                "hf:{repo}: no such repo or revision '{revision}' on {}",
                self.endpoint
            ))
        };
        let v = self
            .http
            .get_json(&url)
            .map_err(|e| self.hub_error(repo, &format!("revision {revision}"), e))?
            .ok_or_else(not_found)?;
        let commit = v["sha"]
            .as_str()
            .filter(|s| is_hex(s, 40))
            .ok_or_else(|| Error::Invalid(format!("{url}: no commit sha in the answer")))?
            .to_ascii_lowercase();
        let mut url = format!(
            "{}/api/models/{repo}/tree/{commit}?recursive=true",
            self.endpoint
        );
        let mut files = Vec::new();
        for _page in 0..10_000 {
            let (v, hops) = self
                .http
                .get_json_page(&url)
                .map_err(|e| self.hub_error(repo, &format!("the file list of {commit}"), e))?
                .ok_or_else(not_found)?;
            let entries = v
                .as_array()
                .ok_or_else(|| Error::Invalid(format!("{url}: the file list is not a list")))?;
            for e in entries {
                if let Some(f) = tree_entry(e).map_err(|m| Error::Invalid(format!("{url}: {m}")))? {
                    files.push(f);
                }
            }
            let Some(next) = hops.header("link").and_then(next_link) else {
                return Ok(RepoInfo {
                    repo: repo.to_string(),
                    commit,
                    files,
                });
            };
            let next = Url::parse(&url)
                .and_then(|u| u.join(next))
                .map_err(|e| Error::Invalid(format!("{url}: next page {next}: {e}")))?;
            url = next.to_string();
        }
        Err(Error::Invalid(format!(
            "hf:{repo}: the file list has more than 10000 pages"
        )))
    }

    /// The download URL of `path` at `commit`.
    pub fn file_url(&self, repo: &str, commit: &str, path: &str) -> String {
        format!(
            "{}/{repo}/resolve/{}/{}",
            self.endpoint,
            encode(commit, false),
            encode(path, true)
        )
    }

    /// `len` bytes of `path` at `commit` from byte `start` (fewer at the end of the file), and the file's whole
    /// length: a `Range` request, for reading a model's header without downloading it.
    pub fn read_range(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
        start: u64,
        len: u64,
    ) -> Result<(Vec<u8>, u64)> {
        crate::hf::check_repo(repo)?;
        self.http
            .get_range(&self.file_url(repo, commit, path), start, len)
            .map_err(|e| self.hub_error(repo, path, e))
    }

    /// Downloads `path` at `commit` into `part`, resuming what is there; the answer carries the Hub's headers
    /// (`X-Repo-Commit`, `X-Linked-Etag`, ...). `progress(done, total)`.
    pub fn download(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
        part: &Path,
        progress: &dyn Fn(u64, u64),
    ) -> Result<Download> {
        crate::hf::check_repo(repo)?;
        self.http
            .download(&self.file_url(repo, commit, path), part, progress)
            .map_err(|e| self.hub_error(repo, path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(encode("a b/c+d.gguf", true), "a%20b/c%2Bd.gguf");
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
    }

    #[test]
    fn link_headers_give_the_next_page() {
        assert_eq!(
            next_link(r#"<https://hf.co/api/models/a/b/tree/x?cursor=abc>; rel="next""#),
            Some("https://hf.co/api/models/a/b/tree/x?cursor=abc")
        );
        assert_eq!(
            next_link(r#"</p1>; rel="prev", </p3>; rel="next""#),
            Some("/p3")
        );
        assert_eq!(next_link(r#"</p1>; rel="prev""#), None);
    }

    #[test]
    fn tree_entries_parse_and_hostile_paths_are_refused() {
        let sha = "a".repeat(64);
        let oid = "b".repeat(40);
        let e = serde_json::json!({"type": "file", "path": "m.gguf", "size": 5, "oid": oid,
            "lfs": {"oid": sha, "size": 7, "pointerSize": 130}});
        let f = tree_entry(&e).expect("entry").expect("a file");
        assert_eq!((f.size, f.sha256.as_deref()), (7, Some(sha.as_str())));
        assert_eq!(f.git_oid.as_deref(), Some(oid.as_str()));
        let dir = serde_json::json!({"type": "directory", "path": "onnx", "size": 0});
        assert_eq!(tree_entry(&dir), Ok(None));
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", "a\\b", ""] {
            let e = serde_json::json!({"type": "file", "path": bad, "size": 1});
            assert!(tree_entry(&e).is_err(), "{bad:?} accepted");
        }
        let e = serde_json::json!({"type": "file", "path": "x", "size": 1, "lfs": {"oid": "zz"}});
        assert!(tree_entry(&e).is_err());
    }
}
