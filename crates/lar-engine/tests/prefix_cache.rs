//! The prefix cache through the engine, on the scripted backend (whose next token is a hash of the sequence read
//! back through the block table, so a block shared or reused wrongly changes the tokens): a repeated prompt
//! computes only its uncached tail, concurrent requests share a system prompt, and evicted prefixes are recomputed.

use lar_engine::engine_core::{CoreConfig, Limits};
use lar_engine::scripted::{self, ScriptedBackend, continuation};
use lar_engine::{EngineHandle, Event, EventStream, Finished, Request};
use lar_types::SamplingParams;

const VOCAB: usize = 500;

fn start(
    block_size: usize,
    n_blocks: usize,
    ctx: usize,
) -> (
    EngineHandle,
    std::sync::Arc<std::sync::Mutex<scripted::Log>>,
) {
    let b = ScriptedBackend::new(VOCAB, block_size, n_blocks);
    let log = b.log.clone();
    let cfg = CoreConfig {
        limits: Limits {
            ctx,
            n_vocab: VOCAB,
        },
        block_size,
        n_blocks,
        max_batch_tokens: 64,
        max_seqs: 8,
        reserve_per_seq: 1,
        event_buffer: 1024,
        prefix_caching: true,
    };
    (scripted::start(b, cfg).unwrap(), log)
}

fn greedy(n: usize) -> SamplingParams {
    SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy(n)
    }
}

fn drain(s: EventStream) -> (Vec<u32>, Finished) {
    let mut tokens = Vec::new();
    for ev in s {
        match ev {
            Event::Token(t) => tokens.push(t.token),
            Event::Done(f) => return (tokens, f),
        }
    }
    panic!("a stream ended without Done");
}

fn words(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| scripted::FIRST_WORD + (seed * 37 + i * 11) % (VOCAB as u32 - 10))
        .collect()
}

/// The engine's counters once nothing runs or waits (they are published after each step).
fn settled(e: &EngineHandle) -> lar_engine::EngineStats {
    let t = std::time::Instant::now();
    loop {
        let s = e.stats();
        if s.running == 0 && s.waiting == 0 && s.kv_blocks_free == s.kv_blocks_total {
            return s;
        }
        assert!(
            t.elapsed().as_secs() < 10,
            "the engine did not settle: {s:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn computed(log: &std::sync::Mutex<scripted::Log>) -> u64 {
    log.lock().unwrap().tokens
}

#[test]
fn a_repeated_prompt_computes_only_its_uncached_tail() {
    let (e, log) = start(4, 128, 256);
    let p = words(1, 41);
    let (first, f1) = drain(e.submit(Request::new(p.clone(), greedy(5))).unwrap());
    assert_eq!(first, continuation(&p, 5, VOCAB));
    assert_eq!(f1.stats.cached_tokens, 0);
    let before = computed(&log);
    let (second, f2) = drain(e.submit(Request::new(p.clone(), greedy(5))).unwrap());
    assert_eq!(second, first);
    // Ten full blocks (40 tokens) came from the cache: the 41st token and four decode steps were computed.
    assert_eq!(f2.stats.cached_tokens, 40);
    assert_eq!(computed(&log) - before, 1 + 4);
    let s = settled(&e);
    assert_eq!((s.prefix_hit_tokens, s.prefix_query_tokens), (40, 80));
    assert!(s.kv_blocks_cached > 0);
}

#[test]
fn concurrent_requests_share_a_system_prompt() {
    let (e, _) = start(4, 256, 256);
    let system = words(2, 32);
    // Once alone, so its blocks are cached; then six at once that start with it.
    drain(e.submit(Request::new(system.clone(), greedy(1))).unwrap());
    let prompts: Vec<Vec<u32>> = (0..6)
        .map(|i| system.iter().copied().chain(words(10 + i, 5)).collect())
        .collect();
    let streams: Vec<EventStream> = prompts
        .iter()
        .map(|p| e.submit(Request::new(p.clone(), greedy(12))).unwrap())
        .collect();
    for (p, s) in prompts.iter().zip(streams) {
        let (tokens, f) = drain(s);
        assert_eq!(tokens, continuation(p, 12, VOCAB));
        assert_eq!(f.stats.cached_tokens, 32);
    }
    let s = settled(&e);
    assert_eq!(s.prefix_hit_tokens, 6 * 32);
}

#[test]
fn evicted_prefixes_are_recomputed_and_answers_stay_right() {
    // 20 blocks of 4 tokens: three 30-token prompts with 10 tokens each cannot all stay cached.
    let (e, _) = start(4, 20, 64);
    let ps: Vec<Vec<u32>> = (0..3).map(|i| words(20 + i, 30)).collect();
    for round in 0..3 {
        for p in &ps {
            let (tokens, _) = drain(e.submit(Request::new(p.clone(), greedy(10))).unwrap());
            assert_eq!(tokens, continuation(p, 10, VOCAB), "round {round}");
        }
    }
    let s = settled(&e);
    // Each prompt evicts part of the others: fewer hits than the 6 x 28 a large cache would give.
    assert!(s.prefix_hit_tokens < 6 * 28, "{s:?}");
}
