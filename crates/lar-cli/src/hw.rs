//! `lar hw`: what this machine has (CPU, cores, SIMD, memory, GPUs, free disk under the store), as text or JSON.

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

pub fn main(args: Args) -> Result<()> {
    let h = lar_plan::hw::detect(&lar_store::default_home());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&h)?);
        return Ok(());
    }
    println!("  cpu           {}", h.cpu);
    println!(
        "  cores         {} physical, {} logical",
        h.physical_cores, h.logical_cores
    );
    println!("  simd          {}", h.simd.join(" "));
    println!("  kernels       {:?}", lar_models::quant::simd_level());
    println!(
        "  memory        {} total, {} available",
        gib(h.total_ram_bytes),
        gib(h.available_ram_bytes)
    );
    if h.gpus.is_empty() {
        println!("  gpus          none found");
    }
    for g in &h.gpus {
        let mem = match (g.total_bytes, g.free_bytes) {
            (Some(t), Some(f)) => format!("{} total, {} free", gib(t), gib(f)),
            (Some(t), None) => format!("{} total", gib(t)),
            _ => "memory unknown (NVIDIA's NVML library not found or not started)".into(),
        };
        println!("  gpu           {} {} ({mem})", g.vendor, g.name);
    }
    match h.disk_free_bytes {
        Some(b) => println!("  disk          {} free under {}", gib(b), h.disk_path),
        None => println!("  disk          unknown under {}", h.disk_path),
    }
    Ok(())
}
