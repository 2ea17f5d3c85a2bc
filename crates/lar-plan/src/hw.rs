//! Hardware detection from what the OS exposes, without running anything: `/proc/cpuinfo` and `/proc/meminfo` for
//! the CPU and memory, CPUID (through `is_x86_feature_detected!`) for SIMD, `statvfs` for free disk, and for GPUs
//! the NVIDIA driver's `/proc/driver/nvidia/gpus/*/information` (names) and the amdgpu sysfs files
//! (`mem_info_vram_total` / `_used`). NVIDIA memory figures need NVML, which is not read yet: they are reported
//! as unknown rather than guessed.

use std::path::Path;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Gpu {
    pub vendor: String,
    pub name: String,
    pub total_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Hardware {
    pub cpu: String,
    pub physical_cores: usize,
    pub logical_cores: usize,
    pub simd: Vec<&'static str>,
    pub total_ram_bytes: u64,
    pub available_ram_bytes: u64,
    pub gpus: Vec<Gpu>,
    /// Free space on the file system holding `disk_path`.
    pub disk_path: String,
    pub disk_free_bytes: Option<u64>,
}

/// Physical cores (the default thread count), falling back to logical ones.
pub fn physical_cores() -> usize {
    let logical = logical_cores();
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut cores = std::collections::HashSet::new();
    let (mut phys, mut core) = (None, None);
    for line in info.lines().chain([""]) {
        if let Some(v) = field(line, "physical id") {
            phys = v.parse::<u32>().ok();
        } else if let Some(v) = field(line, "core id") {
            core = v.parse::<u32>().ok();
        } else if line.is_empty() {
            if let (Some(p), Some(c)) = (phys, core) {
                cores.insert((p, c));
            }
            (phys, core) = (None, None);
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

/// Logical CPUs this process may use.
pub fn logical_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The value of `key: value` lines (cpuinfo, meminfo).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?;
    let rest = rest.trim_start_matches([' ', '\t']);
    Some(rest.strip_prefix(':')?.trim())
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| field(l, "model name").map(str::to_string))
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// `(total, available)` from `/proc/meminfo`, in bytes.
fn memory() -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/meminfo") else {
        return (0, 0);
    };
    let kb = |key: &str| {
        s.lines()
            .find_map(|l| field(l, key))
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |v| v * 1024)
    };
    (kb("MemTotal"), kb("MemAvailable"))
}

fn simd() -> Vec<&'static str> {
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! check {
            ($($f:tt),*) => {$( if is_x86_feature_detected!($f) { v.push($f); } )*};
        }
        check!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avxvnni"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            v.push("neon");
        }
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            v.push("dotprod");
        }
    }
    v
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn gpus() -> Vec<Gpu> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/driver/nvidia/gpus") {
        for e in dir.flatten() {
            let name = std::fs::read_to_string(e.path().join("information"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| field(l, "Model").map(str::to_string))
                })
                .unwrap_or_else(|| "NVIDIA GPU".into());
            out.push(Gpu {
                vendor: "nvidia".into(),
                name,
                total_bytes: None,
                free_bytes: None,
            });
        }
    }
    if let Ok(dir) = std::fs::read_dir("/sys/class/drm") {
        for e in dir.flatten() {
            let dev = e.path().join("device");
            if let Some(total) = read_u64(&dev.join("mem_info_vram_total")) {
                let used = read_u64(&dev.join("mem_info_vram_used"));
                out.push(Gpu {
                    vendor: "amd".into(),
                    name: e.file_name().to_string_lossy().into_owned(),
                    total_bytes: Some(total),
                    free_bytes: used.map(|u| total.saturating_sub(u)),
                });
            }
        }
    }
    out
}

/// Free bytes on the file system holding `path` (its nearest existing ancestor).
pub fn disk_free(path: &Path) -> Option<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct; the path is a valid C string.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) != 0 {
            return None;
        }
        Some(s.f_bavail as u64 * s.f_frsize as u64)
    }
}

/// Everything above, with the free disk measured under `disk_path`.
pub fn detect(disk_path: &Path) -> Hardware {
    let (total, available) = memory();
    Hardware {
        cpu: cpu_name(),
        physical_cores: physical_cores(),
        logical_cores: logical_cores(),
        simd: simd(),
        total_ram_bytes: total,
        available_ram_bytes: available,
        gpus: gpus(),
        disk_path: disk_path.display().to_string(),
        disk_free_bytes: disk_free(disk_path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse() {
        assert_eq!(
            field("model name\t: AMD EPYC", "model name"),
            Some("AMD EPYC")
        );
        assert_eq!(
            field("MemTotal:       24000 kB", "MemTotal"),
            Some("24000 kB")
        );
        assert_eq!(field("MemTotalX: 1", "MemTotal"), None);
    }

    #[test]
    fn detects_this_machine() {
        let h = detect(Path::new("/tmp/lar-hw-test/not/yet/there"));
        assert!(
            h.logical_cores >= 1 && h.physical_cores >= 1 && h.physical_cores <= h.logical_cores
        );
        assert!(h.total_ram_bytes > 0 && h.available_ram_bytes <= h.total_ram_bytes);
        assert!(h.disk_free_bytes.is_some_and(|b| b > 0));
        #[cfg(target_arch = "x86_64")]
        assert!(h.simd.contains(&"sse4.2"));
    }
}
