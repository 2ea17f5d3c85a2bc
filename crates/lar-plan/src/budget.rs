//! What the planner may spend: the memory this process can use (`MemAvailable`, lowered by a cgroup limit, or
//! `LAR_MEMORY_LIMIT` when set) and the memory bandwidth that bounds decode speed (measured in a fraction of a
//! second by reading a buffer larger than the caches on every core).

use std::path::Path;
use std::time::Instant;

use crate::size::parse_bytes;

/// Where a budget came from, for `--explain`.
#[derive(Clone, Debug)]
pub struct Budget {
    pub bytes: u64,
    pub source: String,
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Room left under this process's cgroup v2 memory limit (`memory.max - memory.current`), if it has one.
fn cgroup_room() -> Option<u64> {
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    let max = read_u64(&dir.join("memory.max"))?; // "max" (no limit) does not parse
    let cur = read_u64(&dir.join("memory.current")).unwrap_or(0);
    Some(max.saturating_sub(cur))
}

/// The RAM a model may use: `LAR_MEMORY_LIMIT` (a size such as `6GiB`) if set, else the available memory, else
/// the room under a cgroup limit if that is smaller.
pub fn ram_budget() -> crate::Result<Budget> {
    if let Ok(v) = std::env::var("LAR_MEMORY_LIMIT")
        && !v.trim().is_empty()
    {
        let bytes =
            parse_bytes(&v).map_err(|e| crate::Error::Budget(format!("LAR_MEMORY_LIMIT: {e}")))?;
        return Ok(Budget {
            bytes,
            source: format!("LAR_MEMORY_LIMIT={v}"),
        });
    }
    let avail = mem_available();
    let room = cgroup_room();
    Ok(match (avail, room) {
        (Some(a), Some(c)) if c < a => Budget {
            bytes: c,
            source: "room under this process's cgroup memory limit".into(),
        },
        (Some(a), _) => Budget {
            bytes: a,
            source: "available RAM (MemAvailable)".into(),
        },
        (None, Some(c)) => Budget {
            bytes: c,
            source: "room under this process's cgroup memory limit".into(),
        },
        (None, None) => Budget {
            bytes: u64::MAX,
            source: "unknown (no /proc/meminfo): not limited".into(),
        },
    })
}

/// Read bandwidth in bytes/s: `threads` threads sum a 256 MiB buffer, best of three passes.
pub fn memory_bandwidth(threads: usize) -> f64 {
    const WORDS: usize = 32 << 20; // 256 MiB of u64
    let threads = threads.max(1);
    let buf: Vec<u64> = (0..WORDS as u64).collect();
    let chunk = WORDS.div_ceil(threads);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(chunk)
                .map(|c| s.spawn(move || c.iter().fold(0u64, |a, &x| a.wrapping_add(x))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        std::hint::black_box(total);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (WORDS * 8) as f64 / best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_memory_and_bandwidth() {
        let b = ram_budget().unwrap();
        assert!(b.bytes > 64 << 20, "{b:?}");
        let bw = memory_bandwidth(2);
        assert!(bw > 1e9 && bw < 1e13, "{bw}");
    }
}
