//! HTTP for the downloading sources: JSON metadata, and files downloaded into a `.part` file that a later attempt
//! resumes with a `Range` request. `LAR_OFFLINE=1` refuses every request with a clear error.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::{Error, Result};

pub struct Http {
    client: reqwest::blocking::Client,
}

fn net(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{url}: {e}"))
}

/// Whether `LAR_OFFLINE` asks for no network.
pub fn offline() -> bool {
    std::env::var("LAR_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0")
}

impl Http {
    pub fn new() -> Result<Self> {
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("lar/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .timeout(None)
            .build()
            .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))?;
        Ok(Self { client })
    }

    fn check_online(url: &str) -> Result<()> {
        if offline() {
            return Err(Error::Invalid(format!(
                "offline (LAR_OFFLINE is set): not fetching {url}"
            )));
        }
        Ok(())
    }

    /// GETs `url` as JSON; a 404 becomes `None`.
    pub fn get_json(&self, url: &str) -> Result<Option<serde_json::Value>> {
        Self::check_online(url)?;
        let r = self.client.get(url).send().map_err(|e| net(url, e))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(net(url, format!("HTTP {}", r.status())));
        }
        let text = r.text().map_err(|e| net(url, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| net(url, e))
    }

    /// Downloads `url` into `part`, resuming from the bytes already there (a `Range` request; a server that
    /// answers 200 instead restarts the file). `progress(done, total)`. Returns the final size.
    pub fn download(&self, url: &str, part: &Path, progress: &dyn Fn(u64, u64)) -> Result<u64> {
        Self::check_online(url)?;
        let have = std::fs::metadata(part).map_or(0, |m| m.len());
        let mut req = self.client.get(url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let mut r = req.send().map_err(|e| net(url, e))?;
        let status = r.status();
        if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
            // Already complete.
            return Ok(have);
        }
        if !status.is_success() {
            return Err(net(url, format!("HTTP {status}")));
        }
        let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT;
        let start = if resumed { have } else { 0 };
        let total = start + r.content_length().unwrap_or(0);
        let io = |e: std::io::Error| Error::Io {
            path: part.to_path_buf(),
            source: e,
        };
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(part)
            .map_err(io)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut done = start;
        progress(done, total);
        loop {
            let n = r.read(&mut buf).map_err(|e| net(url, e))?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n]).map_err(io)?;
            done += n as u64;
            progress(done, total);
        }
        f.sync_all().map_err(io)?;
        Ok(done)
    }
}
