//! The compile cache: compiled collectors on disk, so that a restart loads
//! them in milliseconds instead of recompiling.
//!
//! An entry is `<cache_dir>/<sha256 of the wasm>-<engine hash>.cwasm`, where
//! the engine hash covers wasmtime's version and every compilation setting
//! (`Engine::precompile_compatibility_hash`). Its content is the compiled
//! artifact followed by its SHA-256. Loading native code is only as safe as
//! the directory it comes from, so the directory is created for the agent's
//! user alone (mode 0700) and an entry whose checksum does not match, or
//! that wasmtime refuses, is recompiled and rewritten, never used.
//!
//! An entry is checked by reading it in pieces, then mapped, not copied,
//! into the agent (`Component::deserialize_file`): the collector's code is
//! clean file pages the kernel can drop under memory pressure rather than
//! anonymous heap (the resident size is the same, as every page of the
//! standard collectors' code is touched).

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where an artifact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Loaded from the cache.
    Cache,
    /// Compiled now (and written to the cache if it is writable).
    Compiled,
}

/// The on-disk compile cache.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_hash: String,
    /// Compile in a child process running this executable (see [`compile_child`]).
    compiler: Option<PathBuf>,
}

impl CompileCache {
    /// A cache under `dir`, created with mode 0700 if missing.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        create_private_dir(dir)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Self {
            dir: dir.to_owned(),
            engine_hash: format!("{:016x}", h.finish()),
            compiler: None,
        })
    }

    /// Compiles in a child process, `exe compile-collector --cache DIR` with
    /// the component on its standard input, which writes the entry and
    /// exits: the compiler's memory (tens of MiB for a few collectors) goes
    /// with it, and this process only maps the compiled code. If the child
    /// fails, the component is compiled here instead.
    pub fn compile_in_child(&mut self, exe: PathBuf) {
        self.compiler = Some(exe);
    }

    fn entry(&self, wasm: &[u8]) -> PathBuf {
        let digest = Sha256::digest(wasm);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}-{}.cwasm", self.engine_hash))
    }

    /// The compiled component for `wasm`: from the cache when a valid entry
    /// exists, otherwise compiled by `compile` and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        compile: impl FnOnce() -> wasmtime::Result<Component>,
    ) -> wasmtime::Result<(Component, Origin)> {
        let path = self.entry(wasm);
        if let Some(component) = self.read(engine, &path) {
            return Ok((component, Origin::Cache));
        }
        if let Some(exe) = &self.compiler {
            match run_child(exe, &self.dir, wasm) {
                Ok(()) => {
                    if let Some(component) = self.read(engine, &path) {
                        return Ok((component, Origin::Compiled));
                    }
                    tracing::warn!(path = %path.display(), "the compiler process wrote no usable entry; compiling here");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot compile in a child process; compiling here");
                }
            }
        }
        let component = compile()?;
        if let Err(e) = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_entry(&path, &bytes))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write compile cache entry");
        }
        Ok((component, Origin::Compiled))
    }

    fn read(&self, engine: &Engine, path: &Path) -> Option<Component> {
        match verify(path) {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(path = %path.display(), "compile cache entry corrupt or truncated; recompiling");
                return None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read compile cache entry");
                return None;
            }
        }
        #[expect(unsafe_code, reason = "loading precompiled code is unsafe in wasmtime's API")]
        // SAFETY: wasmtime requires that the file holds what
        // `Component::serialize` of a compatible engine produced and is not
        // altered while mapped. The entry lives in a directory only the
        // agent writes (mode 0700), its name binds the engine's
        // compatibility hash, its SHA-256 checksum was just verified, and
        // entries are only ever replaced by renaming a new file over them
        // (a mapping keeps the old one); wasmtime additionally checks the
        // artifact's header and engine settings and refuses a mismatch.
        let loaded = unsafe { Component::deserialize_file(engine, path) };
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "compile cache entry refused; recompiling");
                None
            }
        }
    }
}

/// Bytes of an entry's checksum trailer.
const SUM_LEN: u64 = 32;

/// Whether the entry at `path` ends with the SHA-256 of what precedes it,
/// read in pieces (an artifact is never held in memory whole).
fn verify(path: &Path) -> std::io::Result<bool> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let Some(body) = file.metadata()?.len().checked_sub(SUM_LEN) else { return Ok(false) };
    let mut hasher = Sha256::new();
    let mut left = body;
    let mut buf = vec![0u8; 64 << 10];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(false);
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    let mut sum = [0u8; SUM_LEN as usize];
    file.read_exact(&mut sum)?;
    Ok(hasher.finalize().as_slice() == sum)
}

/// Runs `exe compile-collector --cache dir` with `wasm` on its stdin.
fn run_child(exe: &Path, dir: &Path, wasm: &[u8]) -> std::io::Result<()> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(exe)
        .arg("compile-collector")
        .arg("--cache")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(wasm)?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        let why = String::from_utf8_lossy(&out.stderr);
        Err(std::io::Error::other(format!("{}: {}", out.status, why.trim())))
    }
}

