//! What the tests that run `lar serve` share: a store of real models under a fresh home, the server on a free
//! port (its log passed through), and plain HTTP requests on fresh connections.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lar_testdata as testdata;

/// A path the test needs from scripts/test.sh's set-up (a venv's Python, playwright's folder), read from `var`.
/// Without it the test says so and passes (`None`), unless `require` is `1` (as in CI): then it fails, naming
/// `made_by`, the step that makes it.
pub fn set_up(var: &str, require: &str, made_by: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var(require).as_deref() != Ok("1"),
                "{var} is not set ({made_by})"
            );
            eprintln!("skipped: {var} is not set (run scripts/test.sh)");
            None
        }
    }
}

pub fn lar(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lar"));
    c.env("LAR_HOME", home).env("LAR_OFFLINE", "0");
    c
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A store under a fresh directory with SmolLM2 as `smollm2` and all-MiniLM as `all-minilm`.
pub fn store(tag: &str) -> PathBuf {
    let home = std::env::temp_dir().join(format!("lar-serve-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    for (src, name) in [
        (testdata::model(testdata::SMOLLM2), "smollm2"),
        (testdata::model("all-MiniLM-L6-v2"), "all-minilm"),
    ] {
        let o = lar(&home)
            .args(["import", &src.display().to_string(), "--name", name])
            .output()
            .expect("lar import");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    home
}

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a fresh connection: (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    ))
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http(port, "GET", path, "")
}

pub fn start(home: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mut c = lar(home);
    c.args(["serve", "--port", &port.to_string(), "--threads", "2"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("lar serve");
    let err = child.stderr.take().expect("stderr");
    // Keep its log flowing (and visible when a test fails).
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("[lar serve] {l}");
        }
    });
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if let Some((200, _)) = http_get(port, "/health") {
            return Server { child, port };
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("lar serve exited: {st}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("lar serve did not become healthy");
}
