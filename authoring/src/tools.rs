//! Finding what `plugin new` and `plugin build` use: the Rust SDK, each
//! language's build tool, and the `deny-sockets` component.
//!
//! Each is looked up in order: an environment variable naming it, the
//! project's own install (JavaScript's `node_modules`), `PATH`, and last the
//! wasmtap source tree this binary was built from, where `cargo xtask test`
//! installs pinned versions under `target/authoring-tools/`.

use std::path::{Path, PathBuf};

/// componentize-py version the Python template is built and tested with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// jco version the JavaScript template is built and tested with.
pub const JCO_VERSION: &str = "1.17.9";
/// ComponentizeJS version the JavaScript template is built and tested with.
pub const COMPONENTIZE_JS_VERSION: &str = "0.19.3";

/// Overrides the Rust SDK directory `plugin new --lang rust` depends on.
pub const SDK_ENV: &str = "WASMTAP_SDK";
/// Names the `componentize-py` program.
pub const COMPONENTIZE_PY_ENV: &str = "WASMTAP_COMPONENTIZE_PY";
/// Names the `jco` program.
pub const JCO_ENV: &str = "WASMTAP_JCO";
/// Names the `deny-sockets.wasm` component.
pub const DENY_SOCKETS_ENV: &str = "WASMTAP_DENY_SOCKETS";

/// The wasmtap source tree this binary was built from.
pub fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Where `cargo xtask test` installs the pinned authoring tools.
pub fn installed_tools() -> PathBuf {
    source_root().join("target/authoring-tools")
}

fn from_env(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// The Rust SDK: `explicit`, else `$WASMTAP_SDK`, else `plugins/sdk` of the source tree.
pub fn sdk(explicit: Option<&Path>) -> Option<PathBuf> {
    let dir = explicit
        .map(Path::to_owned)
        .or_else(|| from_env(SDK_ENV))
        .unwrap_or_else(|| source_root().join("plugins/sdk"));
    dir.join("Cargo.toml").is_file().then(|| std::path::absolute(&dir).unwrap_or(dir))
}

/// The `componentize-py` program.
pub fn componentize_py() -> Option<PathBuf> {
    from_env(COMPONENTIZE_PY_ENV).or_else(|| on_path("componentize-py")).or_else(|| {
        Some(installed_tools().join("python/bin/componentize-py")).filter(|p| p.is_file())
    })
}

/// The `jco` program for the project in `project`.
pub fn jco(project: &Path) -> Option<PathBuf> {
    from_env(JCO_ENV)
        .or_else(|| Some(project.join("node_modules/.bin/jco")).filter(|p| p.is_file()))
        .or_else(|| on_path("jco"))
        .or_else(|| {
            Some(installed_tools().join("js/node_modules/.bin/jco")).filter(|p| p.is_file())
        })
}

/// The `deny-sockets.wasm` component that `cargo xtask plugins` builds.
pub fn deny_sockets() -> Option<PathBuf> {
    from_env(DENY_SOCKETS_ENV).or_else(|| {
        Some(source_root().join("target/plugins/support/deny-sockets.wasm")).filter(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_match_what_xtask_installs_and_the_js_template() {
        let requirements = include_str!("../../xtask/authoring-tools/requirements.txt");
        assert!(requirements.contains(&format!("componentize-py=={COMPONENTIZE_PY_VERSION}\n")));
        for package_json in [
            include_str!("../../xtask/authoring-tools/package.json"),
            include_str!("../templates/js/package.json"),
        ] {
            assert!(
                package_json.contains(&format!("\"@bytecodealliance/jco\": \"{JCO_VERSION}\""))
            );
            assert!(package_json.contains(&format!(
                "\"@bytecodealliance/componentize-js\": \"{COMPONENTIZE_JS_VERSION}\""
            )));
        }
    }

    #[test]
    fn the_sdk_of_this_source_tree_is_found_and_a_wrong_one_refused() {
        assert!(sdk(None).is_some_and(|d| d.join("src/lib.rs").is_file()));
        assert!(sdk(Some(Path::new("/nonexistent"))).is_none());
    }
}
