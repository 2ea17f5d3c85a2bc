//! Tests of the LoRA adapter forms: each written form reads back as the same adapter, Llama's Q/K rows move
//! between the forms' orders, and every kind of wrong adapter is refused with a message naming what is wrong.

use super::*;
use crate::hparams::Activation;

fn hp(arch: &str, pairs: bool) -> Hparams {
    Hparams {
        arch: arch.into(),
        n_layers: 2,
        n_embd: 8,
        n_head: 2,
        n_head_kv: 1,
        head_dim: 4,
        n_ff: 12,
        n_vocab: 20,
        ctx_train: 64,
        rms_eps: 1e-5,
        rope_neox: !pairs,
        rope_dim: 4,
        rope_base: 10000.0,
        rope_base_swa: 10000.0,
        sliding_window: None,
        swa_pattern: 0,
        attn_scale: 0.5,
        embed_scale: 1.0,
        activation: Activation::Silu,
        fused_qkv: false,
        fused_gate_up: false,
    }
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// An adapter of rank 2 on every projection of both layers and the output.
fn adapter(hp: &Hparams) -> LoraAdapter {
    let mut tensors = BTreeMap::new();
    let mut names: Vec<String> = (0..hp.n_layers)
        .flat_map(|l| {
            TARGETS
                .iter()
                .map(move |(_, g)| format!("blk.{l}.{g}.weight"))
        })
        .collect();
    names.push("output.weight".into());
    for (i, name) in names.into_iter().enumerate() {
        let (n_out, n_in) = target_shape(hp, &name).unwrap();
        let rank = 2;
        tensors.insert(
            name,
            LoraPair {
                rank,
                n_in,
                n_out,
                a: values(rank * n_in, i as u32),
                b: values(n_out * rank, 100 + i as u32),
            },
        );
    }
    LoraAdapter {
        arch: hp.arch.clone(),
        alpha: Some(4.0),
        tensors,
        base_model: Some("tiny".into()),
    }
}

#[test]
fn both_forms_read_back_as_the_same_adapter() {
    for (arch, pairs) in [("llama", true), ("llama", false), ("qwen2", false)] {
        let hp = hp(arch, pairs);
        let a = adapter(&hp);
        let dir = tempfile::tempdir().unwrap();
        a.write_dir(dir.path(), &hp).unwrap();
        let peft = LoraAdapter::read_peft(dir.path(), &hp).unwrap();
        assert_eq!(peft, a, "{arch} pairs={pairs}: PEFT form");
        let gguf = LoraAdapter::read_gguf(&dir.path().join(GGUF_FILE), &hp).unwrap();
        assert_eq!(gguf.tensors, a.tensors, "{arch} pairs={pairs}: GGUF form");
        assert_eq!(gguf.alpha, a.alpha);
        // `open` takes the directory, either PEFT file, or the GGUF file.
        for p in [
            dir.path().to_path_buf(),
            dir.path().join(PEFT_CONFIG),
            dir.path().join(PEFT_WEIGHTS),
            dir.path().join(GGUF_FILE),
        ] {
            assert_eq!(
                LoraAdapter::open(&p, &hp).unwrap().tensors,
                a.tensors,
                "{p:?}"
            );
        }
    }
}

#[test]
fn llama_q_and_k_rows_are_in_each_forms_own_order() {
    let hp = hp("llama", true);
    let a = adapter(&hp);
    let (_, weights) = a.peft_bytes(&hp).unwrap();
    let entries = parse_header(&weights, "peft").unwrap();
    let read = |name: &str| {
        let e = entries.iter().find(|e| e.name == name).unwrap();
        let mut v = vec![0f32; e.shape.iter().product()];
        floats_to_f32(crate::GgmlType::F32, &weights[e.start..e.end], &mut v);
        v
    };
    let q_b = read("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
    let v_b = read("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight");
    let ours = &a.tensors["blk.0.attn_q.weight"];
    assert_ne!(q_b, ours.b, "Q's B rows are unpermuted for PEFT");
    let mut back = q_b.clone();
    permute_rows(&mut back, ours.rank, hp.n_head).unwrap();
    assert_eq!(back, ours.b);
    assert_eq!(
        v_b, a.tensors["blk.0.attn_v.weight"].b,
        "V's rows never move"
    );
    // A's columns are the input's: never permuted.
    let q_a = read("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    assert_eq!(q_a, ours.a);
}

#[test]
fn peft_configs_that_change_the_math_are_refused() {
    let hp = hp("qwen2", false);
    let dir = tempfile::tempdir().unwrap();
    adapter(&hp).write_dir(dir.path(), &hp).unwrap();
    let cfg_path = dir.path().join(PEFT_CONFIG);
    let cfg: Json = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    for (key, value, says) in [
        ("use_dora", Json::Bool(true), "DoRA"),
        ("fan_in_fan_out", Json::Bool(true), "fan_in_fan_out"),
        (
            "rank_pattern",
            serde_json::json!({"q_proj": 8}),
            "per-module ranks",
        ),
        (
            "modules_to_save",
            serde_json::json!(["lm_head"]),
            "extra modules",
        ),
        ("bias", Json::String("all".into()), "biases"),
        ("use_qalora", Json::Bool(true), "QALoRA"),
        (
            "alora_invocation_tokens",
            serde_json::json!([1, 2]),
            "activated LoRA",
        ),
        (
            "trainable_token_indices",
            serde_json::json!([5]),
            "token embeddings",
        ),
        (
            "target_parameters",
            serde_json::json!(["mlp.experts.down_proj"]),
            "bare parameters",
        ),
        ("kasa_config", serde_json::json!({}), "KaSA"),
        (
            "use_bdlora",
            serde_json::json!({"nblocks": 2}),
            "block-diagonal",
        ),
        ("peft_type", Json::String("IA3".into()), "LORA"),
        ("r", Json::from(0), "rank"),
        ("lora_alpha", Json::String("x".into()), "lora_alpha"),
    ] {
        let mut c = cfg.clone();
        c[key] = value;
        std::fs::write(&cfg_path, c.to_string()).unwrap();
        let e = LoraAdapter::read_peft(dir.path(), &hp)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{key}: {e}");
    }
    std::fs::write(&cfg_path, "{not json").unwrap();
    let e = LoraAdapter::read_peft(dir.path(), &hp)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not valid JSON"), "{e}");
    // rsLoRA's alpha / sqrt(r), folded into alpha / r.
    let mut c = cfg.clone();
    c["use_rslora"] = Json::Bool(true);
    std::fs::write(&cfg_path, c.to_string()).unwrap();
    let a = LoraAdapter::read_peft(dir.path(), &hp).unwrap();
    let p = &a.tensors["blk.0.attn_q.weight"];
    assert!((p.scale(a.alpha) - 4.0 / 2f32.sqrt()).abs() < 1e-6);
}

#[test]
fn adapters_that_do_not_fit_the_base_are_refused() {
    let small = hp("qwen2", false);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.gguf");
    std::fs::write(&file, adapter(&small).gguf_bytes(&small).unwrap()).unwrap();
    let mut wider = small.clone();
    wider.n_embd = 16;
    let e = LoraAdapter::read_gguf(&file, &wider)
        .unwrap_err()
        .to_string();
    assert!(e.contains("another model"), "{e}");
    let e = LoraAdapter::read_gguf(&file, &hp("llama", true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("adapts a qwen2 model"), "{e}");
    let mut fewer = small.clone();
    fewer.n_layers = 1;
    let e = LoraAdapter::read_gguf(&file, &fewer)
        .unwrap_err()
        .to_string();
    assert!(e.contains("beyond the base's 1 layers"), "{e}");
    let mut fused = small.clone();
    fused.fused_qkv = true;
    let e = LoraAdapter::read_gguf(&file, &fused)
        .unwrap_err()
        .to_string();
    assert!(e.contains("fused"), "{e}");

    // A model file is not an adapter; an adapter with half a pair, or an embedding pair, is refused.
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("qwen2".into()))
        .add_f32("token_embd.weight", &[2, 2], &[0.0; 4]);
    std::fs::write(&file, w.to_bytes()).unwrap();
    let e = LoraAdapter::read_gguf(&file, &small)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an adapter"), "{e}");
    let lora = |tensors: &[(&str, [usize; 2])]| {
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("qwen2".into()))
            .add("general.type", Value::String("adapter".into()))
            .add("adapter.type", Value::String("lora".into()));
        for (n, dims) in tensors {
            w.add_f32(n, dims, &vec![0.0; dims[0] * dims[1]]);
        }
        std::fs::write(&file, w.to_bytes()).unwrap();
        LoraAdapter::read_gguf(&file, &small)
            .unwrap_err()
            .to_string()
    };
    let e = lora(&[("blk.0.attn_q.weight.lora_a", [8, 2])]);
    assert!(e.contains("lacks its lora_a or its lora_b"), "{e}");
    let e = lora(&[
        ("token_embd.weight.lora_a", [20, 2]),
        ("token_embd.weight.lora_b", [2, 8]),
    ]);
    assert!(e.contains("not a matrix Lar adapts"), "{e}");
    let e = lora(&[
        ("blk.0.attn_q.weight.lora_a", [8, 2]),
        ("blk.0.attn_q.weight.lora_b", [3, 8]),
    ]);
    assert!(e.contains("rank"), "{e}");
    let e = lora(&[]);
    assert!(e.contains("adapts no tensor"), "{e}");
    let e = lora(&[("blk.0.attn_q.weight", [8, 8])]);
    assert!(e.contains("neither a lora_a nor a lora_b"), "{e}");
}

#[test]
fn a_failed_write_leaves_no_partial_file() {
    let hp = hp("qwen2", false);
    let dir = tempfile::tempdir().unwrap();
    // The directory exists as a file: nothing can be written, and nothing is left behind.
    let blocked = dir.path().join("out");
    std::fs::write(&blocked, b"x").unwrap();
    assert!(adapter(&hp).write_dir(&blocked, &hp).is_err());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["out"]);
}

/// PEFT saves an adapter in its model's dtype (BF16 or F16 for most): those tensors are read too.
#[test]
fn peft_adapters_in_bf16_and_f16_are_read() {
    let hp = hp("llama", true);
    let a = adapter(&hp);
    let (config, weights) = a.peft_bytes(&hp).unwrap();
    let entries = parse_header(&weights, "peft").unwrap();
    // The same tensors again: A in BF16, B in F16.
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for e in &entries {
        let mut v = vec![0f32; e.shape.iter().product()];
        floats_to_f32(crate::GgmlType::F32, &weights[e.start..e.end], &mut v);
        let bf16 = e.name.contains("lora_A");
        let start = data.len();
        for x in v {
            let bits = if bf16 {
                half::bf16::from_f32(x).to_bits()
            } else {
                half::f16::from_f32(x).to_bits()
            };
            data.extend(bits.to_le_bytes());
        }
        header.insert(
            e.name.clone(),
            serde_json::json!({"dtype": if bf16 { "BF16" } else { "F16" }, "shape": e.shape,
                               "data_offsets": [start, data.len()]}),
        );
    }
    let head = Json::Object(header).to_string().into_bytes();
    let mut file = (head.len() as u64).to_le_bytes().to_vec();
    file.extend(head);
    file.extend(data);
    let back = LoraAdapter::from_peft(&config, &file, &hp, Path::new("x")).unwrap();
    for (name, p) in &a.tensors {
        let q = &back.tensors[name];
        let close =
            |x: &[f32], y: &[f32], tol: f32| x.iter().zip(y).all(|(u, v)| (u - v).abs() <= tol);
        assert!(close(&p.a, &q.a, 4e-3) && close(&p.b, &q.b, 5e-4), "{name}");
        assert_ne!(p.a, q.a, "{name}: A went through BF16");
    }
}
