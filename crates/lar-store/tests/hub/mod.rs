//! A local stand-in for the Hugging Face Hub, for the `hf:` tests (the real Hub is not reachable from the test
//! machines): an HTTP/1.1 server on std::net only (a thread per connection, `Connection: close`, GET and HEAD)
//! that answers the endpoints `huggingface_hub` uses, for repos built in memory from real files:
//!
//! - `/api/models/ORG/REPO/revision/REV`: `{"id", "sha", "siblings"}` (a branch or a commit);
//! - `/api/models/ORG/REPO/tree/COMMIT?recursive=true`: file entries with git blob ids and, for LFS files,
//!   `lfs: {oid: sha256, size}`, two per page with a `Link: <...>; rel="next"` header;
//! - `/ORG/REPO/resolve/REV/PATH`: LFS files answer 302 to `/cdn/SHA256` on another origin (`localhost` where the
//!   Hub is `127.0.0.1`), with `X-Repo-Commit`, `X-Linked-Etag`, `X-Linked-Size`, `ETag`; small files are served
//!   directly;
//! - `/cdn/SHA256`: the bytes, honouring `Range: bytes=N-` and `bytes=N-M` (206 + `Content-Range`, 416 past the
//!   end).
//!
//! A token can be required (401 without `Authorization: Bearer TOKEN` on the Hub's own endpoints, as for a
//! private repo), a file's content can be tampered with (the server then serves bytes that do not match what it
//! publishes), and every request is logged for the tests to inspect.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha1::Digest as _;

/// Files per page of the tree listing (small, so that pagination is exercised).
const PAGE: usize = 2;

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Clone)]
struct File {
    path: String,
    bytes: Arc<Vec<u8>>,
    lfs: bool,
    sha256: String,
    git_oid: String,
}

#[derive(Default)]
struct Repo {
    branches: BTreeMap<String, String>,
    commits: BTreeMap<String, Vec<File>>,
}

#[derive(Default)]
struct State {
    repos: Mutex<BTreeMap<String, Repo>>,
    token: Mutex<Option<String>>,
    tampered: Mutex<HashSet<String>>,
    log: Mutex<Vec<Request>>,
    port: Mutex<u16>,
}

/// The running server; it stops with the test process.
pub struct Hub {
    /// `http://127.0.0.1:PORT`: what `HF_ENDPOINT` is set to.
    pub url: String,
    state: Arc<State>,
}

pub fn sha256_hex(b: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(b))
}

fn git_oid(b: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", b.len()));
    h.update(b);
    format!("{:x}", h.finalize())
}

impl Hub {
    pub fn start() -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(State::default());
        *state.port.lock().unwrap() = port;
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(&s, conn);
                });
            }
        });
        Hub {
            url: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    /// Adds a commit holding `files` (path, content) to `repo` and points `branch` at it; returns the commit id.
    /// `.gguf` and `.safetensors` files are stored in LFS, others in git.
    pub fn commit(&self, repo: &str, branch: &str, files: &[(&str, Vec<u8>)]) -> String {
        let mut repos = self.state.repos.lock().unwrap();
        let r = repos.entry(repo.to_string()).or_default();
        let files: Vec<File> = files
            .iter()
            .map(|(p, b)| File {
                path: p.to_string(),
                lfs: p.ends_with(".gguf") || p.ends_with(".safetensors"),
                sha256: sha256_hex(b),
                git_oid: git_oid(b),
                bytes: Arc::new(b.clone()),
            })
            .collect();
        let id = git_oid(format!("{repo} {} {branch}", r.commits.len()).as_bytes());
        r.commits.insert(id.clone(), files);
        r.branches.insert(branch.to_string(), id.clone());
        id
    }

    /// Requires `Authorization: Bearer TOKEN` on the Hub's endpoints (not the CDN's).
    pub fn require_token(&self, token: &str) {
        *self.state.token.lock().unwrap() = Some(token.to_string());
    }

    /// Serves the file whose sha256 is `sha256` with one byte changed.
    pub fn tamper(&self, sha256: &str) {
        self.state
            .tampered
            .lock()
            .unwrap()
            .insert(sha256.to_string());
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: u16, body: Vec<u8>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body,
        }
    }

    fn json(status: u16, v: serde_json::Value) -> Self {
        Reply::new(status, v.to_string().into_bytes()).header("Content-Type", "application/json")
    }

    fn error(status: u16, code: &str, msg: &str) -> Self {
        Reply::json(status, serde_json::json!({ "error": msg })).header("X-Error-Code", code)
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Other",
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(state: &State, conn: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let (mut range, mut auth) = (None, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v.trim().to_string()),
                "authorization" => auth = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    state.log.lock().unwrap().push(Request {
        method: method.clone(),
        target: target.clone(),
        range: range.clone(),
        authorization: auth.clone(),
    });
    let reply = route(state, &target, range.as_deref(), auth.as_deref());
    let mut out = conn;
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    ));
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        out.write_all(&reply.body)?;
    }
    out.flush()
}

