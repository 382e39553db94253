//! Checks a component before it is published, with the agent's own code
//! (`wasmtap-host`): it compiles, imports only what collectors may import,
//! targets a world version agents load, and describes a valid schema; its
//! manifest parses; its signature, if any, is well formed and verifies
//! against the key it names (whether agents trust that key is theirs to
//! say). The component is instantiated without grants and `init` is not
//! called: nothing of it runs against this machine.

use std::path::Path;

use wasmtap_host::manifest::Manifest;
use wasmtap_host::runtime::{Collector, Runtime};
use wasmtap_host::signing;
use wasmtap_protocol::fleet;

/// What a valid component declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The collector's name.
    pub name: String,
    /// Its declared version.
    pub version: String,
    /// The signer, if it is signed.
    pub signer: Option<String>,
    /// How often agents will call it: its manifest's interval, else the
    /// one it suggests.
    pub interval: std::time::Duration,
}

/// Validates `wasm` (named `label` in messages) with its manifest and
/// signature texts. Blocking: it compiles.
pub fn validate(
    label: &str,
    wasm: &[u8],
    manifest: Option<&str>,
    signature: Option<&str>,
    max: u64,
) -> Result<Validated, String> {
    if wasm.len() as u64 > max {
        return Err(format!("{label}: {} bytes, over the limit of {max} bytes", wasm.len()));
    }
    let manifest = match manifest {
        Some(text) => Manifest::parse(text, Path::new("manifest")).map_err(|e| e.to_string())?,
        None => Manifest::default(),
    };
    let signer = match signature {
        Some(text) => {
            let key = signing::signer_of(text).map_err(|e| format!("signature: {e}"))?;
            signing::verify(wasm, text, std::slice::from_ref(&key))
                .map_err(|e| format!("signature: {e}"))?;
            Some(key.to_string())
        }
        None => None,
    };
    let exec = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime to check it: {e}"))?;
    let rt = Runtime::without_storage()
        .map_err(|e| format!("cannot start the collector runtime: {e:#}"))?;
    let asked = manifest.interval;
    let prepared =
        Collector::prepare(&rt, Path::new(label), wasm, manifest).map_err(|e| e.to_string())?;
    let schema =
        exec.block_on(Collector::inspect(&rt, prepared)).map_err(|e| format!("{label}: {e}"))?;
    if !fleet::is_collector_name(&schema.name) {
        return Err(format!(
            "{label}: the collector calls itself `{}`; a managed collector's name is 1 to {} of a-z, 0-9, `_` and `-`",
            schema.name,
            fleet::MAX_NAME
        ));
    }
    let interval = asked.unwrap_or(schema.default_interval);
    Ok(Validated { name: schema.name, version: schema.version, signer, interval })
}
