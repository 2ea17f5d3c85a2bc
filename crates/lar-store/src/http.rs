//! HTTP for the downloading sources: JSON metadata, byte ranges, and files downloaded into a `.part` file that a
//! later attempt resumes with a `Range` request. Redirects are followed here rather than by the HTTP library (at
//! most 10 hops), so that every hop's headers can be read (the Hugging Face Hub puts a file's sha256 and size on
//! the redirect to its CDN) and a bearer token is sent only to the origin it was given for, never to a CDN.
//! `LAR_OFFLINE=1` refuses every request with a clear error.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use reqwest::blocking::Response;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode, Url};

use crate::{Error, Result};

const MAX_REDIRECTS: usize = 10;

pub struct Http {
    client: reqwest::blocking::Client,
    offline: bool,
    /// `Authorization` header value and the origin it may be sent to.
    bearer: Option<(Origin, String)>,
}

/// Scheme, host and port: what a credential is bound to.
type Origin = (String, Option<String>, Option<u16>);

fn origin(u: &Url) -> Origin {
    (
        u.scheme().to_string(),
        u.host_str().map(str::to_ascii_lowercase),
        u.port_or_known_default(),
    )
}

fn net(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{url}: {e}"))
}

/// A transport error by its root cause ("Connection refused", "failed to lookup address"), which says more than
/// the HTTP library's own top line.
fn transport(url: &str, e: &reqwest::Error) -> Error {
    let mut cause: &dyn std::error::Error = e;
    while let Some(s) = cause.source() {
        cause = s;
    }
    if e.is_timeout() {
        net(url, format!("timed out ({cause})"))
    } else {
        net(url, cause)
    }
}

/// Whether `LAR_OFFLINE` asks for no network.
pub fn offline() -> bool {
    std::env::var("LAR_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The response headers of every hop of a request, first (the URL asked for) to last.
#[derive(Debug, Default)]
pub struct Hops(Vec<HeaderMap>);

impl Hops {
    /// The value of `name` in the first hop that has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find_map(|h| h.get(name).and_then(|v| v.to_str().ok()))
    }
}

/// A finished download: its size and the headers seen on the way.
#[derive(Debug)]
pub struct Download {
    pub size: u64,
    pub hops: Hops,
}

/// `(start, end, total)` of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range(h: &HeaderMap) -> Option<(u64, u64, Option<u64>)> {
    let v = h.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (s, e) = range.split_once('-')?;
    Some((
        s.trim().parse().ok()?,
        e.trim().parse().ok()?,
        total.trim().parse().ok(),
    ))
}

