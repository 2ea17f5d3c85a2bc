//! Training attention (register-blocked, cut into pieces of rows) against its plain twin, a direct f64 transcription
//! of softmax attention and its gradient, at shapes that reach every path: head sizes of 64 (whole 32-column
//! blocks) and 40 (a tail), segments longer than one piece of rows and shorter than four, grouped heads, with and
//! without a sliding window. (tests/gradients.rs holds the same functions to finite differences on small shapes.)

use std::ops::Range;

use lar_kernels::pool::ThreadPool;
use lar_train::attention::{self, Shape};
use lar_train::rng::Rng;

fn rand_vec(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}

/// The plain twin: (out, dq, dk, dv) in f64.
fn reference(
    sh: &Shape,
    segs: &[Range<usize>],
    (q, k, v): (&[f32], &[f32], &[f32]),
    dout: &[f32],
) -> [Vec<f64>; 4] {
    let (hd, nh, nkv) = (sh.head_dim, sh.n_head, sh.n_head_kv);
    let (qw, kw, group) = (nh * hd, nkv * hd, nh / nkv);
    let n = segs.last().map_or(0, |s| s.end);
    let mut out = vec![0f64; n * qw];
    let (mut dq, mut dk, mut dv) = (vec![0f64; n * qw], vec![0f64; n * kw], vec![0f64; n * kw]);
    for seg in segs {
        for h in 0..nh {
            let g = h / group;
            for i in seg.clone() {
                let lo = sh
                    .window
                    .map_or(seg.start, |w| (i + 1).saturating_sub(w).max(seg.start));
                let qi = |c: usize| q[i * qw + h * hd + c] as f64;
                let kj = |j: usize, c: usize| k[j * kw + g * hd + c] as f64;
                let vj = |j: usize, c: usize| v[j * kw + g * hd + c] as f64;
                let doi = |c: usize| dout[i * qw + h * hd + c] as f64;
                let scores: Vec<f64> = (lo..=i)
                    .map(|j| (0..hd).map(|c| qi(c) * kj(j, c)).sum::<f64>() * sh.scale as f64)
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                let p: Vec<f64> = scores.iter().map(|s| (s - max).exp() / sum).collect();
                let dp: Vec<f64> = (lo..=i)
                    .map(|j| (0..hd).map(|c| doi(c) * vj(j, c)).sum())
                    .collect();
                let mean: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
                for (x, j) in (lo..=i).enumerate() {
                    let ds = p[x] * (dp[x] - mean) * sh.scale as f64;
                    for c in 0..hd {
                        out[i * qw + h * hd + c] += p[x] * vj(j, c);
                        dv[j * kw + g * hd + c] += p[x] * doi(c);
                        dq[i * qw + h * hd + c] += ds * kj(j, c);
                        dk[j * kw + g * hd + c] += ds * qi(c);
                    }
                }
            }
        }
    }
    [out, dq, dk, dv]
}

fn assert_close(what: &str, fast: &[f32], plain: &[f64]) {
    let scale = plain.iter().fold(0f64, |m, x| m.max(x.abs()));
    for (i, (a, b)) in fast.iter().zip(plain).enumerate() {
        assert!(
            (*a as f64 - b).abs() <= 1e-4 * scale.max(1e-3),
            "{what}[{i}]: fast {a}, plain {b} (largest {scale})"
        );
    }
}

#[test]
fn training_attention_matches_its_plain_twin() {
    let pool = ThreadPool::new(2);
    let mut rng = Rng::new(11);
    let segs = vec![0..70, 70..115, 115..118];
    let n = 118;
    for head_dim in [64, 40] {
        for window in [None, Some(20)] {
            let sh = Shape {
                n_head: 6,
                n_head_kv: 2,
                head_dim,
                scale: 1.0 / (head_dim as f32).sqrt(),
                window,
            };
            let (qw, kw) = (6 * head_dim, 2 * head_dim);
            let (q, k, v) = (
                rand_vec(&mut rng, n * qw),
                rand_vec(&mut rng, n * kw),
                rand_vec(&mut rng, n * kw),
            );
            let dout = rand_vec(&mut rng, n * qw);
            let mut out = vec![f32::NAN; n * qw];
            let probs = attention::forward(&sh, &segs, &q, &k, &v, &mut out, &pool);
            let (mut dq, mut dk, mut dv) = (
                vec![f32::NAN; n * qw],
                vec![f32::NAN; n * kw],
                vec![f32::NAN; n * kw],
            );
            attention::backward(
                &sh,
                &segs,
                (&q, &k, &v),
                &out,
                probs,
                &dout,
                (&mut dq, &mut dk, &mut dv),
                &pool,
            );
            let [p_out, p_dq, p_dk, p_dv] = reference(&sh, &segs, (&q, &k, &v), &dout);
            let what = format!("head_dim {head_dim}, window {window:?}");
            assert_close(&format!("out ({what})"), &out, &p_out);
            assert_close(&format!("dq ({what})"), &dq, &p_dq);
            assert_close(&format!("dk ({what})"), &dk, &p_dk);
            assert_close(&format!("dv ({what})"), &dv, &p_dv);
        }
    }
}
