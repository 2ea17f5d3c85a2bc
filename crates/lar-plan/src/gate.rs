//! The gate every model load passes (the CLI's run, chat, ask and bench; next, the server's model manager): plan
//! the load against the memory budget and return the context to run at, or refuse with the plan's figures before
//! anything is loaded, instead of an out-of-memory kill halfway through.

use crate::budget::{Budget, ram_budget};
use crate::error::{Error, Refusal, Result};
use crate::model::ModelInfo;
use crate::plan::{Request, plan};

/// What a load asks for.
#[derive(Clone, Debug)]
pub struct Load {
    /// Context per sequence; `None`: the largest that fits, capped by the model's own.
    pub ctx: Option<usize>,
    /// Full contexts the KV cache holds at once.
    pub parallel: usize,
    /// Bytes the KV cache may use in all, in place of `parallel` full contexts.
    pub kv_budget: Option<u64>,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            ctx: None,
            parallel: 1,
            kv_budget: None,
        }
    }
}

/// A load the gate let through.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The context to run at.
    pub ctx: usize,
    /// Bytes the load is planned to take.
    pub total_bytes: u64,
}

/// [`check_with`] against this machine's RAM budget (`LAR_MEMORY_LIMIT`, a cgroup limit, or available memory).
pub fn check(info: &ModelInfo, load: &Load) -> Result<Admitted> {
    check_with(info, load, &ram_budget()?)
}

/// Plans `load` of the model `info` describes within `budget`: the context (asked, or the largest that fits),
/// with a KV cache of `parallel` contexts or of `kv_budget` bytes.
pub fn check_with(info: &ModelInfo, load: &Load, budget: &Budget) -> Result<Admitted> {
    let mut r = Request::new(budget.bytes);
    r.ctx = load.ctx;
    r.parallel = load.parallel;
    r.check()?;
    if load.kv_budget.is_some() {
        r.parallel = 1;
    }
    if let Some(kv) = load.kv_budget {
        // The KV cache is the budget, whatever the context: plan one context, then swap its KV line for it.
        let mut p = plan(info, &r);
        if load.ctx.is_none() && p.ctx > 0 {
            // No context asked: the largest that fits, and that the budget holds at least once.
            let per_token = (p.kv_bytes / p.ctx as u64).max(1);
            let holds = (kv / per_token) as usize;
            if holds == 0 {
                return Err(Error::Invalid(format!(
                    "a KV budget of {kv} bytes holds no token ({per_token} bytes each)"
                )));
            }
            if holds < p.ctx {
                r.ctx = Some(holds);
                p = plan(info, &r);
            }
        }
        let total = p.total_bytes - p.kv_bytes + kv;
        p.kv_bytes = kv;
        if total <= budget.bytes {
            return Ok(Admitted {
                ctx: p.ctx,
                total_bytes: total,
            });
        }
        return Err(refuse(&p, total, budget, 1));
    }
    let p = plan(info, &r);
    if p.fits {
        return Ok(Admitted {
            ctx: p.ctx,
            total_bytes: p.total_bytes,
        });
    }
    Err(refuse(&p, p.total_bytes, budget, load.parallel))
}

fn refuse(p: &crate::Plan, total: u64, budget: &Budget, parallel: usize) -> Error {
    Error::NotEnoughMemory(Box::new(Refusal {
        ctx: p.ctx,
        parallel,
        total_bytes: total,
        weights_bytes: p.weights_bytes,
        kv_bytes: p.kv_bytes,
        compute_bytes: p.compute_bytes,
        overhead_bytes: p.overhead_bytes,
        budget_bytes: budget.bytes,
        budget_source: budget.source.clone(),
        max_ctx: p.max_ctx,
    }))
}
