//! The project templates of `wasmtap plugin new`, compiled into the binary
//! from `host/templates/`. Text files with `{{name}}` and `{{sdk}}`
//! placeholders.

use super::Lang;

/// One file of a template: its path in the project and its text.
pub type File = (&'static str, &'static str);

/// The agent's WIT package, which every Python and JavaScript project carries.
const COLLECTOR_WIT: &str = include_str!("../../wit/collector.wit");

const RUST: &[File] = &[
    ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
    ("manifest.toml", include_str!("../templates/rust/manifest.toml")),
    ("README.md", include_str!("../templates/rust/README.md")),
    (".gitignore", include_str!("../templates/rust/gitignore")),
];

const PYTHON: &[File] = &[
    ("app.py", include_str!("../templates/python/app.py")),
    ("wit/collector.wit", COLLECTOR_WIT),
    ("manifest.toml", include_str!("../templates/python/manifest.toml")),
    ("README.md", include_str!("../templates/python/README.md")),
    (".gitignore", include_str!("../templates/python/gitignore")),
];

const JS: &[File] = &[
    ("app.js", include_str!("../templates/js/app.js")),
    ("package.json", include_str!("../templates/js/package.json")),
    ("wit/world.wit", include_str!("../templates/js/wit/world.wit")),
    ("wit/deps/wasmtap-collector/collector.wit", COLLECTOR_WIT),
    ("wit/deps/wasi-io/io.wit", include_str!("../templates/js/wit/deps/wasi-io/io.wit")),
    (
        "wit/deps/wasi-clocks/clocks.wit",
        include_str!("../templates/js/wit/deps/wasi-clocks/clocks.wit"),
    ),
    (
        "wit/deps/wasi-filesystem/filesystem.wit",
        include_str!("../templates/js/wit/deps/wasi-filesystem/filesystem.wit"),
    ),
    ("manifest.toml", include_str!("../templates/js/manifest.toml")),
    ("README.md", include_str!("../templates/js/README.md")),
    (".gitignore", include_str!("../templates/js/gitignore")),
];

/// The files of `lang`'s template.
pub fn files(lang: Lang) -> &'static [File] {
    match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    }
}

/// `text` with every `{{key}}` replaced by its value.
pub fn render(text: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(text.to_owned(), |t, (k, v)| t.replace(&format!("{{{{{k}}}}}"), v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_none_is_left() {
        assert_eq!(
            render("a {{name}} b {{name}} {{sdk}}", &[("name", "x"), ("sdk", "/s")]),
            "a x b x /s"
        );
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for (path, text) in files(lang) {
                let out = render(text, &[("name", "n"), ("sdk", "/s")]);
                assert!(!out.contains("{{"), "{path} of {lang:?} keeps a placeholder");
            }
        }
    }
}
