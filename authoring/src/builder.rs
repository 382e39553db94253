//! `wasmtap plugin build DIR`: builds a collector project of any of the three
//! languages into `DIR/target/wasmtap/<dir name>.wasm`, with the project's
//! `manifest.toml` beside it as `<dir name>.toml` (where `plugin check` and
//! `plugin run` look), and refuses a result the agent would refuse.
//!
//! The build tools' own output goes to stderr, so the path of the component
//! is the last line on stdout.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{AuthoringError, Lang, io, plug, tools};

/// The project's language, from the files it holds.
pub fn detect(dir: &Path) -> Result<Lang, AuthoringError> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("app.py").is_file() || dir.join("pyproject.toml").is_file() {
        Ok(Lang::Python)
    } else if dir.join("package.json").is_file() {
        Ok(Lang::Js)
    } else {
        Err(AuthoringError::Project(format!(
            "{} is not a collector project: no Cargo.toml (Rust), app.py or pyproject.toml (Python) or package.json (JavaScript); `wasmtap plugin new` makes one",
            dir.display()
        )))
    }
}

/// Builds the project in `dir` and returns the path of the component.
pub fn build(dir: &Path) -> Result<PathBuf, AuthoringError> {
    let dir = std::path::absolute(dir).map_err(io(dir))?;
    let lang = detect(&dir)?;
    let name = dir
        .file_name()
        .and_then(OsStr::to_str)
        .filter(|n| super::scaffold::valid_name(n))
        .ok_or_else(|| {
            AuthoringError::Project(format!(
                "the project directory's name names the component, and {} is not a collector name ([a-z][a-z0-9_-]*)",
                dir.display()
            ))
        })?
        .to_owned();
    let out_dir = dir.join("target/wasmtap");
    std::fs::create_dir_all(&out_dir).map_err(io(&out_dir))?;
    let wasm = out_dir.join(format!("{name}.wasm"));
    match lang {
        Lang::Rust => rust(&dir, &wasm)?,
        Lang::Python => python(&dir, &wasm)?,
        Lang::Js => js(&dir, &wasm)?,
    }
    refuse_forbidden_imports(&wasm)?;
    let manifest = dir.join("manifest.toml");
    if manifest.is_file() {
        let dest = wasm.with_extension("toml");
        std::fs::copy(&manifest, &dest).map_err(io(&dest))?;
    }
    Ok(wasm)
}

/// Runs `cmd` in `dir` with its stdout on our stderr.
fn run(mut cmd: Command, dir: &Path, tool: &str, hint: &str) -> Result<(), AuthoringError> {
    cmd.current_dir(dir).stdout(std::io::stderr());
    let shown = format!("{cmd:?}");
    let status = cmd.status().map_err(|e| AuthoringError::ToolMissing {
        tool: tool.to_owned(),
        hint: format!("running {shown}: {e}; {hint}"),
    })?;
    if !status.success() {
        return Err(AuthoringError::BuildFailed { command: shown, status: status.to_string() });
    }
    Ok(())
}

fn require(dir: &Path, file: &str, lang: &str) -> Result<(), AuthoringError> {
    if dir.join(file).exists() {
        return Ok(());
    }
    Err(AuthoringError::Project(format!(
        "a {lang} collector project needs {file} in {}; `wasmtap plugin new --lang {}` makes one",
        dir.display(),
        lang.to_lowercase()
    )))
}

fn rust(dir: &Path, wasm: &Path) -> Result<(), AuthoringError> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(io(&manifest))?;
    let doc: toml::Table = toml::from_str(&text)
        .map_err(|e| AuthoringError::Project(format!("{}: {e}", manifest.display())))?;
    let package =
        doc.get("package").and_then(|p| p.get("name")).and_then(toml::Value::as_str).ok_or_else(
            || AuthoringError::Project(format!("{} has no [package] name", manifest.display())),
        )?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"]);
    run(cmd, dir, "cargo", "install Rust with rustup (https://rustup.rs)").map_err(
        |e| match e {
            AuthoringError::BuildFailed { command, status } => AuthoringError::BuildFailed {
                command: format!(
                    "{command} (if it cannot find `core` or `std`: rustup target add wasm32-wasip2)"
                ),
                status,
            },
            e => e,
        },
    )?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| dir.join(t))
        .unwrap_or_else(|| dir.join("target"));
    let built =
        target_dir.join(format!("wasm32-wasip2/release/{}.wasm", package.replace('-', "_")));
    std::fs::copy(&built, wasm).map_err(io(&built))?;
    Ok(())
}

