//! The planner's errors. Messages name what is wrong in the planner's words (context, KV budget, memory), never a
//! command-line flag: the CLI and the server show them alike.

use crate::size::fmt_bytes;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] lar_formats::Error),
    /// The memory budget itself could not be read (a malformed `LAR_MEMORY_LIMIT`).
    #[error("{0}")]
    Budget(String),
    #[error("{0}")]
    Invalid(String),
    #[error("unknown {what} '{got}' (one of: {expected})")]
    Unknown {
        what: &'static str,
        got: String,
        expected: &'static str,
    },
    /// A load that would not fit, with the plan's figures.
    #[error("{}", not_enough_memory(.0))]
    NotEnoughMemory(Box<Refusal>),
}

impl Error {
    pub(crate) fn unknown(what: &'static str, got: &str, expected: &'static str) -> Self {
        Error::Unknown {
            what,
            got: got.into(),
            expected,
        }
    }
}

/// The figures of a refused load.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub ctx: usize,
    pub parallel: usize,
    pub total_bytes: u64,
    pub weights_bytes: u64,
    pub kv_bytes: u64,
    pub compute_bytes: u64,
    pub overhead_bytes: u64,
    pub budget_bytes: u64,
    /// Where the budget came from (`LAR_MEMORY_LIMIT=...`, available RAM, a cgroup limit).
    pub budget_source: String,
    /// The largest context that fits the same budget (0: none).
    pub max_ctx: usize,
}

fn not_enough_memory(r: &Refusal) -> String {
    let hint = match r.max_ctx {
        0 => "it does not fit at any context".to_string(),
        c => format!("the largest context that fits is {c}"),
    };
    let seqs = if r.parallel > 1 {
        format!(" x {} sequences", r.parallel)
    } else {
        String::new()
    };
    format!(
        "not enough memory: this model needs {} at context {}{seqs} (weights {}, KV cache {}, compute {}, overhead \
         {}) but {} is available ({}); {hint}",
        fmt_bytes(r.total_bytes),
        r.ctx,
        fmt_bytes(r.weights_bytes),
        fmt_bytes(r.kv_bytes),
        fmt_bytes(r.compute_bytes),
        fmt_bytes(r.overhead_bytes),
        fmt_bytes(r.budget_bytes),
        r.budget_source,
    )
}

pub type Result<T> = std::result::Result<T, Error>;
