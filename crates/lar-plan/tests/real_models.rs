//! The planner's arithmetic on the two real test models, against figures computed by hand from their shapes and
//! tensor tables (sizes from gguf-py: `sum(t.n_bytes)` and the file size).

use lar_formats::Gguf;
use lar_plan::{KvType, ModelInfo, Request, SwaCache, plan};
use lar_testdata as testdata;

fn info(file: &str) -> ModelInfo {
    let g = Gguf::open(&testdata::model(file)).expect("test model");
    ModelInfo::from_gguf(&g).expect("plannable")
}

const MIB8: u64 = 8 << 20; // runtime

#[test]
fn smollm2_by_hand() {
    let m = info("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(
        (
            m.n_layers,
            m.n_embd,
            m.n_head,
            m.n_head_kv,
            m.head_dim,
            m.n_ff
        ),
        (30, 576, 9, 3, 64, 1536)
    );
    assert_eq!((m.n_vocab, m.ctx_train, m.swa_layers), (49152, 8192, 0));
    assert!(m.tied_output);
    assert_eq!(m.main_type(), "Q4_1");
    let mut r = Request::new(u64::MAX);
    r.ctx = Some(2048);
    let p = plan(&m, &r);
    // Tied embeddings: every tensor byte is read each token.
    assert_eq!(p.weights_bytes, 96_576_768);
    // 2 x 3 KV heads x 64 dims x 2 bytes = 768 B per token per layer, 30 layers, 2048 tokens.
    assert_eq!(p.kv_bytes, 768 * 30 * 2048);
    // 512 tokens x (4 x (3*576 + 2*576 + 2*192 + 2*1536) + 2 x (576 + 1536)) + 3 x 4 x 49152 logits.
    assert_eq!(p.compute_bytes, 512 * (4 * 6336 + 2 * 2112) + 12 * 49152);
    // Runtime + header (file 98 362 432 - tensors 96 576 768) + 49152 tokens x 300 + 48900 merges x 160.
    assert_eq!(
        p.overhead_bytes,
        MIB8 + 1_785_664 + 49152 * 300 + 48900 * 160
    );
    assert_eq!(p.max_ctx, 8192);
    // q8_0 KV: 384 values x 34 / 32 = 408 B per token per layer.
    r.kv_type = KvType::Q8_0;
    r.parallel = 2;
    assert_eq!(plan(&m, &r).kv_bytes, 408 * 30 * 2048 * 2);
}

#[test]
fn gemma3_by_hand() {
    let m = info("gemma-3-270m-q4_k_m.gguf");
    assert_eq!(
        (
            m.n_layers,
            m.n_embd,
            m.n_head,
            m.n_head_kv,
            m.head_dim,
            m.n_ff
        ),
        (18, 640, 4, 1, 256, 2048)
    );
    assert_eq!((m.n_vocab, m.ctx_train), (262144, 32768));
    // Five of every six layers slide over 512 tokens: 15 of 18.
    assert_eq!((m.sliding_window, m.swa_layers), (Some(512), 15));
    let mut r = Request::new(u64::MAX);
    r.ctx = Some(2048);
    let p = plan(&m, &r);
    assert_eq!(p.weights_bytes, 246_587_904);
    // 2 x 1 KV head x 256 dims x 2 bytes = 1024 B per token per layer; Lar caches the whole context in every layer.
    assert_eq!(p.kv_bytes, 1024 * 18 * 2048);
    // A windowed cache: 3 full layers x 2048 + 15 sliding x 512.
    r.swa = SwaCache::Window;
    assert_eq!(plan(&m, &r).kv_bytes, 1024 * (3 * 2048 + 15 * 512));
    r.swa = SwaCache::Full;
    // 512 x (4 x (3*640 + 2*1024 + 2*256 + 2*2048) + 2 x (640 + 2048)) + 12 x 262144.
    assert_eq!(p.compute_bytes, 512 * (4 * 8576 + 2 * 2688) + 12 * 262_144);
    assert_eq!(
        p.overhead_bytes,
        MIB8 + (253_113_024 - 246_587_904) + 262_144 * 300
    );
    // A budget 1 MiB short of the 2048-token plan: the largest context is just under 2048 and the load refused.
    r.ram_budget = p.total_bytes - (1 << 20);
    let q = plan(&m, &r);
    assert!(!q.fits);
    // Each token takes 1024 B x 18 layers = 18 432 B of KV: 1 MiB is 56.9 tokens, so 57 fewer fit.
    assert_eq!(q.max_ctx, 2048 - 57);
}

