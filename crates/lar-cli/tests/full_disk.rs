//! A full disk: `lar import` of a model bigger than the space left under `$LAR_HOME` fails with one line that says
//! the disk is full and where, leaves no blob and no temporary file behind, and the store still works; `lar
//! quantize` onto a full disk says the same and leaves no file.
//!
//! The full disk is a 1 MiB tmpfs mounted for the test (the tests run as root); where mounting is not allowed,
//! the import runs under a 1 MiB file size limit (`ulimit -f`, with SIGXFSZ ignored so that the write fails with
//! EFBIG instead of killing the process). The test prints which of the two ran.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lar_testdata as testdata;

/// The temporary directory, unmounted (if it was mounted) and removed when dropped, also when the test fails.
struct Scratch {
    dir: PathBuf,
    mounted: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lar(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lar"))
        .env("LAR_HOME", home)
        .args(args)
        .output()
        .unwrap()
}

/// A 1 MiB tmpfs (or, where mounting is not allowed, a directory where `limited` runs under a 1 MiB file size
/// limit).
fn full(tag: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("lar-full-disk-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        println!("full disk: a 1 MiB tmpfs at {}", dir.display());
    } else {
        println!("full disk: mounting a tmpfs failed; a 1 MiB file size limit (EFBIG) instead");
    }
    Scratch { dir, mounted }
}

/// `lar ARGS` with `LAR_HOME` at `home`, under a 1 MiB file size limit unless the disk itself is full.
fn limited(s: &Scratch, home: &Path, args: &[&str]) -> Output {
    if s.mounted {
        return lar(home, args);
    }
    Command::new("sh")
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 2048 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_lar"))
        .args(args)
        .env("LAR_HOME", home)
        .output()
        .unwrap()
}

#[test]
fn a_full_disk_gives_a_clear_error_and_leaves_nothing_behind() {
    let scratch = full("import");
    let home = scratch.dir.join("store");
    let model = testdata::model(testdata::SMOLLM2);
    let model = model.to_str().unwrap();
    let o = limited(&scratch, &home, &["import", model, "--name", "big"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "no space left on the disk holding {}",
            home.display()
        )),
        "{err}"
    );
    let entries = |d: &str| std::fs::read_dir(home.join(d)).unwrap().count();
    assert_eq!(entries("blobs"), 0, "a partial blob was left");
    assert_eq!(entries("tmp"), 0, "a temporary file was left");
    assert_eq!(entries("manifests"), 0);
    // The store still works, and is empty.
    let o = lar(&home, &["list", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list, serde_json::json!([]));
}

#[test]
fn quantizing_onto_a_full_disk_says_so_and_leaves_no_file() {
    let scratch = full("quantize");
    let home = std::env::temp_dir().join(format!("lar-full-disk-home-{}", std::process::id()));
    let model = testdata::model(testdata::SMOLLM2);
    let out = scratch.dir.join("q8.gguf");
    let args = [
        "quantize",
        model.to_str().unwrap(),
        out.to_str().unwrap(),
        "--type",
        "Q8_0",
        "--allow-requantize",
        "--no-record",
    ];
    let o = limited(&scratch, &home, &args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "no space left on the disk holding {}",
            scratch.dir.display()
        )),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&scratch.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = std::fs::remove_dir_all(home);
}
