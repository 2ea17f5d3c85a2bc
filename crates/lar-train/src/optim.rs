//! AdamW (decoupled weight decay, bias-corrected moments, as PyTorch's `AdamW`), the global gradient-norm clip
//! (as `clip_grad_norm_`), and the learning-rate schedule (linear warmup, then cosine, linear or constant, as
//! Hugging Face's schedulers).

use serde::{Deserialize, Serialize};

use crate::adapter::Adapter;
use crate::error::{Error, Result};

/// How the learning rate moves after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    Linear,
    Constant,
}

impl std::str::FromStr for Schedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cosine" => Ok(Self::Cosine),
            "linear" => Ok(Self::Linear),
            "constant" => Ok(Self::Constant),
            _ => Err(Error::Invalid(format!(
                "unknown schedule '{s}' (cosine, linear or constant)"
            ))),
        }
    }
}

/// The learning rate at `step` (0-based) of `total`: linear warmup over `warmup` steps, then the schedule down
/// to zero at `total`.
pub fn learning_rate(lr: f32, schedule: Schedule, warmup: usize, step: usize, total: usize) -> f32 {
    if step < warmup {
        return lr * (step + 1) as f32 / warmup as f32;
    }
    let span = total.saturating_sub(warmup).max(1) as f32;
    let done = ((step - warmup) as f32 / span).min(1.0);
    match schedule {
        Schedule::Constant => lr,
        Schedule::Linear => lr * (1.0 - done),
        Schedule::Cosine => lr * 0.5 * (1.0 + (std::f32::consts::PI * done).cos()),
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm`; returns the norm before clipping.
pub fn clip(grads: &mut Adapter, max_norm: f32) -> f32 {
    let norm = grads
        .tensors()
        .iter()
        .flat_map(|t| t.iter())
        .map(|v| (*v as f64) * (*v as f64))
        .sum::<f64>()
        .sqrt() as f32;
    if max_norm > 0.0 && norm > max_norm {
        let f = max_norm / (norm + 1e-6);
        for t in grads.tensors_mut() {
            t.iter_mut().for_each(|v| *v *= f);
        }
    }
    norm
}

/// AdamW's settings.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// AdamW's moments, shaped as the adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    pub m: Adapter,
    pub v: Adapter,
    /// Updates taken (the bias correction's `t`).
    pub t: u64,
}

impl Moments {
    pub fn new(ad: &Adapter) -> Self {
        Self {
            m: ad.zeros_like(),
            v: ad.zeros_like(),
            t: 0,
        }
    }
}

impl AdamW {
    /// One update of `params` by `grads` at learning rate `lr`.
    pub fn step(&self, params: &mut Adapter, grads: &Adapter, st: &mut Moments, lr: f32) {
        st.t += 1;
        let bc1 = 1.0 - self.beta1.powi(st.t as i32);
        let bc2 = 1.0 - self.beta2.powi(st.t as i32);
        let (b1, b2) = (self.beta1, self.beta2);
        let ps = params.tensors_mut();
        let gs = grads.tensors();
        let ms = st.m.tensors_mut();
        let vs = st.v.tensors_mut();
        for (((p, g), m), v) in ps.into_iter().zip(gs).zip(ms).zip(vs) {
            for i in 0..p.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let mh = m[i] / bc1;
                let vh = v[i] / bc2;
                p[i] -= lr * (mh / (vh.sqrt() + self.eps) + self.weight_decay * p[i]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_warms_up_then_decays_to_zero() {
        let lr = |s| learning_rate(1.0, Schedule::Cosine, 4, s, 20);
        assert!((lr(0) - 0.25).abs() < 1e-6);
        assert!((lr(3) - 1.0).abs() < 1e-6);
        assert!((lr(4) - 1.0).abs() < 1e-6);
        assert!((lr(12) - 0.5).abs() < 1e-6);
        assert!(lr(20) < 1e-6);
        assert!((learning_rate(1.0, Schedule::Linear, 0, 5, 10) - 0.5).abs() < 1e-6);
        assert_eq!(learning_rate(2.0, Schedule::Constant, 0, 9, 10), 2.0);
        assert!("sawtooth".parse::<Schedule>().is_err());
    }
}
