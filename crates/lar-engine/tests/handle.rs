//! The engine behind its handle, on the scripted backend (deterministic, with a paged cache of its own, so wrong
//! block tables or a cache not recomputed after preemption change the tokens): concurrent submitters, preemption,
//! abort in the middle of a prefill, a consumer that stops reading or goes away, failing and panicking forward
//! passes, and requests refused at the door.

use std::time::Duration;

use lar_engine::engine_core::CoreConfig;
use lar_engine::scripted::{self, ScriptedBackend, continuation};
use lar_engine::{EngineStats, Error, EventStream, Request};
use lar_types::{FinishReason, SamplingParams};

mod common;

use common::{VOCAB, config, drain, greedy, prompt, start, wait_for};

fn all_blocks_free(s: &EngineStats) -> bool {
    s.running == 0 && s.waiting == 0 && s.kv_blocks_free == s.kv_blocks_total
}

#[test]
fn concurrent_submitters_get_the_tokens_they_get_alone() {
    let e = start(ScriptedBackend::new(VOCAB, 4, 512), config(256, 4, 512));
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..6u32 {
                    let p = prompt(t * 10 + i, 1 + (t * 13 + i * 11) as usize % 60);
                    let n = 5 + (t * 7 + i * 5) as usize % 40;
                    let (tokens, f) = drain(e.submit(Request::new(p.clone(), greedy(n))).unwrap());
                    assert_eq!(f.reason, FinishReason::Length);
                    assert_eq!(tokens, continuation(&p, n, VOCAB), "thread {t} request {i}");
                    assert_eq!(f.stats.completion_tokens, n);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = wait_for(&e, all_blocks_free);
    assert_eq!(s.requests_finished, 24);
    assert!(s.steps > 0);
}

#[test]
fn preemption_gives_the_same_tokens_as_no_preemption() {
    // 24 blocks of 4: two sequences of 40 tokens fit at a time, six are submitted, no reserve: running sequences
    // outgrow the cache and the youngest is preempted (its cache dropped and recomputed later).
    let cfg = CoreConfig {
        reserve_per_seq: 0,
        ..config(64, 4, 24)
    };
    let e = start(ScriptedBackend::new(VOCAB, 4, 24), cfg);
    let prompts: Vec<Vec<u32>> = (0..6).map(|i| prompt(100 + i, 10)).collect();
    let streams: Vec<EventStream> = prompts
        .iter()
        .map(|p| e.submit(Request::new(p.clone(), greedy(30))).unwrap())
        .collect();
    for (p, s) in prompts.iter().zip(streams) {
        let (tokens, f) = drain(s);
        assert_eq!(f.reason, FinishReason::Length, "{:?}", f.error);
        assert_eq!(tokens, continuation(p, 30, VOCAB));
    }
    let s = wait_for(&e, all_blocks_free);
    assert!(s.preemptions > 0, "the test must preempt: {s:?}");
}

#[test]
fn abort_in_the_middle_of_a_prefill_frees_every_block() {
    // 2000 prompt tokens in chunks of 64 at 10 ms a pass: the prefill alone would take 32 passes.
    let mut b = ScriptedBackend::new(VOCAB, 16, 256);
    b.delay = Duration::from_millis(10);
    let passes = b.passes.clone();
    let e = start(b, config(4096, 16, 256));
    let s = e.submit(Request::new(prompt(1, 2000), greedy(10))).unwrap();
    while passes.load(std::sync::atomic::Ordering::Relaxed) < 3 {
        std::thread::sleep(Duration::from_millis(1));
    }
    e.abort(s.id());
    let (tokens, f) = drain(s);
    assert_eq!(f.reason, FinishReason::Cancelled);
    assert!(tokens.is_empty());
    let stats = wait_for(&e, all_blocks_free);
    assert!(
        stats.steps < 10,
        "the abort took effect after {} passes",
        stats.steps
    );
    assert_eq!(stats.requests_cancelled, 1);
    // The engine goes on serving.
    let p = prompt(2, 5);
    let (tokens, _) = drain(e.submit(Request::new(p.clone(), greedy(3))).unwrap());
    assert_eq!(tokens, continuation(&p, 3, VOCAB));
}

#[test]
fn a_consumer_that_stops_reading_is_cancelled_not_waited_for() {
    let cfg = CoreConfig {
        event_buffer: 16,
        ..config(512, 4, 512)
    };
    // 3 ms a pass: a consumer that reads keeps up with 48 ms of slack; one that does not falls behind in 16 passes.
    let mut b = ScriptedBackend::new(VOCAB, 4, 512);
    b.delay = Duration::from_millis(3);
    let e = start(b, cfg);
    let slow = e.submit(Request::new(prompt(3, 8), greedy(200))).unwrap();
    let p = prompt(4, 8);
    let (tokens, f) = drain(e.submit(Request::new(p.clone(), greedy(50))).unwrap());
    assert_eq!(f.reason, FinishReason::Length);
    assert_eq!(tokens, continuation(&p, 50, VOCAB));
    // The slow one got at most its buffer, then an end that says why.
    let (tokens, f) = drain(slow);
    assert_eq!(f.reason, FinishReason::Cancelled);
    assert!(tokens.len() <= 16, "{} tokens", tokens.len());
    assert!(
        f.error
            .as_deref()
            .unwrap_or("")
            .contains("fell 16 tokens behind"),
        "{:?}",
        f.error
    );
    wait_for(&e, all_blocks_free);
}

#[test]
fn a_dropped_stream_cancels_its_request() {
    let mut b = ScriptedBackend::new(VOCAB, 4, 512);
    b.delay = Duration::from_millis(2);
    let e = start(b, config(512, 4, 512));
    drop(e.submit(Request::new(prompt(5, 8), greedy(400))).unwrap());
    let p = prompt(6, 8);
    let (tokens, _) = drain(e.submit(Request::new(p.clone(), greedy(20))).unwrap());
    assert_eq!(tokens, continuation(&p, 20, VOCAB));
    let s = wait_for(&e, |s| all_blocks_free(s) && s.requests_cancelled == 1);
    assert!(s.generated_tokens < 400, "{s:?}");
}

#[test]
fn a_failing_forward_pass_fails_only_its_requests() {
    let good: Vec<Vec<u32>> = (0..3).map(|i| prompt(20 + i, 12)).collect();
    // Poison tokens that the good requests never see (in their prompts or their continuations).
    let seen: Vec<u32> = good
        .iter()
        .flat_map(|p| p.iter().copied().chain(continuation(p, 40, VOCAB)))
        .collect();
    let mut free = (scripted::FIRST_WORD..VOCAB as u32).filter(|t| !seen.contains(t));
    let (fail, panic) = (free.next().unwrap(), free.next().unwrap());
    let mut b = ScriptedBackend::new(VOCAB, 4, 512);
    b.fail_on = Some(fail);
    b.panic_on = Some(panic);
    let e = start(b, config(512, 4, 512));
    let mut streams = Vec::new();
    for (i, p) in good.iter().enumerate() {
        streams.push((
            Some(p.clone()),
            e.submit(Request::new(p.clone(), greedy(40))).unwrap(),
        ));
        let bad = if i % 2 == 0 { fail } else { panic };
        let mut poisoned = prompt(30 + i as u32, 6);
        poisoned.push(bad);
        streams.push((None, e.submit(Request::new(poisoned, greedy(40))).unwrap()));
    }
    for (want, s) in streams {
        let (tokens, f) = drain(s);
        match want {
            Some(p) => {
                assert_eq!(f.reason, FinishReason::Length, "{:?}", f.error);
                assert_eq!(tokens, continuation(&p, 40, VOCAB));
            }
            None => {
                assert_eq!(f.reason, FinishReason::Error);
                let msg = f.error.unwrap_or_default();
                assert!(
                    msg.contains("scripted failure") || msg.contains("panicked"),
                    "{msg}"
                );
            }
        }
    }
    let s = wait_for(&e, all_blocks_free);
    assert_eq!((s.requests_failed, s.requests_finished), (3, 3));
}

#[test]
fn queue_time_is_reported() {
    let mut b = ScriptedBackend::new(VOCAB, 4, 512);
    b.delay = Duration::from_millis(5);
    let cfg = CoreConfig {
        max_seqs: 1,
        ..config(512, 4, 512)
    };
    let e = start(b, cfg);
    let first = e.submit(Request::new(prompt(7, 4), greedy(10))).unwrap();
    let second = e.submit(Request::new(prompt(8, 4), greedy(10))).unwrap();
    let (_, a) = drain(first);
    let (_, b) = drain(second);
    // The second waited for the first's ten passes (50 ms at least).
    assert!(b.stats.queue_secs >= 0.04, "{:?}", b.stats);
    assert!(a.stats.queue_secs < b.stats.queue_secs);
}

#[test]
fn bad_requests_are_refused_when_submitted() {
    let e = start(ScriptedBackend::new(VOCAB, 4, 64), config(32, 4, 64));
    let submit = |p: Vec<u32>, params| e.submit(Request::new(p, params)).map(|_| ());
    assert!(matches!(submit(vec![], greedy(1)), Err(Error::EmptyPrompt)));
    assert!(matches!(
        submit(vec![5; 32], greedy(1)),
        Err(Error::PromptTooLong {
            tokens: 32,
            ctx: 32
        })
    ));
    assert!(matches!(
        submit(vec![5, 500], greedy(1)),
        Err(Error::TokenOutOfVocab {
            token: 500,
            n_vocab: 500
        })
    ));
    let hot = SamplingParams {
        temperature: -1.0,
        ..greedy(1)
    };
    match submit(vec![5], hot) {
        Err(Error::Param(p)) => assert_eq!(p.param, "temperature"),
        other => panic!("{other:?}"),
    }
    let biased = SamplingParams {
        logit_bias: vec![(9999, 1.0)],
        ..greedy(1)
    };
    assert!(matches!(
        submit(vec![5], biased),
        Err(Error::TokenOutOfVocab { token: 9999, .. })
    ));
    // Nothing reached the loop.
    assert_eq!(e.stats().steps, 0);
}
