//! Hardware detection from what the OS exposes, without running anything: `/proc/cpuinfo` and `/proc/meminfo` for
//! the CPU and memory, CPUID (through `is_x86_feature_detected!`) for SIMD, `statvfs` for free disk, and for GPUs:
//! - NVIDIA: NVML (`libnvidia-ml.so.1`, the driver's management library, loaded at run time so that Lar neither
//!   links against nor needs it) for each GPU's name and total/free memory; without it (no driver, a container
//!   without the library) the names from the driver's `/proc/driver/nvidia/gpus/*/information`, memory unknown;
//! - AMD: the amdgpu sysfs files (`mem_info_vram_total` / `_used`);
//! - Apple silicon (macOS): one GPU sharing the machine's unified memory, reported with the total RAM
//!   (`sysctl hw.memsize`) as its total and no free figure.
//!
//! Figures that cannot be read are reported as unknown, never guessed, and a missing or failing library is not an
//! error.

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
    let mut out = nvml_gpus()
        .filter(|g| !g.is_empty())
        .unwrap_or_else(proc_nvidia_gpus);
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
    out.extend(apple_gpu());
    out
}

/// NVIDIA GPUs named by the driver's `/proc` files, memory unknown.
fn proc_nvidia_gpus() -> Vec<Gpu> {
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
    out
}

