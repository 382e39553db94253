//! Which version of the `wasmtap:collector` world a component targets, and
//! calls into it that answer in the current version's types.
//!
//! A component names the version in its imports (`wasmtap:collector/types@0.1.0`,
//! `@0.2.0` or `@0.2.1`); every collector imports `types`, since its exports
//! return them. 0.2.1 only adds the `files` interface, so a 0.2.0
//! collector's imports resolve to the 0.2.1 definitions (the linker matches
//! semver-compatible names). 0.1.0 values are converted on the way out: the
//! same samples, and fields without a precision.

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use super::bindings::{self, v0_1, wasmtap::collector::types as wit};
use super::state::CollectorState;

/// Versions of the world this agent loads, newest first.
pub const SUPPORTED: &[&str] = &["0.2.1", "0.2.0", "0.1.0"];

/// [`SUPPORTED`] as a sentence: `0.2.1, 0.2.0 and 0.1.0`.
pub fn supported_list() -> String {
    match SUPPORTED.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

const PACKAGE: &str = "wasmtap:collector/";

/// The world version a component's import `name` belongs to, if it is one
/// of the agent's own interfaces.
pub fn version_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PACKAGE)?;
    Some(rest.split_once('@').map_or("", |(_, v)| v))
}

/// A component ready to instantiate, in the world version it targets.
pub(super) enum Pre {
    /// 0.2.0 or 0.2.1, as named.
    V0_2(bindings::CollectorPre<CollectorState>, &'static str),
    V0_1(v0_1::CollectorPre<CollectorState>),
}

/// A live instance's exports.
pub(super) enum Exports {
    V0_2(bindings::Collector),
    V0_1(v0_1::Collector),
}

impl Pre {
    /// Type-checks `component` against the world version it imports.
    pub(super) fn new(
        engine: &Engine,
        linker: &Linker<CollectorState>,
        component: &Component,
    ) -> wasmtime::Result<Self> {
        let pre = linker.instantiate_pre(component)?;
        let ty = component.component_type();
        let named = |v: &str| ty.imports(engine).any(|(name, _)| version_of(name) == Some(v));
        // The newest version it names (every collector imports `types`).
        Ok(match SUPPORTED.iter().copied().find(|v| named(v)).unwrap_or(SUPPORTED[0]) {
            "0.1.0" => Self::V0_1(v0_1::CollectorPre::new(pre)?),
            version => Self::V0_2(bindings::CollectorPre::new(pre)?, version),
        })
    }

    /// The version of the world it targets.
    pub(super) fn version(&self) -> &'static str {
        match self {
            Self::V0_2(_, version) => version,
            Self::V0_1(_) => "0.1.0",
        }
    }

    pub(super) async fn instantiate(
        &self,
        store: &mut Store<CollectorState>,
    ) -> wasmtime::Result<Exports> {
        Ok(match self {
            Self::V0_2(pre, _) => Exports::V0_2(pre.instantiate_async(store).await?),
            Self::V0_1(pre) => Exports::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

impl Exports {
    pub(super) async fn describe(
        &self,
        store: &mut Store<CollectorState>,
    ) -> wasmtime::Result<wit::Descriptor> {
        Ok(match self {
            Self::V0_2(c) => c.call_describe(store).await?,
            Self::V0_1(c) => descriptor(c.call_describe(store).await?),
        })
    }

    pub(super) async fn init(
        &self,
        store: &mut Store<CollectorState>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Self::V0_2(c) => c.call_init(store, config).await,
            Self::V0_1(c) => c.call_init(store, config).await,
        }
    }

    pub(super) async fn collect(
        &self,
        store: &mut Store<CollectorState>,
    ) -> wasmtime::Result<Result<Vec<wit::Sample>, String>> {
        Ok(match self {
            Self::V0_2(c) => c.call_collect(store).await?,
            Self::V0_1(c) => {
                c.call_collect(store).await?.map(|s| s.into_iter().map(sample).collect())
            }
        })
    }
}

fn descriptor(d: v0_1::wasmtap::collector::types::Descriptor) -> wit::Descriptor {
    use v0_1::wasmtap::collector::types::FieldKind as Old;
    let fields = d
        .fields
        .into_iter()
        .map(|f| wit::Field {
            name: f.name,
            kind: match f.kind {
                Old::Gauge => wit::FieldKind::Gauge,
                Old::Counter => wit::FieldKind::Counter,
                Old::Text => wit::FieldKind::Text,
            },
            unit: f.unit,
            help: f.help,
            precision: None,
        })
        .collect();
    wit::Descriptor {
        name: d.name,
        version: d.version,
        default_interval_ms: d.default_interval_ms,
        fields,
    }
}

fn sample(s: v0_1::wasmtap::collector::types::Sample) -> wit::Sample {
    wit::Sample {
        labels: s.labels,
        numbers: s
            .numbers
            .into_iter()
            .map(|n| wit::Number { field: n.field, value: n.value })
            .collect(),
        texts: s.texts.into_iter().map(|t| wit::Text { field: t.field, value: t.value }).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::{supported_list, version_of};

    #[test]
    fn versions_come_from_the_agents_own_imports_only() {
        assert_eq!(version_of("wasmtap:collector/types@0.1.0"), Some("0.1.0"));
        assert_eq!(version_of("wasmtap:collector/host@0.2.0"), Some("0.2.0"));
        assert_eq!(version_of("wasmtap:collector/host"), Some(""));
        assert_eq!(version_of("wasi:io/poll@0.2.12"), None);
    }

    #[test]
    fn the_supported_versions_read_as_a_list() {
        assert_eq!(supported_list(), "0.2.1, 0.2.0 and 0.1.0");
    }
}
