//! What this machine has ([`hw`]): CPU, cores, SIMD features, memory, GPUs, free disk. The memory planner that
//! turns a model's tensor table into a fit-or-not answer builds on it.

pub mod hw;
