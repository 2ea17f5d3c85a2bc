//! The machine a run ran on, as runs record it: CPU, SIMD, cores and the threads used, memory, GPUs, the device.

use serde_json::{Value, json};

/// A description of this machine for a run that used `threads` threads on `device` (`cpu`, `cuda:0`, ...).
pub fn describe(threads: usize, device: &str) -> Value {
    let hw = lar_plan::hw::detect(&std::env::temp_dir());
    json!({
        "cpu": hw.cpu,
        "simd": hw.simd,
        "physical_cores": hw.physical_cores,
        "logical_cores": hw.logical_cores,
        "threads": threads,
        "ram_bytes": hw.total_ram_bytes,
        "gpus": hw.gpus.iter().map(|g| json!({"vendor": g.vendor, "name": g.name, "bytes": g.total_bytes})).collect::<Vec<_>>(),
        "device": device,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}
