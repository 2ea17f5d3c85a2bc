//! Writes a random-weight llama model (F32) whose every width is a multiple of 256, for benchmarking the types whose
//! blocks of 256 real small models' widths do not divide (Qwen2.5-0.5B is 896 wide, SmolLM2 576): llama-quantize
//! then gives every matrix the type asked for (bench/ternary.sh). With a type of `lar_testdata::codebook::TYPES`
//! (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, MXFP4, NVFP4, Q1_0, Q2_0) every matrix is written as
//! random blocks of it instead, no llama-quantize needed (bench/codebook.sh).
//! `cargo run --release -p lar-models --example bench-model -- OUT.gguf [LAYERS EMBD FF [TYPE]]` (16 1024 2816 F32
//! by default: about 180M weights, 720 MB).

use lar_testdata::Shape;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args
        .first()
        .ok_or("usage: bench-model OUT.gguf [LAYERS EMBD FF [TYPE]]")?;
    let num = |i: usize, default: usize| -> Result<usize, String> {
        args.get(i).map_or(Ok(default), |v| {
            v.parse().map_err(|_| format!("not a whole number: {v}"))
        })
    };
    let (layers, embd, ff) = (num(1, 16)?, num(2, 1024)?, num(3, 2816)?);
    if embd % 256 != 0 || ff % 256 != 0 || embd % 64 != 0 {
        return Err(format!(
            "EMBD and FF must be multiples of 256 (got {embd}, {ff})"
        ));
    }
    let shape = Shape {
        layers,
        embd,
        heads: embd / 64,
        kv_heads: (embd / 64 / 4).max(1),
        head_dim: 64,
        ff,
        ctx: 4096,
    };
    let bytes = match args.get(4) {
        None => lar_testdata::random_model("llama", &shape),
        Some(name) => {
            let ty = lar_testdata::codebook::TYPES
                .into_iter()
                .find(|t| t.name() == name)
                .ok_or(format!("{name}: not a codebook type"))?;
            lar_testdata::codebook_model("llama", &shape, ty)
        }
    };
    std::fs::write(out, bytes).map_err(|e| format!("{out}: {e}"))?;
    println!("{out}");
    Ok(())
}
