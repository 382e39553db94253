//! The tools Python and JavaScript collectors are built with, and the example
//! collectors in `plugins/examples/`.
//!
//! `install_tools` puts pinned versions under `target/authoring-tools/`:
//! componentize-py in a Python venv (`python/`, from
//! `xtask/authoring-tools/requirements.txt`) and jco with ComponentizeJS
//! (`js/`, `npm ci` of `xtask/authoring-tools/package.json` and its lock).
//! `wasmtap plugin build` and the tests look there. `build_examples` builds
//! every example with `wasmtap plugin build` into `target/plugins/examples/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::util;

/// Where the tools go.
pub fn tools_dir() -> PathBuf {
    util::root().join("target/authoring-tools")
}

/// Installs componentize-py and jco unless the pinned versions already are.
pub fn install_tools() -> anyhow::Result<()> {
    let pins = util::root().join("xtask/authoring-tools");
    let dir = tools_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    python(&pins.join("requirements.txt"), &dir.join("python"))?;
    js(&pins, &dir.join("js"))
}

/// Runs `install` unless `stamp` already holds `pins` (what it last installed).
fn unless_installed(
    stamp: &Path,
    pins: &str,
    install: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if std::fs::read_to_string(stamp).is_ok_and(|s| s == pins) {
        return Ok(());
    }
    install()?;
    std::fs::write(stamp, pins).with_context(|| format!("writing {}", stamp.display()))
}

fn python(requirements: &Path, venv: &Path) -> anyhow::Result<()> {
    let pins = std::fs::read_to_string(requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    unless_installed(&venv.join(".installed"), &pins, || {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv", "--clear"]).arg(venv);
        util::run(cmd).context(
            "creating a Python venv for componentize-py (needs python3 with venv: apt-get install python3-venv)",
        )?;
        let mut cmd = Command::new(venv.join("bin/pip"));
        cmd.args(["install", "--disable-pip-version-check", "-r"]).arg(requirements);
        util::run(cmd).context("installing componentize-py from PyPI")
    })
}

fn js(pins: &Path, dir: &Path) -> anyhow::Result<()> {
    let lock = std::fs::read_to_string(pins.join("package-lock.json"))
        .context("reading xtask/authoring-tools/package-lock.json")?;
    unless_installed(&dir.join(".installed"), &lock, || {
        std::fs::create_dir_all(dir)?;
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(pins.join(file), dir.join(file))
                .with_context(|| format!("copying {file}"))?;
        }
        let mut cmd = Command::new("npm");
        cmd.args(["ci", "--no-audit", "--no-fund"]).current_dir(dir);
        util::run(cmd)
            .context("installing jco and componentize-js from npm (needs Node.js 20+ and npm)")
    })
}

/// Builds every example in `plugins/examples/` with `wasmtap plugin build`
/// and copies each component and manifest to `target/plugins/examples/`.
pub fn build_examples() -> anyhow::Result<PathBuf> {
    install_tools()?;
    let root = util::root();
    // `wasmtap plugin` runs `wasmtap-plugin` from beside it.
    util::cargo(&["build", "-p", "wasmtap-host", "-p", "wasmtap-authoring", "--bins"], &root)?;
    let wasmtap = root.join("target/debug/wasmtap");
    let tools = tools_dir();
    let out = root.join("target/plugins/examples");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let src = root.join("plugins/examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&src)
        .with_context(|| format!("listing {}", src.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    dirs.retain(|d| d.join("manifest.toml").is_file());
    dirs.sort();
    for dir in dirs {
        let mut cmd = Command::new(&wasmtap);
        cmd.args(["plugin", "build"])
            .arg(&dir)
            .env("WASMTAP_COMPONENTIZE_PY", tools.join("python/bin/componentize-py"))
            .env("WASMTAP_JCO", tools.join("js/node_modules/.bin/jco"));
        eprintln!("xtask: running {cmd:?}");
        let output = cmd.output().with_context(|| format!("running {cmd:?}"))?;
        if !output.status.success() {
            bail!(
                "building {} failed:\n{}",
                dir.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let stdout = String::from_utf8(output.stdout).context("plugin build output")?;
        let wasm = PathBuf::from(stdout.lines().last().context("plugin build printed no path")?);
        let name = wasm.file_name().context("plugin build printed no file")?;
        std::fs::copy(&wasm, out.join(name))
            .with_context(|| format!("copying {}", wasm.display()))?;
        let manifest = wasm.with_extension("toml");
        let dest = out.join(name).with_extension("toml");
        std::fs::copy(&manifest, &dest)
            .with_context(|| format!("copying {}", manifest.display()))?;
    }
    eprintln!("xtask: example collectors in {}", out.display());
    Ok(out)
}
