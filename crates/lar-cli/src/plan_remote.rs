//! `lar plan hf:ORG/REPO[:QUANT][@REVISION]`: planning a model that is not downloaded. A GGUF file is planned from
//! its header (metadata and tensor table), read with HTTP Range requests that grow until the table is complete; a
//! safetensors repository from its `config.json` and the JSON headers of its weight files. Without a quant, every
//! GGUF file of the repository is planned at one context and the largest that fits is recommended.

use anyhow::{Context, Result, bail};
use lar_formats::Gguf;
use lar_plan::size::fmt_bytes;
use lar_plan::{ModelInfo, plan};
use lar_store::hf::{HfSource, HubClient, HubFile, RepoInfo, Selection, short};

use crate::plan::Args;

/// First bytes read of a GGUF file; grown four-fold while the header is longer, up to [`MAX_HEADER`].
const FIRST_READ: u64 = 4 << 20;
const MAX_HEADER: u64 = 256 << 20;

pub fn main(src: &str, args: &Args) -> Result<()> {
    let source = HfSource::parse(src)?;
    let client = HubClient::new()?;
    let repo = client.repo_files(&source.repo, source.revision())?;
    let ggufs: Vec<&HubFile> = repo
        .files
        .iter()
        .filter(|f| f.path.ends_with(".gguf") && !f.path.contains("-of-"))
        .collect();
    if source.select.is_none() && ggufs.len() > 1 {
        return recommend(&client, &repo, &ggufs, args);
    }
    let (label, info) = match source.choose(&repo)? {
        Selection::Gguf(f) => (
            format!("hf:{}/{}@{}", repo.repo, f.path, short(&repo.commit)),
            gguf_info(&client, &repo, &f.path)?,
        ),
        Selection::Directory(files) => (
            format!("hf:{}@{}", repo.repo, short(&repo.commit)),
            directory_info(&client, &repo, &files)?,
        ),
    };
    crate::plan::report(&label, &info, args)
}

/// The model behind a remote GGUF file, from its header alone.
fn gguf_info(client: &HubClient, repo: &RepoInfo, path: &str) -> Result<ModelInfo> {
    let mut len = FIRST_READ;
    loop {
        let (head, total) = client.read_range(&repo.repo, &repo.commit, path, 0, len)?;
        match Gguf::from_header(&head, total) {
            Ok(g) => {
                return ModelInfo::from_gguf(&g).with_context(|| format!("planning {path}"));
            }
            Err(lar_formats::Error::Truncated(_))
                if (head.len() as u64) < total && len < MAX_HEADER =>
            {
                len *= 4;
            }
            Err(e) => bail!("{path}: {e}"),
        }
    }
}

/// The model of a safetensors repository: `config.json` fetched whole, each weight file's header by range.
fn directory_info(client: &HubClient, repo: &RepoInfo, files: &[HubFile]) -> Result<ModelInfo> {
    let dir = std::env::temp_dir().join(format!("lar-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = (|| {
        let config = files
            .iter()
            .find(|f| f.path == "config.json")
            .context("the repository has no config.json")?;
        let (bytes, _) =
            client.read_range(&repo.repo, &repo.commit, &config.path, 0, config.size)?;
        std::fs::write(dir.join("config.json"), bytes)?;
        let mut headers = Vec::new();
        for f in files.iter().filter(|f| f.path.ends_with(".safetensors")) {
            let (len, total) = client.read_range(&repo.repo, &repo.commit, &f.path, 0, 8)?;
            let n = len
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .with_context(|| format!("{}: no safetensors header", f.path))?;
            if n > total.saturating_sub(8) || n > 100 << 20 {
                bail!("{}: header of {n} bytes in a file of {total}", f.path);
            }
            let (head, _) = client.read_range(&repo.repo, &repo.commit, &f.path, 0, 8 + n)?;
            headers.push((f.path.clone(), head, total));
        }
        if headers.is_empty() {
            bail!("the repository has no .safetensors weights");
        }
        let g = lar_models::safetensors::open_headers(&dir, &headers)?;
        Ok(ModelInfo::from_gguf(&g)?)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Plans every GGUF file of a repository at one context and recommends the largest that fits.
fn recommend(client: &HubClient, repo: &RepoInfo, ggufs: &[&HubFile], args: &Args) -> Result<()> {
    let (base, ram_source, _) = crate::plan::request(args)?;
    let mut rows = Vec::new();
    for f in ggufs {
        let info = gguf_info(client, repo, &f.path)?;
        let mut r = base.clone();
        // One context for all: the one asked for, else the model's own up to 4096.
        r.ctx = Some(args.ctx.unwrap_or(info.ctx_train.min(4096)));
        let p = plan(&info, &r);
        rows.push((f.path.clone(), info, p));
    }
    rows.sort_by_key(|(_, info, _)| std::cmp::Reverse(info.file_bytes));
    let best = rows
        .iter()
        .find(|(_, _, p)| p.fits)
        .map(|(f, _, _)| f.clone());
    if args.json {
        let files: Vec<serde_json::Value> = rows
            .iter()
            .map(|(f, info, p)| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                v["file"] = f.as_str().into();
                v["type"] = info.main_type().into();
                v["file_bytes"] = info.file_bytes.into();
                v
            })
            .collect();
        let out = serde_json::json!({
            "repo": repo.repo,
            "commit": repo.commit,
            "files": files,
            "recommended": best,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "hf:{}@{}: {} GGUF files, planned at context {} with {} of RAM ({ram_source})",
        repo.repo,
        short(&repo.commit),
        rows.len(),
        rows.first().map_or(0, |(_, _, p)| p.ctx),
        fmt_bytes(base.ram_budget)
    );
    println!(
        "  {:<44}{:>8}{:>12}{:>12}{:>10}  fits",
        "file", "type", "on disk", "needs", "max ctx"
    );
    for (f, info, p) in &rows {
        println!(
            "  {:<44}{:>8}{:>12}{:>12}{:>10}  {}",
            f,
            info.main_type(),
            fmt_bytes(info.file_bytes),
            fmt_bytes(p.total_bytes),
            p.max_ctx,
            if p.fits { "yes" } else { "no" }
        );
    }
    match best {
        Some(f) => println!(
            "recommended: {f} (the largest file that fits; pull it with `lar pull hf:{}:{}`)",
            repo.repo,
            f.rsplit('/').next().unwrap_or(&f)
        ),
        None => println!("none of these fits this machine at that context; try a smaller --ctx"),
    }
    Ok(())
}