fn route(state: &State, target: &str, range: Option<&str>, auth: Option<&str>) -> Reply {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let seg: Vec<&str> = segs.iter().map(String::as_str).collect();
    if let ["cdn", sha] = seg[..] {
        let repos = state.repos.lock().unwrap();
        let file = repos
            .values()
            .flat_map(|r| r.commits.values().flatten())
            .find(|f| f.sha256 == sha)
            .cloned();
        drop(repos);
        return match file {
            Some(f) => bytes(state, &f, range),
            None => Reply::error(404, "EntryNotFound", "no such object"),
        };
    }
    if let Some(want) = state.token.lock().unwrap().as_deref()
        && auth != Some(format!("Bearer {want}").as_str())
    {
        return Reply::error(401, "RepoNotFound", "Repository not found");
    }
    let repos = state.repos.lock().unwrap();
    let commit_of = |r: &Repo, rev: &str| {
        r.branches
            .get(rev)
            .cloned()
            .or_else(|| r.commits.contains_key(rev).then(|| rev.to_string()))
    };
    match seg[..] {
        ["api", "models", org, name, "revision", rev] => {
            let Some(r) = repos.get(&format!("{org}/{name}")) else {
                return Reply::error(404, "RepoNotFound", "Repository not found");
            };
            let Some(c) = commit_of(r, rev) else {
                return Reply::error(404, "RevisionNotFound", "Invalid rev id");
            };
            let siblings: Vec<_> = r.commits[&c]
                .iter()
                .map(|f| serde_json::json!({ "rfilename": f.path }))
                .collect();
            Reply::json(
                200,
                serde_json::json!({ "id": format!("{org}/{name}"), "sha": c, "siblings": siblings }),
            )
        }
        ["api", "models", org, name, "tree", rev] => {
            let Some(r) = repos.get(&format!("{org}/{name}")) else {
                return Reply::error(404, "RepoNotFound", "Repository not found");
            };
            let Some(c) = commit_of(r, rev) else {
                return Reply::error(404, "RevisionNotFound", "Invalid rev id");
            };
            let mut entries = Vec::new();
            let mut dirs = std::collections::BTreeSet::new();
            for f in &r.commits[&c] {
                if let Some((d, _)) = f.path.rsplit_once('/')
                    && dirs.insert(d.to_string())
                {
                    entries.push(serde_json::json!({"type": "directory", "oid": "0".repeat(40), "size": 0, "path": d}));
                }
                let mut e = serde_json::json!({
                    "type": "file", "oid": f.git_oid, "size": f.bytes.len(), "path": f.path,
                });
                if f.lfs {
                    e["lfs"] = serde_json::json!({"oid": f.sha256, "size": f.bytes.len(), "pointerSize": 134});
                }
                entries.push(e);
            }
            let cursor: usize = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("cursor="))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let page: Vec<_> = entries.iter().skip(cursor).take(PAGE).cloned().collect();
            let mut reply = Reply::json(200, serde_json::Value::Array(page));
            if cursor + PAGE < entries.len() {
                let port = *state.port.lock().unwrap();
                reply = reply.header(
                    "Link",
                    format!(
                        "<http://127.0.0.1:{port}{path}?recursive=true&cursor={}>; rel=\"next\"",
                        cursor + PAGE
                    ),
                );
            }
            reply
        }
        [org, name, "resolve", rev, ..] => {
            let Some(r) = repos.get(&format!("{org}/{name}")) else {
                return Reply::error(404, "RepoNotFound", "Repository not found");
            };
            let Some(c) = commit_of(r, rev) else {
                return Reply::error(404, "RevisionNotFound", "Invalid rev id");
            };
            let file_path = seg[4..].join("/");
            let Some(f) = r.commits[&c].iter().find(|f| f.path == file_path).cloned() else {
                return Reply::error(404, "EntryNotFound", "Entry not found");
            };
            drop(repos);
            if f.lfs {
                let port = *state.port.lock().unwrap();
                Reply::new(302, Vec::new())
                    .header(
                        "Location",
                        format!("http://localhost:{port}/cdn/{}", f.sha256),
                    )
                    .header("X-Repo-Commit", c)
                    .header("X-Linked-Etag", format!("\"{}\"", f.sha256))
                    .header("X-Linked-Size", f.bytes.len().to_string())
                    .header("ETag", format!("\"{}\"", f.sha256))
            } else {
                bytes(state, &f, range)
                    .header("X-Repo-Commit", c)
                    .header("ETag", format!("\"{}\"", f.git_oid))
            }
        }
        _ => Reply::error(404, "NotFound", "no such endpoint"),
    }
}

/// A file's bytes (tampered with if asked), honouring a `Range` header.
fn bytes(state: &State, f: &File, range: Option<&str>) -> Reply {
    let mut b = f.bytes.as_ref().clone();
    if state.tampered.lock().unwrap().contains(&f.sha256) {
        let mid = b.len() / 2;
        b[mid] ^= 0x5a;
    }
    let len = b.len() as u64;
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        return Reply::new(200, b);
    };
    let (s, e) = spec.split_once('-').unwrap_or((spec, ""));
    let start: u64 = s.parse().unwrap_or(0);
    let end: u64 = e
        .parse()
        .map_or(len.saturating_sub(1), |e: u64| e.min(len.saturating_sub(1)));
    if start >= len || start > end {
        return Reply::new(416, Vec::new()).header("Content-Range", format!("bytes */{len}"));
    }
    Reply::new(206, b[start as usize..=end as usize].to_vec())
        .header("Content-Range", format!("bytes {start}-{end}/{len}"))
}