impl Http {
    /// A client; offline when `LAR_OFFLINE` says so.
    pub fn new() -> Result<Self> {
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("lar/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .timeout(None)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            offline: offline(),
            bearer: None,
        })
    }

    /// Refuse (or allow) every request, whatever `LAR_OFFLINE` says.
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Sends `Authorization: Bearer TOKEN` with requests to `origin_url`'s scheme, host and port, and to no other.
    pub fn with_bearer(mut self, origin_url: &str, token: &str) -> Result<Self> {
        let u = Url::parse(origin_url).map_err(|e| net(origin_url, e))?;
        self.bearer = Some((origin(&u), format!("Bearer {token}")));
        Ok(self)
    }

    fn check_online(&self, url: &str) -> Result<()> {
        if self.offline {
            return Err(Error::Invalid(format!(
                "offline (LAR_OFFLINE is set): not fetching {url}"
            )));
        }
        Ok(())
    }

    /// Sends a request, following redirects; the token goes only to its own origin. Returns the last response and
    /// the headers of every hop.
    fn send(&self, method: Method, url: &str, range: Option<&str>) -> Result<(Response, Hops)> {
        self.check_online(url)?;
        let mut u = Url::parse(url).map_err(|e| net(url, e))?;
        let mut hops = Vec::new();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.client.request(method.clone(), u.clone());
            if let Some(r) = range {
                req = req.header(header::RANGE, r);
            }
            if let Some((allowed, value)) = &self.bearer
                && origin(&u) == *allowed
            {
                req = req.header(header::AUTHORIZATION, value);
            }
            let r = req.send().map_err(|e| transport(u.as_str(), &e))?;
            hops.push(r.headers().clone());
            let next = r
                .status()
                .is_redirection()
                .then(|| r.headers().get(header::LOCATION))
                .flatten()
                .and_then(|l| l.to_str().ok())
                .map(|l| {
                    u.join(l)
                        .map_err(|e| net(u.as_str(), format!("redirect to {l}: {e}")))
                });
            match next {
                Some(n) => u = n?,
                None => return Ok((r, Hops(hops))),
            }
        }
        Err(net(url, format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// The error for a response that is not a success.
    fn status_error(url: &str, status: StatusCode) -> Error {
        Error::Http {
            url: url.to_string(),
            status: status.as_u16(),
        }
    }

    /// GETs `url` as JSON; a 404 becomes `None`.
    pub fn get_json(&self, url: &str) -> Result<Option<serde_json::Value>> {
        Ok(self.get_json_page(url)?.map(|(v, _)| v))
    }

    /// GETs `url` as JSON, with the headers of the answer (for paginated APIs' `Link`); a 404 becomes `None`.
    pub fn get_json_page(&self, url: &str) -> Result<Option<(serde_json::Value, Hops)>> {
        let (r, hops) = self.send(Method::GET, url, None)?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(Self::status_error(url, r.status()));
        }
        let text = r.text().map_err(|e| net(url, e))?;
        let v = serde_json::from_str(&text).map_err(|e| net(url, e))?;
        Ok(Some((v, hops)))
    }

    /// HEADs `url` (following redirects): the headers of every hop and the final status.
    pub fn head(&self, url: &str) -> Result<(StatusCode, Hops)> {
        let (r, hops) = self.send(Method::HEAD, url, None)?;
        Ok((r.status(), hops))
    }

    /// `len` bytes of `url` from `start` (fewer at the end of the file), and the file's whole length.
    pub fn get_range(&self, url: &str, start: u64, len: u64) -> Result<(Vec<u8>, u64)> {
        if len == 0 {
            let (r, _) = self.send(Method::HEAD, url, None)?;
            if !r.status().is_success() {
                return Err(Self::status_error(url, r.status()));
            }
            let total = r
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .ok_or_else(|| net(url, "no Content-Length"))?;
            return Ok((Vec::new(), total));
        }
        let end = start.saturating_add(len - 1);
        let (r, _) = self.send(Method::GET, url, Some(&format!("bytes={start}-{end}")))?;
        let status = r.status();
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            let total = content_range_total(r.headers());
            return Err(net(
                url,
                format!(
                    "bytes {start}.. are past the end of the file ({} bytes)",
                    total.map_or("?".into(), |t| t.to_string())
                ),
            ));
        }
        if !status.is_success() {
            return Err(Self::status_error(url, status));
        }
        let mut buf = Vec::new();
        if status == StatusCode::PARTIAL_CONTENT {
            let (s, _, total) = content_range(r.headers())
                .ok_or_else(|| net(url, "206 without a valid Content-Range"))?;
            if s != start {
                return Err(net(url, format!("asked for bytes from {start}, got {s}")));
            }
            let total = total.ok_or_else(|| net(url, "Content-Range without a total"))?;
            r.take(len).read_to_end(&mut buf).map_err(|e| net(url, e))?;
            Ok((buf, total))
        } else {
            // The server ignored the range: read up to the end of the range, keep the range.
            let total = r.content_length();
            r.take(end.saturating_add(1))
                .read_to_end(&mut buf)
                .map_err(|e| net(url, e))?;
            let total = total.unwrap_or(buf.len() as u64);
            let from = (start as usize).min(buf.len());
            Ok((buf.split_off(from), total))
        }
    }

    /// Downloads `url` into `part`, resuming from the bytes already there (a `Range` request; a server that
    /// answers 200 instead restarts the file). `progress(done, total)`.
    pub fn download(
        &self,
        url: &str,
        part: &Path,
        progress: &dyn Fn(u64, u64),
    ) -> Result<Download> {
        let have = std::fs::metadata(part).map_or(0, |m| m.len());
        let range = (have > 0).then(|| format!("bytes={have}-"));
        let (mut r, hops) = self.send(Method::GET, url, range.as_deref())?;
        let status = r.status();
        if status == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
            // Already complete (or longer than the file: the caller's checksum finds that).
            return Ok(Download { size: have, hops });
        }
        if !status.is_success() {
            return Err(Self::status_error(url, status));
        }
        let resumed = status == StatusCode::PARTIAL_CONTENT;
        let (start, total) = if resumed {
            match content_range(r.headers()) {
                Some((s, _, total)) if s == have => (have, total.unwrap_or(0)),
                _ => {
                    // Not the range asked for: start over.
                    let _ = std::fs::remove_file(part);
                    return self.download(url, part, progress);
                }
            }
        } else {
            (0, r.content_length().unwrap_or(0))
        };
        let io = |e: std::io::Error| Error::Io {
            path: part.to_path_buf(),
            cause: e,
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
            let n = r
                .read(&mut buf)
                .map_err(|e| net(url, format!("reading the download: {e}")))?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n]).map_err(io)?;
            done += n as u64;
            progress(done, total);
        }
        f.sync_all().map_err(io)?;
        Ok(Download { size: done, hops })
    }
}

/// `TOTAL` of a `Content-Range: bytes */TOTAL` (or `bytes S-E/TOTAL`) header.
fn content_range_total(h: &HeaderMap) -> Option<u64> {
    let v = h.get(header::CONTENT_RANGE)?.to_str().ok()?;
    v.rsplit_once('/')?.1.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_RANGE,
            "bytes 10-19/100".parse().expect("header"),
        );
        assert_eq!(content_range(&h), Some((10, 19, Some(100))));
        assert_eq!(content_range_total(&h), Some(100));
        h.insert(header::CONTENT_RANGE, "bytes */7".parse().expect("header"));
        assert_eq!(content_range(&h), None);
        assert_eq!(content_range_total(&h), Some(7));
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = |s: &str| origin(&Url::parse(s).expect("url"));
        assert_eq!(o("https://HF.co/a"), o("https://hf.co:443/b?c"));
        assert_ne!(o("https://hf.co/"), o("http://hf.co/"));
        assert_ne!(o("https://hf.co/"), o("https://cdn.hf.co/"));
        assert_ne!(o("http://127.0.0.1:1/"), o("http://127.0.0.1:2/"));
    }
}