#[test]
fn model_directories_count_their_tokenizer() {
    // Counted from tokenizer.json (checked with Python's json): SmolLM2's 49 152 tokens and 48 900 merges, as in its
    // GGUF; Gemma's tokenizer.json, written by transformers, is a BPE model with 514 906 merges.
    let dir = |d: &str| {
        let g = lar_formats::open_model(&testdata::models_dir().join(d)).expect("HF directory");
        ModelInfo::from_gguf(&g).expect("plannable")
    };
    let smol = dir(testdata::SMOLLM2_HF);
    assert_eq!((smol.vocab_tokens, smol.vocab_merges), (49152, 48900));
    assert_eq!(smol.main_type(), "BF16");
    let gemma = dir(testdata::GEMMA3_HF);
    assert_eq!((gemma.vocab_tokens, gemma.vocab_merges), (262_144, 514_906));
}

/// The gate every load passes: a context that fits is let through; the same load with four sequences' KV, or with a
/// KV budget past the memory, is refused with the plan's figures; a KV budget within it is let through.
#[test]
fn the_gate_plans_parallel_sequences_and_kv_budgets() {
    use lar_plan::budget::Budget;
    use lar_plan::gate::{Load, check_with};
    let m = info("SmolLM2-135M-Instruct.Q4_1.gguf");
    let one = check_with(
        &m,
        &Load {
            ctx: Some(2048),
            ..Load::default()
        },
        &Budget {
            bytes: u64::MAX,
            source: "test".into(),
        },
    )
    .expect("fits");
    assert_eq!(one.ctx, 2048);
    // 768 B x 30 layers per token: one 2048-token context is 45 MiB of KV; a budget that holds one and a half.
    let kv_one = 768 * 30 * 2048;
    let budget = Budget {
        bytes: one.total_bytes + kv_one / 2,
        source: "LAR_MEMORY_LIMIT=test".into(),
    };
    let load = |parallel, kv_budget| Load {
        ctx: Some(2048),
        parallel,
        kv_budget,
    };
    assert_eq!(check_with(&m, &load(1, None), &budget).unwrap().ctx, 2048);
    match check_with(&m, &load(4, None), &budget) {
        Err(lar_plan::Error::NotEnoughMemory(r)) => {
            assert_eq!((r.parallel, r.kv_bytes), (4, 4 * kv_one));
            let msg = lar_plan::Error::NotEnoughMemory(r).to_string();
            assert!(
                msg.contains("x 4 sequences") && msg.contains("LAR_MEMORY_LIMIT=test"),
                "{msg}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(check_with(&m, &load(1, Some(kv_one + kv_one / 4)), &budget).is_ok());
    assert!(matches!(
        check_with(&m, &load(1, Some(2 * kv_one)), &budget),
        Err(lar_plan::Error::NotEnoughMemory(_))
    ));
    assert!(matches!(
        check_with(&m, &load(0, None), &budget),
        Err(lar_plan::Error::Invalid(_))
    ));
    // No context asked with a KV budget: the largest the budget holds (768 x 30 B per token: 1000 tokens here).
    let free = Load {
        ctx: None,
        parallel: 1,
        kv_budget: Some(768 * 30 * 1000),
    };
    assert_eq!(check_with(&m, &free, &budget).unwrap().ctx, 1000);
}
