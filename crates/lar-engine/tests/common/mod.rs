//! What the scripted-backend tests share: the vocabulary, a core configuration, greedy parameters, prompts, and
//! reading a stream to its end or the engine's counters until they settle.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use lar_engine::engine_core::{CoreConfig, Limits};
use lar_engine::scripted::{self, ScriptedBackend};
use lar_engine::{EngineHandle, EngineStats, Event, EventStream, Finished};
use lar_types::SamplingParams;

pub const VOCAB: usize = 500;

pub fn config(ctx: usize, block_size: usize, n_blocks: usize) -> CoreConfig {
    CoreConfig {
        limits: Limits {
            ctx,
            n_vocab: VOCAB,
            n_loras: 0,
        },
        block_size,
        n_blocks,
        max_batch_tokens: 64,
        max_seqs: 8,
        reserve_per_seq: 1,
        event_buffer: 1024,
        prefix_caching: true,
    }
}

pub fn start(backend: ScriptedBackend, cfg: CoreConfig) -> EngineHandle {
    scripted::start(backend, cfg).unwrap()
}

pub fn greedy(n: usize) -> SamplingParams {
    SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy(n)
    }
}

/// Every token of a stream, and how it ended.
pub fn drain(s: EventStream) -> (Vec<u32>, Finished) {
    let mut tokens = Vec::new();
    for ev in s {
        match ev {
            Event::Token(t) => tokens.push(t.token),
            Event::Done(f) => return (tokens, f),
        }
    }
    panic!("a stream ended without Done");
}

pub fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| scripted::FIRST_WORD + (seed * 31 + i * 7) % (VOCAB as u32 - 10))
        .collect()
}

/// Waits (at most 10 s) until the engine's counters satisfy `ok`.
pub fn wait_for(e: &EngineHandle, ok: impl Fn(&EngineStats) -> bool) -> EngineStats {
    let t = Instant::now();
    loop {
        let s = e.stats();
        if ok(&s) {
            return s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "gave up waiting: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
