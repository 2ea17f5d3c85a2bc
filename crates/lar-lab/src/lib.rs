//! The lab notebook: shrink a model ([`quantize`], with llama-quantize's type choices in [`mixture`]), measure what it costs and how good it is, and keep a record
//! of every experiment.
//!
//! [`perplexity`] measures a model on a text as llama-perplexity does and [`choice`] scores multiple-choice tasks
//! by log-likelihood as lm-evaluation-harness and llama.cpp do (their numbers, on the same file and text, are the
//! references the tests hold Lar to); [`runs`] is the record: every bench, evaluation or quantization is a run
//! in one SQLite file under `$LAR_HOME` (when, what model and its sha256, parameters, machine, metrics with steps,
//! artifacts, status, the Lar version), listed, compared and removed by `lar runs`; [`machine`] describes the
//! machine a run ran on; [`chart`] draws runs as SVG and [`chart_file`] writes a chart as SVG or PNG.

pub mod audit;
pub mod chart;
pub mod chart_file;
pub mod choice;
pub mod digest;
pub mod error;
pub mod imatrix;
pub mod kld;
pub mod machine;
pub mod mixture;
pub mod mlflow;
pub mod perplexity;
pub mod quantize;
pub mod runs;
pub mod scored;

pub use error::{Error, Result};