fn python(dir: &Path, wasm: &Path) -> Result<(), AuthoringError> {
    require(dir, "app.py", "Python")?;
    require(dir, "wit", "Python")?;
    let hint = format!(
        "install it with `pip install componentize-py=={}` (or `cargo xtask test` in the wasmtap repository, which installs it under target/authoring-tools/), or set {}",
        tools::COMPONENTIZE_PY_VERSION,
        tools::COMPONENTIZE_PY_ENV
    );
    let tool = tools::componentize_py().ok_or_else(|| AuthoringError::ToolMissing {
        tool: "componentize-py".into(),
        hint: hint.clone(),
    })?;
    let raw = wasm.with_extension("componentized.wasm");
    let mut cmd = Command::new(tool);
    cmd.args(["-d", "wit", "-w", "collector", "componentize", "app", "-o"]).arg(&raw);
    run(cmd, dir, "componentize-py", &hint)?;
    let bytes = std::fs::read(&raw).map_err(io(&raw))?;
    let imports = plug::imports(&bytes)?;
    let out = if imports.iter().any(|i| plug::is_sockets(i)) {
        let stub = tools::deny_sockets().ok_or_else(|| AuthoringError::ToolMissing {
            tool: "deny-sockets.wasm".into(),
            hint: format!(
                "it replaces the sockets the Python runtime imports; run `cargo xtask plugins` in the wasmtap repository (it builds target/plugins/support/deny-sockets.wasm) or set {}",
                tools::DENY_SOCKETS_ENV
            ),
        })?;
        let stub_bytes = std::fs::read(&stub).map_err(io(&stub))?;
        plug::deny_sockets(&bytes, &stub_bytes)?
    } else {
        bytes
    };
    std::fs::write(wasm, out).map_err(io(wasm))?;
    std::fs::remove_file(&raw).map_err(io(&raw))
}

fn js(dir: &Path, wasm: &Path) -> Result<(), AuthoringError> {
    require(dir, "app.js", "JavaScript")?;
    require(dir, "wit", "JavaScript")?;
    let hint = format!(
        "run `npm install` in the project (it installs the pinned jco and componentize-js), or `npm install -g @bytecodealliance/jco@{} @bytecodealliance/componentize-js@{}`, or set {}; jco needs Node.js 20 or later",
        tools::JCO_VERSION,
        tools::COMPONENTIZE_JS_VERSION,
        tools::JCO_ENV
    );
    let tool = tools::jco(dir)
        .ok_or_else(|| AuthoringError::ToolMissing { tool: "jco".into(), hint: hint.clone() })?;
    let mut cmd = Command::new(tool);
    // jco reads the WIT through a sandbox rooted at the working directory, so
    // paths are relative. Disabling http and fetch-event leaves no wasi:http import.
    cmd.args(["componentize", "app.js", "--wit", "wit", "--world-name", "collector"])
        .args(["--disable", "http", "fetch-event", "-o"])
        .arg(wasm);
    run(cmd, dir, "jco", &hint)
}

/// Fails when the component imports what the agent refuses, naming it.
fn refuse_forbidden_imports(wasm: &Path) -> Result<(), AuthoringError> {
    let bytes = std::fs::read(wasm).map_err(io(wasm))?;
    let refused: Vec<String> = plug::imports(&bytes)?
        .into_iter()
        .filter(|i| !wasmtap_host::runtime::import_allowed(i))
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(AuthoringError::Project(format!(
        "{} imports {}, which the agent refuses (collectors get no network); remove what uses it",
        wasm.display(),
        refused.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_language_and_names_what_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = detect(dir.path()).expect_err("empty").to_string();
        assert!(err.contains("Cargo.toml") && err.contains("plugin new"), "{err}");
        for (file, lang) in
            [("package.json", Lang::Js), ("app.py", Lang::Python), ("Cargo.toml", Lang::Rust)]
        {
            std::fs::write(dir.path().join(file), "").expect("write");
            assert_eq!(detect(dir.path()).expect("detected"), lang);
        }
    }
}
