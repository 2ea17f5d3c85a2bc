//! `lar show MODEL`: what the file holds, from its own header: architecture, parameter count, tensors per type
//! (count and bytes), shape, context length, chat template, special tokens and the file's sha256. `--json` too.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use lar_models::Model;
use lar_tokenizer::Tokenizer;

use crate::common::model_path;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub model: String,
    #[arg(long)]
    pub json: bool,
    /// Skip hashing the file.
    #[arg(long)]
    pub no_hash: bool,
}

pub fn main(args: Args) -> Result<()> {
    let path = model_path(&args.model)?;
    let g = Arc::new(
        lar_models::open_model(&path).with_context(|| format!("reading {}", path.display()))?,
    );
    let arch = g.architecture().unwrap_or("unknown").to_string();
    let mut by_type: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut params = 0usize;
    for t in &g.tensors {
        let e = by_type.entry(t.ty.name()).or_default();
        e.0 += 1;
        e.1 += t.size;
        params += t.n_elements();
    }
    let hp = Model::from_gguf(g.clone()).map(|m| m.hp);
    // Bytes a decode step reads: every tensor, except that only one row of the embedding table is looked up
    // (unless it doubles as the output matrix).
    let embd = if g.tensor("output.weight").is_some() {
        g.tensor("token_embd.weight").map_or(0, |t| t.size)
    } else {
        0
    };
    let per_token: usize = g.tensors.iter().map(|t| t.size).sum::<usize>() - embd;
    let tok = Tokenizer::from_gguf(&g);
    let template = g
        .get("tokenizer.chat_template")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let special = |id: Option<u32>| -> serde_json::Value {
        match (id, &tok) {
            (Some(i), Ok(t)) => serde_json::json!({"id": i, "text": t.decode(&[i], true)}),
            _ => serde_json::Value::Null,
        }
    };
    // A directory's files each get their hash (the weights, which Hugging Face also publishes per file).
    let sha: Option<serde_json::Value> = if args.no_hash {
        None
    } else if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(&path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        let mut m = serde_json::Map::new();
        for f in files {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            m.insert(name, lar_store::sha256_file(&f, &|_, _| {})?.into());
        }
        Some(m.into())
    } else {
        Some(lar_store::sha256_file(&path, &|_, _| {})?.into())
    };
    let mut v = serde_json::json!({
        "path": path.display().to_string(),
        "architecture": arch,
        "name": g.get("general.name").and_then(|v| v.as_str()),
        "file_bytes": g.file_size(),
        "parameters": params,
        "weight_bytes_per_token": per_token,
        "gguf_version": g.version,
        "tensors": by_type.iter().map(|(k, (n, b))| (k.to_string(), serde_json::json!({"count": n, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
        "chat_template": template,
        "sha256": sha,
    });
    // A store name: where it came from, as its manifest records it.
    let stored = (!std::path::Path::new(&args.model).exists())
        .then(|| lar_store::ModelName::parse(&args.model).ok())
        .flatten()
        .and_then(|n| crate::store::open().ok()?.get(&n).ok());
    if let Some(m) = &stored {
        v["store"] = serde_json::json!({
            "name": format!("{}:{}", m.name, m.tag),
            "source": m.source,
            "revision": m.revision,
            "files": m.files,
        });
    }
    match &hp {
        Ok(hp) => {
            v["context_length"] = hp.ctx_train.into();
            v["layers"] = hp.n_layers.into();
            v["embedding"] = hp.n_embd.into();
            v["heads"] = hp.n_head.into();
            v["kv_heads"] = hp.n_head_kv.into();
            v["head_dim"] = hp.head_dim.into();
            v["feed_forward"] = hp.n_ff.into();
            v["vocab"] = hp.n_vocab.into();
            if let Some(w) = hp.sliding_window {
                v["sliding_window"] = w.into();
            }
        }
        Err(e) => v["unsupported"] = e.to_string().into(),
    }
    match &tok {
        Ok(t) => {
            v["tokenizer"] = serde_json::json!({
                "type": format!("{:?}", t.vocab.model),
                "tokens": t.vocab.len(),
                "bos": special(t.vocab.bos),
                "eos": special(t.vocab.eos),
                "end_of_generation": t.vocab.eog.iter().map(|&i| special(Some(i))).collect::<Vec<_>>(),
                "add_bos": t.vocab.add_bos,
            });
        }
        Err(e) => v["tokenizer"] = serde_json::json!({"error": e.to_string()}),
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("  path          {}", path.display());
    if let Some(m) = &stored {
        println!(
            "  stored as     {}:{} from {}{}",
            m.name,
            m.tag,
            m.source,
            m.revision
                .as_ref()
                .map(|r| format!(" (revision {r})"))
                .unwrap_or_default()
        );
    }
    println!("  architecture  {arch}");
    if let Some(n) = v["name"].as_str() {
        println!("  name          {n}");
    }
    println!("  parameters    {} ({:.1}M)", params, params as f64 / 1e6);
    println!(
        "  file          {} bytes ({})",
        g.file_size(),
        if g.version == 0 {
            "safetensors".to_string()
        } else {
            format!("GGUF v{}", g.version)
        }
    );
    match &hp {
        Ok(hp) => {
            println!("  context       {}", hp.ctx_train);
            println!(
                "  shape         {} layers, {} wide, {} heads ({} KV), head dim {}, FFN {}, vocab {}",
                hp.n_layers, hp.n_embd, hp.n_head, hp.n_head_kv, hp.head_dim, hp.n_ff, hp.n_vocab
            );
            if let Some(w) = hp.sliding_window {
                println!(
                    "  sliding       window {w} on 5 of every {} layers",
                    hp.swa_pattern
                );
            }
        }
        Err(e) => println!("  (cannot run: {e})"),
    }
    println!("  tensors");
    for (ty, (n, b)) in &by_type {
        println!(
            "    {ty:<6} {n:>5} tensors {:>10.1} MiB",
            *b as f64 / (1 << 20) as f64
        );
    }
    if tok.is_err() {
        println!(
            "  tokenizer     {}",
            v["tokenizer"]["error"].as_str().unwrap_or("unreadable")
        );
    } else {
        let t = &v["tokenizer"];
        println!(
            "  tokenizer     {} ({} tokens)",
            t["type"].as_str().unwrap_or("?"),
            t["tokens"]
        );
        for k in ["bos", "eos"] {
            if !t[k].is_null() {
                println!("    {k:<4} {} {}", t[k]["id"], t[k]["text"]);
            }
        }
    }
    match &template {
        Some(t) => {
            let first: String = t.chars().take(120).collect::<String>().replace('\n', "\\n");
            println!(
                "  template      {first}{}",
                if t.chars().count() > 120 { "..." } else { "" }
            );
        }
        None => println!("  template      none (use --template with run/chat)"),
    }
    match sha {
        Some(serde_json::Value::String(s)) => println!("  sha256        {s}"),
        Some(serde_json::Value::Object(files)) => {
            for (name, s) in files {
                println!("  sha256        {} {name}", s.as_str().unwrap_or_default());
            }
        }
        _ => {}
    }
    Ok(())
}
