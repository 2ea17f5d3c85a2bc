//! The prefix cache through the engine, on the scripted backend (whose next token is a hash of the sequence read
//! back through the block table, so a block shared or reused wrongly changes the tokens): a repeated prompt
//! computes only its uncached tail, concurrent requests share a system prompt, and evicted prefixes are recomputed.

mod common;

use std::sync::{Arc, Mutex};

use common::{VOCAB, config, drain, greedy, wait_for};
use lar_engine::scripted::{self, Log, ScriptedBackend, continuation};
use lar_engine::{EngineHandle, EngineStats, EventStream, Request};

/// An engine of `n_blocks` blocks of `block_size`, and the log of what its backend computed.
fn start(block_size: usize, n_blocks: usize, ctx: usize) -> (EngineHandle, Arc<Mutex<Log>>) {
    let b = ScriptedBackend::new(VOCAB, block_size, n_blocks);
    let log = b.log.clone();
    (common::start(b, config(ctx, block_size, n_blocks)), log)
}

fn words(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| scripted::FIRST_WORD + (seed * 37 + i * 11) % (VOCAB as u32 - 10))
        .collect()
}

/// The engine's counters once nothing runs or waits and every block is free again.
fn settled(e: &EngineHandle) -> EngineStats {
    wait_for(e, |s| {
        s.running == 0 && s.waiting == 0 && s.kv_blocks_free == s.kv_blocks_total
    })
}

fn computed(log: &Mutex<Log>) -> u64 {
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

/// `n` choices of one prompt: the first computes it, the others wait for its full blocks and share them, computing
/// only the last partial block (and the last token) themselves; each still gets its own right answer.
#[test]
fn choices_of_one_prompt_share_its_blocks() {
    let (e, log) = start(4, 128, 256);
    let p = words(3, 42);
    let leader = e.submit(Request::new(p.clone(), greedy(6))).unwrap();
    let followers: Vec<EventStream> = (0..3)
        .map(|_| {
            let mut r = Request::new(p.clone(), greedy(6));
            r.follows = Some(leader.id());
            e.submit(r).unwrap()
        })
        .collect();
    let want = continuation(&p, 6, VOCAB);
    let (tokens, f) = drain(leader);
    assert_eq!(tokens, want);
    assert_eq!(f.stats.cached_tokens, 0);
    for s in followers {
        let (tokens, f) = drain(s);
        assert_eq!(tokens, want);
        // 42 tokens: ten full blocks (40) shared, two computed.
        assert_eq!(f.stats.cached_tokens, 40);
    }
    settled(&e);
    // The prompt once, each follower's two-token tail, and every decode step (5 per choice).
    assert_eq!(computed(&log), 42 + 3 * 2 + 4 * 5);
}

/// Prompt logprobs are computed for every position, also in one-token chunks and for a prompt whose blocks are
/// cached (it is computed whole, never taken from the cache).
#[test]
fn every_prompt_position_is_scored_even_in_one_token_chunks() {
    let b = ScriptedBackend::new(VOCAB, 4, 64);
    let mut cfg = config(128, 4, 64);
    cfg.max_batch_tokens = 1;
    let e = common::start(b, cfg);
    let p = words(4, 13);
    drain(e.submit(Request::new(p.clone(), greedy(1))).unwrap());
    let mut r = Request::new(p.clone(), greedy(1));
    r.prompt_logprobs = Some(2);
    let (_, f) = drain(e.submit(r).unwrap());
    assert_eq!(f.stats.cached_tokens, 0);
    let scores = f.prompt_logprobs.expect("scores");
    assert_eq!(scores.len(), p.len());
    assert!(scores[0].is_none());
    for (j, s) in scores.iter().enumerate().skip(1) {
        let s = s
            .as_ref()
            .unwrap_or_else(|| panic!("position {j} not scored"));
        assert_eq!(s.top.len(), 2);
        let predicted = scripted::next_token(&p[..j], VOCAB) == p[j];
        assert_eq!(s.top[0].0, scripted::next_token(&p[..j], VOCAB));
        assert_eq!(
            predicted,
            (s.logprob - s.top[0].1).abs() < 1e-6,
            "position {j}"
        );
    }
}

/// With `score_from`, the positions before it are not scored and, in a pass that holds them, get no logits (the
/// backend returns fewer rows); those from it on score exactly as a whole scoring does, in one pass or in
/// one-token chunks.
#[test]
fn scoring_from_a_position_scores_the_same_with_fewer_rows() {
    for chunk in [64, 1] {
        let b = ScriptedBackend::new(VOCAB, 4, 64);
        let log = b.log.clone();
        let mut cfg = config(128, 4, 64);
        cfg.max_batch_tokens = chunk;
        let e = common::start(b, cfg);
        let p = words(4, 13);
        let mut whole = Request::new(p.clone(), greedy(1));
        whole.prompt_logprobs = Some(1);
        let rows = |l: &std::sync::Arc<std::sync::Mutex<scripted::Log>>| l.lock().unwrap().rows;
        let before = rows(&log);
        let (_, all) = drain(e.submit(whole).unwrap());
        let whole_rows = rows(&log) - before;
        let all = all.prompt_logprobs.expect("scores");
        let mut half = Request::new(p.clone(), greedy(1));
        half.prompt_logprobs = Some(1);
        half.score_from = 7;
        let before = rows(&log);
        let (_, f) = drain(e.submit(half).unwrap());
        // In one pass, positions 0..6 need no logits; one-token chunks each return their (last) row anyway.
        let saved = if chunk == 1 { 0 } else { 6 };
        assert_eq!(whole_rows - (rows(&log) - before), saved, "chunk {chunk}");
        let scores = f.prompt_logprobs.expect("scores");
        assert_eq!(scores.len(), p.len());
        for (j, s) in scores.iter().enumerate() {
            if j < 7 {
                assert!(s.is_none(), "chunk {chunk}: position {j} scored");
            } else {
                assert_eq!(s, &all[j], "chunk {chunk}: position {j}");
            }
        }
        settled(&e);
    }
}