/// NVIDIA GPUs through NVML; `None` when the library is absent or does not start (no driver, no GPU).
fn nvml_gpus() -> Option<Vec<Gpu>> {
    #[cfg(target_os = "linux")]
    {
        ["libnvidia-ml.so.1", "libnvidia-ml.so"]
            .into_iter()
            .find_map(|lib| nvml::gpus(std::ffi::OsStr::new(lib)))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// The calls into NVML (nvml.h): init, count, a handle per index, its name and memory, shutdown.
#[cfg(target_os = "linux")]
mod nvml {
    use std::ffi::{CStr, OsStr, c_char, c_int, c_uint, c_void};

    use libloading::{Library, Symbol};

    use super::Gpu;

    type Device = *mut c_void;
    /// `nvmlReturn_t`: 0 is success.
    type Ret = c_int;
    /// `nvmlMemory_t`, in bytes.
    #[repr(C)]
    #[derive(Default)]
    struct Memory {
        total: u64,
        free: u64,
        used: u64,
    }
    /// `NVML_DEVICE_NAME_V2_BUFFER_SIZE`.
    const NAME_LEN: usize = 96;
    /// More GPUs than any machine has: a guard against a nonsense count.
    const MAX_GPUS: c_uint = 64;

    /// The GPUs the library at `path` reports; `None` if it cannot be loaded, lacks a function, or fails to start.
    pub(super) fn gpus(path: &OsStr) -> Option<Vec<Gpu>> {
        // SAFETY: loading the library runs its initialisers; NVML's only set up the library itself.
        let lib = unsafe { Library::new(path) }.ok()?;
        // SAFETY: each symbol is given the signature nvml.h declares for it.
        unsafe {
            let init: Symbol<unsafe extern "C" fn() -> Ret> = lib.get("nvmlInit_v2").ok()?;
            let shutdown: Symbol<unsafe extern "C" fn() -> Ret> = lib.get("nvmlShutdown").ok()?;
            let count: Symbol<unsafe extern "C" fn(*mut c_uint) -> Ret> =
                lib.get("nvmlDeviceGetCount_v2").ok()?;
            let handle: Symbol<unsafe extern "C" fn(c_uint, *mut Device) -> Ret> =
                lib.get("nvmlDeviceGetHandleByIndex_v2").ok()?;
            let name: Symbol<unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Ret> =
                lib.get("nvmlDeviceGetName").ok()?;
            let memory: Symbol<unsafe extern "C" fn(Device, *mut Memory) -> Ret> =
                lib.get("nvmlDeviceGetMemoryInfo").ok()?;
            if init() != 0 {
                return None;
            }
            let mut n: c_uint = 0;
            let listed = count(&mut n) == 0;
            let mut out = Vec::new();
            for i in 0..if listed { n.min(MAX_GPUS) } else { 0 } {
                let mut dev: Device = std::ptr::null_mut();
                if handle(i, &mut dev) != 0 {
                    continue;
                }
                let mut buf = [0 as c_char; NAME_LEN];
                let gpu_name = if name(dev, buf.as_mut_ptr(), NAME_LEN as c_uint) == 0 {
                    buf[NAME_LEN - 1] = 0;
                    CStr::from_ptr(buf.as_ptr())
                        .to_string_lossy()
                        .trim()
                        .to_string()
                } else {
                    String::new()
                };
                let mut m = Memory::default();
                let ok = memory(dev, &mut m) == 0;
                out.push(Gpu {
                    vendor: "nvidia".into(),
                    name: if gpu_name.is_empty() {
                        "NVIDIA GPU".into()
                    } else {
                        gpu_name
                    },
                    total_bytes: ok.then_some(m.total),
                    free_bytes: ok.then_some(m.free.min(m.total)),
                });
            }
            shutdown();
            listed.then_some(out)
        }
    }
}

/// Apple silicon: the GPU shares the machine's memory, so its total is the RAM's.
fn apple_gpu() -> Option<Gpu> {
    #[cfg(all(target_os = "macos", target_arch = "aarch64"))]
    {
        Some(Gpu {
            vendor: "apple".into(),
            name: sysctl_string("machdep.cpu.brand_string").unwrap_or_else(|| "Apple GPU".into()),
            total_bytes: sysctl_u64("hw.memsize"),
            free_bytes: None,
        })
    }
    #[cfg(not(all(target_os = "macos", target_arch = "aarch64")))]
    None
}

#[cfg(all(target_os = "macos", target_arch = "aarch64"))]
fn sysctl_u64(name: &str) -> Option<u64> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>();
    // SAFETY: sysctlbyname writes at most `len` bytes into `v`; the name is a valid C string.
    let r = unsafe {
        libc::sysctlbyname(
            c.as_ptr(),
            (&mut v as *mut u64).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (r == 0 && len == std::mem::size_of::<u64>()).then_some(v)
}

#[cfg(all(target_os = "macos", target_arch = "aarch64"))]
fn sysctl_string(name: &str) -> Option<String> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 256];
    let mut len = buf.len();
    // SAFETY: sysctlbyname writes at most `len` bytes into `buf`; the name is a valid C string.
    let r = unsafe {
        libc::sysctlbyname(
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if r != 0 {
        return None;
    }
    let s = std::ffi::CStr::from_bytes_until_nul(&buf[..len.min(buf.len())]).ok()?;
    Some(s.to_string_lossy().trim().to_string()).filter(|s| !s.is_empty())
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

/// Whether Lar's engine keeps a repacked copy of a weight of type `ty` on this CPU (`lar_kernels::tensor::Packed`:
/// F16, BF16 and F32 with AVX2 + FMA + F16C; Q4_0, Q8_0, IQ4_NL, IQ4_XS, MXFP4, Q4_K, Q5_0 and Q6_K with AVX-512
/// VNNI as well), honouring `LAR_PACK=0` and the `LAR_SIMD` caps as the engine does, by type only (the engine also
/// needs whole panels of rows, which every real model's head has). Training's backward reads a repacked matrix's rows
/// from the file as well, one matrix at a time, so the planner counts the largest one (the output head) twice.
pub fn repacks(ty: &str) -> bool {
    if std::env::var("LAR_PACK").as_deref() == Ok("0") {
        return false;
    }
    let cap = std::env::var("LAR_SIMD").unwrap_or_default();
    let has = |f: &str| simd().contains(&f);
    if cap == "scalar" || !(has("avx2") && has("fma") && has("f16c")) {
        return false;
    }
    let vnni = cap != "avx2"
        && ["avx512f", "avx512bw", "avx512vl", "avx512vnni"]
            .iter()
            .all(|f| has(f));
    match ty {
        "F16" | "BF16" | "F32" => true,
        "Q4_0" | "Q8_0" | "IQ4_NL" | "IQ4_XS" | "MXFP4" | "Q4_K" | "Q5_0" | "Q6_K" => vnni,
        _ => false,
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
        // With or without an NVIDIA driver, GPUs are listed without error; NVML's figures are consistent.
        for g in &h.gpus {
            if let (Some(t), Some(f)) = (g.total_bytes, g.free_bytes) {
                assert!(t > 0 && f <= t, "{g:?}");
            }
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn nvml_absent_is_not_an_error() {
        assert!(nvml::gpus(std::ffi::OsStr::new("libnvidia-ml-not-here.so.1")).is_none());
        if !Path::new("/proc/driver/nvidia").exists() && nvml_gpus().is_none() {
            assert!(gpus().iter().all(|g| g.vendor != "nvidia"));
        }
    }

    /// The NVML calls against a stand-in library with nvml.h's signatures (built with the system C compiler):
    /// two GPUs, one whose memory query fails; and a library whose init fails.
    #[test]
    #[cfg(target_os = "linux")]
    fn nvml_calls_read_names_and_memory() {
        const FAKE: &str = r#"
            typedef struct { unsigned long long total, free, used; } mem_t;
            static int inited = 0;
            int nvmlInit_v2(void) { if (FAIL_INIT) return 1; inited = 1; return 0; }
            int nvmlShutdown(void) { inited = 0; return 0; }
            int nvmlDeviceGetCount_v2(unsigned int *n) { if (!inited) return 1; *n = 2; return 0; }
            int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **d) {
                if (i > 1) return 2; *d = (void *)(unsigned long)(0x1000 + i); return 0; }
            int nvmlDeviceGetName(void *d, char *name, unsigned int len) {
                const char *n = d == (void *)0x1000 ? "NVIDIA H100 80GB HBM3" : "NVIDIA L4";
                unsigned int i = 0; for (; n[i] && i + 1 < len; i++) name[i] = n[i]; name[i] = 0; return 0; }
            int nvmlDeviceGetMemoryInfo(void *d, mem_t *m) {
                if (d != (void *)0x1000) return 3;
                m->total = 85520809984ULL; m->free = 84967227392ULL; m->used = m->total - m->free; return 0; }
        "#;
        let dir = std::env::temp_dir().join(format!("lar-fake-nvml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let build = |fail_init: u32| {
            let src = dir.join(format!("nvml{fail_init}.c"));
            let lib = dir.join(format!("libnvml{fail_init}.so"));
            std::fs::write(&src, FAKE).expect("write");
            let ok = std::process::Command::new("cc")
                .args([
                    "-shared",
                    "-fPIC",
                    &format!("-DFAIL_INIT={fail_init}"),
                    "-o",
                ])
                .arg(&lib)
                .arg(&src)
                .status()
                .expect("a C compiler (cc) to build the stand-in NVML");
            assert!(ok.success());
            lib
        };
        let g = nvml::gpus(build(0).as_os_str()).expect("the stand-in loads");
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].vendor.as_str(), g[0].name.as_str()),
            ("nvidia", "NVIDIA H100 80GB HBM3")
        );
        assert_eq!(
            (g[0].total_bytes, g[0].free_bytes),
            (Some(85520809984), Some(84967227392))
        );
        assert_eq!(
            (g[1].name.as_str(), g[1].total_bytes, g[1].free_bytes),
            ("NVIDIA L4", None, None)
        );
        assert!(nvml::gpus(build(1).as_os_str()).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
