//! `cargo xtask plugins`: builds the collectors in `plugins/` for
//! wasm32-wasip2 and lays them out as the agent loads them:
//! `target/plugins/<name>.wasm` plus `<name>.toml` (the manifest), and the
//! misbehaving test collectors under `target/plugins/testing/`, and the
//! `deny-sockets` component `wasmtap plugin build` plugs into Python
//! collectors under `target/plugins/support/`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::util;

/// Collector crates: directories of `dir` holding a `manifest.toml`.
fn collectors(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.join("manifest.toml").is_file() && path.join("Cargo.toml").is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Builds everything and returns the output directory.
pub fn build() -> anyhow::Result<PathBuf> {
    util::ensure_wasm_target()?;
    let root = util::root();
    let src = root.join("plugins");
    util::cargo(&["build", "--release", "--workspace"], &src)?;
    let built = src.join("target/wasm32-wasip2/release");
    let out = root.join("target/plugins");
    for (crates, dest) in
        [(collectors(&src)?, out.clone()), (collectors(&src.join("testing"))?, out.join("testing"))]
    {
        std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
        for dir in crates {
            let name =
                dir.file_name().and_then(|n| n.to_str()).context("collector dir name")?.to_owned();
            let wasm = built.join(format!("{}.wasm", name.replace('-', "_")));
            copy(&wasm, &dest.join(format!("{name}.wasm")))?;
            copy(&dir.join("manifest.toml"), &dest.join(format!("{name}.toml")))?;
        }
    }
    // Build support for `wasmtap plugin build`, not a collector.
    let support = out.join("support");
    std::fs::create_dir_all(&support).with_context(|| format!("creating {}", support.display()))?;
    copy(&built.join("deny_sockets.wasm"), &support.join("deny-sockets.wasm"))?;
    eprintln!("xtask: collectors in {}", out.display());
    Ok(out)
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    // Write to a temporary name and rename, so a running agent never sees half a file.
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to)
        .with_context(|| format!("renaming {} to {}", tmp.display(), to.display()))?;
    Ok(())
}
