//! The agent's side of collector distribution, fed what a proxy may send:
//! pieces of blobs (`fleet-put`: any digest text, size, offset and bytes)
//! and desired sets (`fleet-apply`: any JSON, or well-formed sets naming
//! the blobs sent), applied to a real managed collectors directory.
//!
//! Always: no panic; nothing outside the directory is written; every
//! installed collector has a valid name and its component's digest is
//! the one it was wanted with; a blob is complete only if its digest is
//! its name.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wasmtap_host::fleet::{Bounds, Managed};
use wasmtap_protocol::fleet::{self, Desired, Wanted};

const MAX: u64 = 4096;

#[derive(Debug, Arbitrary)]
enum Op {
    /// A piece of one of the blobs below (by index), at an offset.
    Put { blob: u8, offset: u16, len: u16, size_delta: i8 },
    /// A piece under any digest text.
    PutRaw { sha: String, size: u16, offset: u16, data: Vec<u8> },
    /// A desired set of the blobs below (by index), under these names.
    Apply { wanted: Vec<(String, u8, Option<String>)> },
    /// Any bytes as a desired set.
    ApplyRaw { json: Vec<u8> },
}

#[derive(Debug, Arbitrary)]
struct Input {
    blobs: Vec<Vec<u8>>,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let root = dir.path().join("collectors");
    let Ok(mut m) = Managed::open(&root, MAX) else { return };
    let blobs: Vec<Vec<u8>> = input.blobs.into_iter().take(4).collect();
    let bounds = Bounds::default();
    let mut ever_wanted = std::collections::HashSet::new();
    for op in input.ops.into_iter().take(32) {
        match op {
            Op::Put { blob, offset, len, size_delta } => {
                let Some(b) = blobs.get(usize::from(blob) % blobs.len().max(1)) else { continue };
                let sha = fleet::sha256_hex(b);
                let size = (b.len() as i64 + i64::from(size_delta)).max(0) as u64;
                let start = usize::from(offset).min(b.len());
                let end = (start + usize::from(len)).min(b.len());
                let _ = m.put(&sha, size, start as u64, &b[start..end]);
            }
            Op::PutRaw { sha, size, offset, data } => {
                let _ = m.put(&sha, u64::from(size), u64::from(offset), &data);
            }
            Op::Apply { wanted } => {
                let collectors: Vec<Wanted> = wanted
                    .into_iter()
                    .take(4)
                    .filter_map(|(name, blob, manifest)| {
                        let b = blobs.get(usize::from(blob) % blobs.len().max(1))?;
                        Some(Wanted {
                            name,
                            version: "1".into(),
                            sha256: fleet::sha256_hex(b),
                            size: b.len() as u64,
                            manifest,
                            signature: None,
                        })
                    })
                    .collect();
                let desired = Desired { collectors };
                for w in &desired.collectors {
                    ever_wanted.insert((w.name.clone(), w.sha256.clone()));
                }
                let _ = m.apply(&desired, &bounds, &[]);
            }
            Op::ApplyRaw { json } => {
                if let Ok(desired) = serde_json::from_slice::<Desired>(&json) {
                    for w in &desired.collectors {
                        ever_wanted.insert((w.name.clone(), w.sha256.clone()));
                    }
                    let _ = m.apply(&desired, &bounds, &[]);
                }
            }
        }
        for (name, sha) in m.installed() {
            assert!(fleet::is_collector_name(&name), "installed under an invalid name: {name:?}");
            assert!(ever_wanted.contains(&(name.clone(), sha.clone())), "{name} installed with a digest never wanted");
            let bytes = std::fs::read(root.join(format!("{name}.wasm"))).expect("installed file");
            assert_eq!(fleet::sha256_hex(&bytes), sha);
        }
        for b in m.blobs() {
            if let Ok(bytes) = std::fs::read(root.join(".blobs").join(&b.sha256)) {
                assert_eq!(fleet::sha256_hex(&bytes), b.sha256, "a complete blob is its digest");
            }
        }
    }
    // Nothing written beside the directory.
    let beside: Vec<_> = std::fs::read_dir(dir.path()).expect("list").flatten().collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
});
