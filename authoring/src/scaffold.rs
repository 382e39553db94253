//! `wasmtap plugin new NAME --lang rust|python|js`: a ready-to-build
//! collector project in `NAME/` from the templates.

use std::path::{Path, PathBuf};

use super::{AuthoringError, Lang, io, templates, tools};

/// What `plugin new` makes.
#[derive(Debug, Clone)]
pub struct NewProject {
    /// Collector and directory name, `[a-z][a-z0-9_-]*`.
    pub name: String,
    /// Source language.
    pub lang: Lang,
    /// Directory to create the project in.
    pub parent: PathBuf,
    /// The Rust SDK directory (Rust only); see [`tools::sdk`] for the default.
    pub sdk: Option<PathBuf>,
}

/// Longest collector name (the agent's limit on a descriptor's name).
const MAX_NAME: usize = 64;

/// Whether `name` can name a collector, a directory and a Rust crate.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Writes the project and returns its directory. Never overwrites: the
/// directory must not exist.
pub fn create(p: &NewProject) -> Result<PathBuf, AuthoringError> {
    if !valid_name(&p.name) {
        return Err(AuthoringError::Project(format!(
            "`{}` is not a collector name: use lowercase letters, digits, `_` and `-`, starting with a letter, at most {MAX_NAME} bytes",
            p.name.escape_debug()
        )));
    }
    let sdk = match p.lang {
        Lang::Rust => {
            let sdk = tools::sdk(p.sdk.as_deref()).ok_or_else(|| {
                AuthoringError::Project(format!(
                    "cannot find the Rust SDK (plugins/sdk of the wasmtap repository){}: pass --sdk DIR or set {}",
                    p.sdk.as_ref().map(|d| format!(" at {}", d.display())).unwrap_or_default(),
                    tools::SDK_ENV
                ))
            })?;
            sdk.to_string_lossy().into_owned()
        }
        Lang::Python | Lang::Js => String::new(),
    };
    let dir = p.parent.join(&p.name);
    // create_dir (not _all) fails on an existing directory: nothing is overwritten.
    std::fs::create_dir_all(&p.parent).map_err(io(&p.parent))?;
    std::fs::create_dir(&dir).map_err(io(&dir))?;
    let vars = [("name", p.name.as_str()), ("sdk", sdk.as_str())];
    for (path, text) in templates::files(p.lang) {
        write(&dir.join(path), &templates::render(text, &vars))?;
    }
    Ok(dir)
}

fn write(path: &Path, text: &str) -> Result<(), AuthoringError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(path, text).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["uptime", "my-collector", "a_1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Up", "1x", "-x", "a/b", "a b", "..", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn creates_each_language_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sdk = dir.path().join("sdk");
        std::fs::create_dir(&sdk).expect("sdk dir");
        std::fs::write(sdk.join("Cargo.toml"), "").expect("sdk manifest");
        for (lang, marker) in
            [(Lang::Rust, "Cargo.toml"), (Lang::Python, "app.py"), (Lang::Js, "package.json")]
        {
            let name = format!("c-{lang:?}").to_lowercase();
            let p = NewProject {
                name: name.clone(),
                lang,
                parent: dir.path().to_owned(),
                sdk: Some(sdk.clone()),
            };
            let made = create(&p).expect("create");
            assert!(made.join(marker).is_file() && made.join("manifest.toml").is_file());
            let readme = std::fs::read_to_string(made.join("README.md")).expect("readme");
            assert!(readme.contains(&name));
            std::fs::write(made.join("README.md"), "mine").expect("edit");
            assert!(create(&p).is_err(), "an existing project is refused");
            assert_eq!(std::fs::read_to_string(made.join("README.md")).expect("kept"), "mine");
        }
        let cargo = std::fs::read_to_string(dir.path().join("c-rust/Cargo.toml")).expect("cargo");
        assert!(cargo.contains(&sdk.display().to_string()), "{cargo}");
    }
}
