//! Training throughput on a real model: `cargo run --release -p lar-train --example train-speed -- MODEL [TOKENS]
//! [THREADS]`. Times the engine's prefill of TOKENS tokens, the training forward (loss only) and a whole training
//! step (forward, recomputed forward, backward) over the same tokens, and prints tokens/s of each.

use std::sync::Arc;
use std::time::Instant;

use lar_models::{KvStore, Model, SeqBatch, ThreadPool};
use lar_train::{Adapter, Batch, Dropout, Net};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    lar_train::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: train-speed MODEL [TOKENS] [THREADS]")?;
    let n: usize = args.get(2).map_or(Ok(512), |s| s.parse())?;
    let threads: usize = args.get(3).map_or(Ok(2), |s| s.parse())?;
    let model = Model::from_gguf(Arc::new(lar_models::open_model(std::path::Path::new(
        path,
    ))?))?;
    let pool = ThreadPool::new(threads);
    let toks: Vec<u32> = (0..n as u32)
        .map(|i| (i * 7919 + 13) % model.hp.n_vocab as u32)
        .collect();
    let time = |what: &str, f: &mut dyn FnMut()| {
        f();
        let t = Instant::now();
        f();
        let s = t.elapsed().as_secs_f64();
        println!("{what:>28}: {:8.1} tokens/s ({s:.2} s)", n as f64 / s);
    };
    let bs = 16;
    let table: Vec<u32> = (0..n.div_ceil(bs) as u32).collect();
    let mut kv = KvStore::new(bs, model.hp.n_layers, model.hp.kv_dim(), table.len());
    time("engine prefill", &mut || {
        let b = [SeqBatch {
            tokens: &toks,
            pos: 0,
            block_table: &table,
            logits_from: None,
            lora: None,
        }];
        model.forward(&b, &mut kv, &pool).expect("forward");
    });
    let ad = Adapter::new(&model.hp, 16, 32.0, &[0, 1, 2, 3, 4, 5, 6], 1)?;
    let mut batch = Batch::default();
    let mut loss = vec![false; n];
    loss[n - 1] = true;
    batch.push(&toks, &loss);
    let net = Net::new(&model, &pool);
    time("training forward", &mut || {
        net.loss(&ad, &batch).expect("loss");
    });
    let mut g = ad.zeros_like();
    time("training step (1 loss row)", &mut || {
        net.loss_and_grad(&ad, &batch, Dropout { p: 0.05, seed: 1 }, &mut g)
            .expect("grad");
    });
    let mut all = Batch::default();
    all.push(&toks, &vec![true; n]);
    time("training step (all rows)", &mut || {
        net.loss_and_grad(&ad, &all, Dropout { p: 0.05, seed: 1 }, &mut g)
            .expect("grad");
    });
    // Every block's activations kept from the forward (no recomputation).
    let mut kept = Net::new(&model, &pool);
    kept.keep_bytes = usize::MAX;
    time("training step (all rows, activations kept)", &mut || {
        kept.loss_and_grad(&ad, &all, Dropout { p: 0.05, seed: 1 }, &mut g)
            .expect("grad");
    });
    let (blocks, bytes) = kept.kept();
    println!(
        "{:>45}: {blocks} blocks, {:.1} MiB",
        "activations kept",
        bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