/// The child's side: compiles the component read from `input` with the
/// agent's engine settings and writes it into the cache at `dir`.
pub fn compile_child(dir: &Path, mut input: impl std::io::Read) -> anyhow::Result<()> {
    let mut wasm = Vec::new();
    input.read_to_end(&mut wasm)?;
    let engine = super::new_engine()?;
    let cache = CompileCache::open(dir, &engine)?;
    let component = Component::new(&engine, &wasm)?;
    write_entry(&cache.entry(&wasm), &component.serialize()?)?;
    Ok(())
}

fn write_entry(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    // A temporary name of this writer's own: compilers of one component
    // running at once (two copies of a collector) must not rename each
    // other's file away, or the one that loses falls back to compiling in
    // the agent.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(artifact)?;
    f.write_all(&Sha256::digest(artifact))?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The smallest valid component.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine() -> Engine {
        Engine::default()
    }

    #[test]
    fn second_load_comes_from_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine();
        let cache = CompileCache::open(&dir.path().join("c"), &e).expect("open");
        let compile = || Component::new(&e, EMPTY_COMPONENT);
        assert_eq!(
            cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok").1,
            Origin::Compiled
        );
        assert_eq!(
            cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok").1,
            Origin::Cache
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("c")).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }

    #[test]
    fn a_compiler_process_that_fails_falls_back_to_compiling_here() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine();
        let mut cache = CompileCache::open(dir.path(), &e).expect("open");
        for exe in ["/nonexistent/wasmtap", "/bin/false", "/bin/true"] {
            cache.compile_in_child(PathBuf::from(exe));
            let compile = || Component::new(&e, EMPTY_COMPONENT);
            let (_, origin) = cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok");
            assert_eq!(origin, Origin::Compiled, "{exe}");
            std::fs::remove_file(cache.entry(EMPTY_COMPONENT)).expect("entry written here");
        }
    }

    #[test]
    fn compilers_of_one_component_at_once_all_write_their_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let dir = dir.path().to_owned();
                std::thread::spawn(move || super::compile_child(&dir, EMPTY_COMPONENT))
            })
            .collect();
        for w in writers {
            w.join().expect("thread").expect("each compiler writes its entry");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(left.len(), 1, "one entry, no temporary files: {left:?}");
    }

    #[test]
    fn the_compiler_process_writes_the_entry_the_agent_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        super::compile_child(dir.path(), EMPTY_COMPONENT).expect("compile");
        // The agent's engine settings, as the child used them.
        let rt = super::super::Runtime::without_storage().expect("runtime");
        let cache = CompileCache::open(dir.path(), rt.engine()).expect("open");
        let refuse = || -> wasmtime::Result<Component> { wasmtime::bail!("not compiled here") };
        let (_, origin) = cache.load_or_compile(rt.engine(), EMPTY_COMPONENT, refuse).expect("ok");
        assert_eq!(origin, Origin::Cache);
    }

    #[test]
    fn corrupt_or_truncated_entries_are_recompiled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine();
        let cache = CompileCache::open(dir.path(), &e).expect("open");
        let compile = || Component::new(&e, EMPTY_COMPONENT);
        cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok");
        let path = cache.entry(EMPTY_COMPONENT);
        let mut bytes = std::fs::read(&path).expect("entry");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).expect("corrupt");
        assert_eq!(
            cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok").1,
            Origin::Compiled
        );
        std::fs::write(&path, &bytes[..10]).expect("truncate");
        assert_eq!(
            cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok").1,
            Origin::Compiled
        );
        // The rewritten entry is good again.
        assert_eq!(
            cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok").1,
            Origin::Cache
        );
    }

    #[test]
    fn an_entry_of_the_earlier_layout_is_recompiled() {
        // Before entries were mapped, the checksum came first.
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine();
        let cache = CompileCache::open(dir.path(), &e).expect("open");
        let compiled = Component::new(&e, EMPTY_COMPONENT).expect("compiles");
        let artifact = compiled.serialize().expect("serialize");
        let mut old = Sha256::digest(&artifact).to_vec();
        old.extend_from_slice(&artifact);
        std::fs::write(cache.entry(EMPTY_COMPONENT), old).expect("write");
        let compile = || Component::new(&e, EMPTY_COMPONENT);
        let (_, origin) = cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok");
        assert_eq!(origin, Origin::Compiled);
        let (_, origin) = cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok");
        assert_eq!(origin, Origin::Cache, "rewritten in today's layout");
    }

    #[test]
    fn entries_of_another_engine_configuration_are_not_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e1 = engine();
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true);
        let e2 = Engine::new(&cfg).expect("engine");
        let c1 = CompileCache::open(dir.path(), &e1).expect("open");
        let c2 = CompileCache::open(dir.path(), &e2).expect("open");
        assert_ne!(c1.entry(EMPTY_COMPONENT), c2.entry(EMPTY_COMPONENT));
    }
}
