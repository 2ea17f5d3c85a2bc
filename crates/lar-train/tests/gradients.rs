//! Every backward of training against finite differences of its forward, and every fast backward against its
//! plain twin: the norms, rotary embeddings (both pairings), the gated activations, cross-entropy, attention (grouped
//! heads, sliding windows, packed sequences), the LoRA pair, the frozen (quantized) product, and whole networks of
//! each architecture's shape (biases, QK-norms, GELU, post-norms, windows) end to end.

use std::sync::Arc;

use lar_kernels::pool::ThreadPool;
use lar_models::Model;
use lar_train::attention::{self, Shape};
use lar_train::linear::{self, Pair};
use lar_train::net::pair_mut;
use lar_train::ops;
use lar_train::rng::Rng;
use lar_train::{Adapter, Batch, Dropout, Net};

fn rand_vec(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Checks `grad` against central differences of `f` at `x` along `dirs` random directions; returns the worst
/// relative error.
fn check_fd(
    what: &str,
    x: &[f32],
    grad: &[f32],
    eps: f32,
    dirs: usize,
    f: impl Fn(&[f32]) -> f64,
) -> f64 {
    let mut rng = Rng::new(7);
    let mut worst = 0f64;
    for _ in 0..dirs {
        let dir = rand_vec(&mut rng, x.len(), 1.0);
        let at = |s: f32| -> Vec<f32> { x.iter().zip(&dir).map(|(a, d)| a + s * d).collect() };
        let fd = (f(&at(eps)) - f(&at(-eps))) / (2.0 * eps as f64);
        let an = dot(grad, &dir);
        let err = (fd - an).abs() / (fd.abs().max(an.abs()).max(1e-3));
        assert!(
            err < 0.02,
            "{what}: finite difference {fd}, gradient {an} (relative error {err})"
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn row_operations_match_finite_differences() {
    let mut rng = Rng::new(1);
    let d = 48;
    let x = rand_vec(&mut rng, d, 1.5);
    let w = rand_vec(&mut rng, d, 1.0);
    let r = rand_vec(&mut rng, d, 1.0);
    // RMS norm.
    let f = |x: &[f32]| {
        let mut y = vec![0f32; d];
        lar_kernels::ops::rms_norm(x, &w, 1e-5, &mut y);
        dot(&y, &r)
    };
    let mut g = vec![0f32; d];
    ops::rms_norm_backward(&x, &w, 1e-5, &r, &mut g);
    check_fd("rms_norm", &x, &g, 1e-2, 6, f);
    // Rotary embeddings, both pairings.
    let freqs = lar_kernels::ops::rope_inv_freq(d, 10_000.0);
    for neox in [false, true] {
        let f = |x: &[f32]| {
            let mut y = x.to_vec();
            lar_kernels::ops::rope(&mut y, 29, &freqs, neox);
            dot(&y, &r)
        };
        let mut g = r.clone();
        ops::rope_backward(&mut g, 29, &freqs, neox);
        check_fd("rope", &x, &g, 1e-2, 6, f);
    }
    // Gated activations: the gradient of the gate and of the up projection.
    let u = rand_vec(&mut rng, d, 2.0);
    for act in [
        lar_models::model::Activation::Silu,
        lar_models::model::Activation::Gelu,
    ] {
        let (mut dg, mut du) = (vec![0f32; d], vec![0f32; d]);
        ops::gated_backward(act, &x, &u, &r, &mut dg, &mut du);
        let fg = |g: &[f32]| {
            let mut h = vec![0f32; d];
            ops::gated(act, g, &u, &mut h);
            dot(&h, &r)
        };
        check_fd("gate", &x, &dg, 1e-2, 6, fg);
        let fu = |uu: &[f32]| {
            let mut h = vec![0f32; d];
            ops::gated(act, &x, uu, &mut h);
            dot(&h, &r)
        };
        check_fd("up", &u, &du, 1e-2, 6, fu);
    }
    // Cross-entropy.
    let logits = rand_vec(&mut rng, 40, 4.0);
    let mut g = logits.clone();
    ops::cross_entropy(&mut g, 17, 0.7);
    check_fd("cross-entropy", &logits, &g, 1e-2, 6, |l| {
        0.7 * ops::cross_entropy(&mut l.to_vec(), 17, 1.0) as f64
    });
}

#[test]
fn attention_matches_finite_differences_with_grouped_heads_windows_and_packed_sequences() {
    let pool = ThreadPool::new(2);
    let mut rng = Rng::new(2);
    let segs = vec![0..7, 7..12, 12..13];
    let n = 13;
    for window in [None, Some(3)] {
        let sh = Shape {
            n_head: 4,
            n_head_kv: 2,
            head_dim: 8,
            scale: 0.35,
            window,
        };
        let (qw, kw) = (32, 16);
        let q = rand_vec(&mut rng, n * qw, 1.0);
        let k = rand_vec(&mut rng, n * kw, 1.0);
        let v = rand_vec(&mut rng, n * kw, 1.0);
        let r = rand_vec(&mut rng, n * qw, 1.0);
        let run = |q: &[f32], k: &[f32], v: &[f32]| {
            let mut out = vec![0f32; n * qw];
            attention::forward(&sh, &segs, q, k, v, &mut out, &pool);
            dot(&out, &r)
        };
        let mut out = vec![0f32; n * qw];
        let probs = attention::forward(&sh, &segs, &q, &k, &v, &mut out, &pool);
        let (mut dq, mut dk, mut dv) = (vec![0f32; n * qw], vec![0f32; n * kw], vec![0f32; n * kw]);
        attention::backward(
            &sh,
            &segs,
            (&q, &k, &v),
            &out,
            probs,
            &r,
            (&mut dq, &mut dk, &mut dv),
            &pool,
        );
        check_fd("attention dq", &q, &dq, 1e-2, 5, |x| run(x, &k, &v));
        check_fd("attention dk", &k, &dk, 1e-2, 5, |x| run(&q, x, &v));
        check_fd("attention dv", &v, &dv, 1e-2, 5, |x| run(&q, &k, x));
        // A token of one sequence does not see another: the third sequence's single token attends to itself only.
        let last = &out[12 * qw..13 * qw];
        for h in 0..4 {
            let g = h / 2;
            for (a, b) in last[h * 8..(h + 1) * 8]
                .iter()
                .zip(&v[12 * kw + g * 8..12 * kw + (g + 1) * 8])
            {
                assert!((a - b).abs() < 1e-5);
            }
        }
    }
}

fn tiny(arch: &str) -> Model {
    let g = lar_models::Gguf::from_bytes(lar_testdata::tiny_model(arch)).expect("tiny model");
    Model::from_gguf(Arc::new(g)).expect("loads")
}

#[test]
fn lora_and_frozen_products_match_finite_differences_and_their_twins() {
    let pool = ThreadPool::new(2);
    let mut rng = Rng::new(3);
    let (n, n_in, n_out, rank) = (5, 24, 20, 4);
    let p = Pair {
        rank,
        n_in,
        n_out,
        a: rand_vec(&mut rng, rank * n_in, 0.5),
        b: rand_vec(&mut rng, n_out * rank, 0.5),
    };
    let x = rand_vec(&mut rng, n * n_in, 1.0);
    let r = rand_vec(&mut rng, n * n_out, 1.0);
    let f = |p: &Pair, x: &[f32]| {
        let mut u = vec![0f32; n * rank];
        let mut out = vec![0f32; n * n_out];
        linear::lora_forward(p, 1.5, x, &mut u, &mut out, &pool);
        dot(&out, &r)
    };
    let mut u = vec![0f32; n * rank];
    linear::lora_forward(&p, 1.5, &x, &mut u, &mut vec![0f32; n * n_out], &pool);
    let mut g = p.zeros_like();
    let mut dx = vec![0f32; n * n_in];
    linear::lora_backward(&p, 1.5, &x, &u, &r, &mut g, &mut dx, &pool);
    check_fd("lora dx", &x, &dx, 1e-2, 5, |x| f(&p, x));
    check_fd("lora dA", &p.a, &g.a, 1e-2, 5, |a| {
        f(
            &Pair {
                a: a.to_vec(),
                ..p.clone()
            },
            &x,
        )
    });
    check_fd("lora dB", &p.b, &g.b, 1e-2, 5, |b| {
        f(
            &Pair {
                b: b.to_vec(),
                ..p.clone()
            },
            &x,
        )
    });

    // The transposed product of real quantized weights (SmolLM2's Q4_1 and its Q6_K output) and of F32 ones:
    // the fast path against its plain twin, with 9 gradient rows (the f32 path) and 40 (AMX tiles where the CPU
    // has them: two whole groups and a tail).
    let small = Model::open(&lar_testdata::model(lar_testdata::SMOLLM2)).expect("SmolLM2");
    let tiny = tiny("llama");
    for (w, n) in [
        &small.layer(0).wq,
        &small.layer(3).down,
        small.output_head().0,
        &tiny.layer(1).gate,
    ]
    .into_iter()
    .flat_map(|w| [(w, 9), (w, 40)])
    {
        let dy = rand_vec(&mut rng, n * w.rows, 1.0);
        let (mut fast, mut plain) = (vec![0f32; n * w.cols], vec![0f32; n * w.cols]);
        linear::frozen_backward(w, &dy, &mut fast, &pool);
        linear::frozen_backward_reference(w, &dy, &mut plain);
        let scale = plain.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in fast.iter().zip(&plain) {
            assert!((a - b).abs() <= 1e-4 * scale, "{w:?}: {a} vs {b}");
        }
        // ... and the plain twin is the gradient of the plain forward: <dy, W x> = <dyᵀ W, x>.
        let x = rand_vec(&mut rng, n * w.cols, 1.0);
        let mut y = vec![0f32; n * w.rows];
        linear::frozen_reference(w, &x, &mut y);
        let (lhs, rhs) = (dot(&dy, &y), dot(&plain, &x));
        assert!(
            (lhs - rhs).abs() <= 1e-3 * lhs.abs().max(1.0),
            "{w:?}: {lhs} vs {rhs}"
        );
    }
}

/// The adapter's gradient over a whole network against finite differences of its loss (plain twins, no
/// dropout), with `B` made non-zero so both matrices' gradients are exercised.
fn check_network(what: &str, model: &Model, targets: &[usize]) {
    let pool = ThreadPool::new(2);
    let mut net = Net::new(model, &pool);
    net.reference = true;
    let mut ad = Adapter::new(&model.hp, 4, 8.0, targets, 5).expect("adapter");
    let mut rng = Rng::new(11);
    for t in ad.tensors_mut() {
        for v in t.iter_mut() {
            *v = (rng.next_f32() * 2.0 - 1.0) * 0.2;
        }
    }
    let mut batch = Batch::default();
    let toks: Vec<u32> = (0..11).map(|i| (i * 37 + 5) % 250).collect();
    batch.push(&toks[..7], &[false, false, true, true, true, true, true]);
    batch.push(&toks[7..], &[false, true, true, true]);
    let n = batch.n_loss() as f32;
    batch.weights.iter_mut().for_each(|w| *w /= n);
    let mut grads = ad.zeros_like();
    let loss = net
        .loss_and_grad(&ad, &batch, Dropout::default(), &mut grads)
        .expect("gradient");
    let again = net.loss(&ad, &batch).expect("loss");
    assert!((loss - again).abs() < 1e-5, "{what}: {loss} vs {again}");
    // One block's pair at a time, A and B.
    for il in 0..model.hp.n_layers {
        for &t in targets {
            for which in 0..2 {
                let x: Vec<f32> = {
                    let p = ad.pair(il, t).expect("pair");
                    if which == 0 { p.a.clone() } else { p.b.clone() }
                };
                let g = {
                    let p = grads.pair(il, t).expect("pair");
                    if which == 0 { p.a.clone() } else { p.b.clone() }
                };
                let f = |v: &[f32]| {
                    let mut a2 = ad.clone();
                    let p = pair_mut(&mut a2, il, t).expect("pair");
                    if which == 0 {
                        p.a = v.to_vec()
                    } else {
                        p.b = v.to_vec()
                    }
                    net.loss(&a2, &batch).expect("loss") as f64
                };
                check_fd(
                    &format!("{what} block {il} target {t} {}", ["A", "B"][which]),
                    &x,
                    &g,
                    3e-3,
                    2,
                    f,
                );
            }
        }
    }
}

#[test]
fn whole_networks_match_finite_differences() {
    check_network("llama", &tiny("llama"), &[0, 1, 2, 3, 4, 5, 6]);
    check_network("qwen2 (biases)", &tiny("qwen2"), &[0, 2, 6]);
    check_network("qwen3 (QK-norm)", &tiny("qwen3"), &[0, 1, 5]);
    // Gemma's shape on the same weights: GELU, norms after attention and after the FFN, a sliding window on
    // every other block, neox rotary pairs and a scaled embedding.
    let mut m = tiny("llama");
    m.hp.activation = lar_models::model::Activation::Gelu;
    m.hp.sliding_window = Some(3);
    m.hp.swa_pattern = 2;
    m.hp.rope_neox = true;
    m.hp.embed_scale = 8.0;
    let d = m.hp.n_embd;
    for il in 0..m.hp.n_layers {
        let l = m.layer_mut(il);
        l.post_attn_norm = Some((0..d).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect());
        l.post_ffn_norm = Some((0..d).map(|i| 0.8 + (i % 5) as f32 * 0.1).collect());
    }
    assert!(
        m.hp.is_swa_layer(0) != m.hp.is_swa_layer(1),
        "one windowed block, one global"
    );
    check_network("gemma-shaped", &m, &[1, 3, 4, 6]);
}

#[test]
fn the_fast_gradient_agrees_with_the_plain_twin_on_a_quantized_model() {
    let model = Model::open(&lar_testdata::model(lar_testdata::SMOLLM2)).expect("SmolLM2");
    let pool = ThreadPool::new(2);
    let mut ad = Adapter::new(&model.hp, 8, 16.0, &[0, 1, 2, 3, 4, 5, 6], 9).expect("adapter");
    let mut rng = Rng::new(4);
    for p in ad.layers.iter_mut().flat_map(|l| l.iter_mut().flatten()) {
        p.b = rand_vec(&mut rng, p.b.len(), 0.01);
    }
    let mut batch = Batch::default();
    let toks: Vec<u32> = (0..40).map(|i| (i * 997 + 31) % 49_000).collect();
    batch.push(&toks, &[true; 40]);
    batch.weights.iter_mut().for_each(|w| *w /= 39.0);
    let mut grads = [ad.zeros_like(), ad.zeros_like()];
    let mut losses = [0f32; 2];
    for (i, reference) in [false, true].into_iter().enumerate() {
        let mut net = Net::new(&model, &pool);
        net.reference = reference;
        losses[i] = net
            .loss_and_grad(&ad, &batch, Dropout::default(), &mut grads[i])
            .expect("gradient");
    }
    assert!(
        (losses[0] - losses[1]).abs() < 0.02 * losses[1],
        "{losses:?}"
    );
    let (a, b): (Vec<f32>, Vec<f32>) = (grads[0].tensors().concat(), grads[1].tensors().concat());
    let cos = dot(&a, &b) / (dot(&a, &a).sqrt() * dot(&b, &b).sqrt());
    assert!(cos > 0.99, "cosine of the fast and plain gradients: {cos}");
}

#[test]
fn the_kl_divergence_from_a_teachers_top_tokens_matches_finite_differences() {
    let mut rng = Rng::new(12);
    let logits = rand_vec(&mut rng, 50, 3.0);
    // A teacher's top five, 0.9 of its mass.
    let teacher = vec![(3u32, 0.4f32), (17, 0.2), (8, 0.15), (40, 0.1), (22, 0.05)];
    let mut g = logits.clone();
    let kl = ops::kl_topk(&mut g, &teacher, 0.5);
    assert!(kl > 0.0);
    check_fd("kl", &logits, &g, 1e-2, 6, |l| {
        0.5 * ops::kl_topk(&mut l.to_vec(), &teacher, 1.0) as f64
    });
    // Never negative, even for a student sharper than the teacher on its top tokens.
    let mut sharp = vec![-20.0f32; 50];
    sharp[3] = 10.0;
    assert!(ops::kl_topk(&mut sharp, &teacher, 1.0) > 0.0);
    // The student that is the teacher (on its top tokens, the rest sharing what is left) has zero divergence.
    let mut same = vec![(0.1f32 / 45.0).ln(); 50];
    for &(t, p) in &teacher {
        same[t as usize] = p.ln();
    }
    assert!(ops::kl_topk(&mut same, &teacher, 1.0).abs() < 1e-5);
}

/// Keeping blocks' activations from the forward (all, some, none: gradient checkpointing) changes nothing: the
/// same loss and the same gradient, bit for bit, with dropout on, on the real kernels.
#[test]
fn kept_activations_give_the_bits_of_checkpointing() {
    let model = tiny("llama");
    let pool = ThreadPool::new(2);
    let mut ad = Adapter::new(&model.hp, 4, 8.0, &[0, 1, 2, 3, 4, 5, 6], 5).expect("adapter");
    let mut rng = Rng::new(17);
    for t in ad.tensors_mut() {
        for v in t.iter_mut() {
            *v = (rng.next_f32() * 2.0 - 1.0) * 0.2;
        }
    }
    let mut batch = Batch::default();
    let toks: Vec<u32> = (0..11).map(|i| (i * 41 + 3) % 250).collect();
    batch.push(&toks[..7], &[false, true, true, true, true, true, true]);
    batch.push(&toks[7..], &[false, true, true, true]);
    let dropout = Dropout { p: 0.1, seed: 99 };
    let layers = model.hp.n_layers;
    let run = |keep: usize| {
        let mut net = Net::new(&model, &pool);
        net.keep_bytes = keep;
        let mut grads = ad.zeros_like();
        let loss = net
            .loss_and_grad(&ad, &batch, dropout, &mut grads)
            .expect("gradient");
        let bits: Vec<u32> = grads
            .tensors()
            .iter()
            .flat_map(|t| t.iter().map(|v| v.to_bits()))
            .collect();
        ((loss.to_bits(), bits), net.kept())
    };
    let (checkpointed, none) = run(0);
    assert_eq!(none, (0, 0), "nothing kept without a budget");
    assert!(
        checkpointed.1.iter().any(|&b| b != 0),
        "a gradient to compare"
    );
    let (all, (blocks, bytes)) = run(usize::MAX);
    assert_eq!(blocks, layers, "every block kept");
    assert_eq!(all, checkpointed, "every block kept");
    // Room for about half the blocks: the first ones kept, the rest computed again.
    let (some, (blocks, _)) = run(bytes / 2);
    assert!(
        blocks > 0 && blocks < layers,
        "{blocks} of {layers} blocks kept"
    );
    assert_eq!(some, checkpointed, "some blocks kept");
}
