//! Checkpoints: a training run's whole state (the adapter, AdamW's moments, the steps done) and what it was started
//! with (the settings, the data's sha256), so `--resume` continues exactly where the run stopped: the plan of steps
//! and every dropout mask follow from the seed and the step, so the resumed run's losses are the uninterrupted
//! run's.
//!
//! Two files in the checkpoint directory, each written to a temporary name and renamed into place (the tensors
//! first): `checkpoint.safetensors` (every matrix of the adapter, then of each moment, in the adapter's fixed order,
//! f32) and `checkpoint.json`.

use std::path::Path;

use lar_formats::lora::write_atomic;
use lar_formats::safetensors::parse_header;
use lar_formats::safetensors_write::f32_file;
use serde::{Deserialize, Serialize};

use crate::adapter::Adapter;
use crate::error::{Error, Result};
use crate::optim::Moments;
use crate::trainer::Config;

pub const TENSORS: &str = "checkpoint.safetensors";
pub const STATE: &str = "checkpoint.json";

/// What `checkpoint.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// Optimizer steps done.
    pub step: usize,
    /// AdamW's update count.
    pub t: u64,
    pub config: Config,
    /// The training data's sha256: a resumed run must read the same data.
    pub data_sha256: String,
    /// Each step's log so far (the loss curve continues from it).
    pub history: serde_json::Value,
}

/// Writes the state and the tensors into `dir` (created if needed).
pub fn save(dir: &Path, state: &State, ad: &Adapter, mom: &Moments) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let mut tensors = Vec::new();
    for (prefix, a) in [("adapter", ad), ("m", &mom.m), ("v", &mom.v)] {
        for (i, t) in a.tensors().into_iter().enumerate() {
            tensors.push((format!("{prefix}.{i}"), vec![t.len()], t));
        }
    }
    write_atomic(&dir.join(TENSORS), &f32_file(&tensors, &[]))?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| Error::Invalid(e.to_string()))?;
    write_atomic(&dir.join(STATE), &json)?;
    Ok(())
}

/// Reads a checkpoint written by [`save`]: its state, and the adapter and moments filled in from its tensors.
/// `fresh` is an adapter of the shape the settings make (the tensors must match it one for one).
pub fn load(dir: &Path, fresh: &Adapter) -> Result<(State, Adapter, Moments)> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| Error::Io {
            path: p.display().to_string(),
            source: e,
        })
    };
    let state: State = serde_json::from_slice(&read(STATE)?)
        .map_err(|e| Error::Invalid(format!("{}: {e}", dir.join(STATE).display())))?;
    let bytes = read(TENSORS)?;
    let what = dir.join(TENSORS).display().to_string();
    let entries = parse_header(&bytes, &what)?;
    let mut ad = fresh.clone();
    let mut mom = Moments::new(fresh);
    mom.t = state.t;
    let bad = |m: String| Error::Invalid(format!("{what}: {m}"));
    let fill = |prefix: &str, target: &mut Adapter| -> Result<()> {
        for (i, t) in target.tensors_mut().into_iter().enumerate() {
            let name = format!("{prefix}.{i}");
            let e = entries.iter().find(|e| e.name == name).ok_or_else(|| {
                bad(format!(
                    "no tensor {name} (the checkpoint is of other settings)"
                ))
            })?;
            if e.dtype != "F32" || e.end - e.start != t.len() * 4 {
                return Err(bad(format!(
                    "tensor {name} does not match the adapter's shape"
                )));
            }
            for (v, b) in t.iter_mut().zip(bytes[e.start..e.end].chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Ok(())
    };
    fill("adapter", &mut ad)?;
    fill("m", &mut mom.m)?;
    fill("v", &mut mom.v)?;
    Ok((state, ad, mom))
}
