//! The compile cache: compiled collectors on disk, so that a restart loads
//! them in milliseconds instead of recompiling.
//!
//! An entry is `<cache_dir>/<sha256 of the wasm>-<key>.cwasm`, where the key
//! names this build of the agent (its version and target). Its content is
//! the compiled artifact followed by its SHA-256. Loading native code is
//! only as safe as the directory it comes from, so the directory is created
//! for the agent's user alone (mode 0700) and an entry whose checksum does
//! not match, or that wasmtime refuses (another wasmtime version, other
//! engine settings, CPU features this machine lacks), is compiled again and
//! replaced, never used.
//!
//! The agent compiles nothing itself: it runs `wasmtap-compile` (see
//! [`compile_child`]), which writes the entry and exits. The compiler's
//! code and its memory (tens of MiB for a few collectors) stay out of the
//! agent, which only maps what was compiled. A cache without a compiler
//! process compiles in this process, which needs the `compiler` feature
//! (the authoring tools, the tests).
//!
//! An entry is checked by reading it in pieces, then mapped, not copied,
//! into the agent (`Component::deserialize_file`): the collector's code is
//! clean file pages the kernel can drop under memory pressure rather than
//! anonymous heap (the resident size is the same, as every page of the
//! standard collectors' code is touched).

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
    /// Compiled now (and written to the cache).
    Compiled,
}

/// The on-disk compile cache.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    /// Compile in a child process running this executable (see [`compile_child`]).
    compiler: Option<PathBuf>,
}

/// The part of an entry's name that names this build: entries of another
/// version are left alone rather than replaced back and forth when two
/// versions share a data directory during an upgrade. What the name does
/// not cover, wasmtime checks when it loads the entry.
fn build_key() -> String {
    let named = format!(
        "wasmtap {} {}-{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    Sha256::digest(named.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a component could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileFailure {
    /// The component itself is at fault: not valid WebAssembly, or not a
    /// component this engine accepts.
    #[error("{0}")]
    Invalid(String),
    /// The compiler is at fault: missing, failed, or wrote nothing usable.
    /// The same component may compile once it is fixed.
    #[error("{0}")]
    Compiler(String),
}

/// The exit status of `wasmtap-compile` when the component is invalid
/// (`EX_DATAERR`); any other failure is the compiler's.
pub const EXIT_INVALID: u8 = 65;

/// Why an entry was not used.
enum Miss {
    Absent,
    Unusable(String),
}

impl CompileCache {
    /// A cache under `dir`, created with mode 0700 if missing.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        create_private_dir(dir)?;
        Ok(Self { dir: dir.to_owned(), compiler: None })
    }

    /// Compiles in a child process, `exe --cache DIR` with the component on
    /// its standard input, which writes the entry and exits. A child that
    /// fails, or writes an entry this process refuses, fails the load with
    /// its reason: nothing is compiled here then.
    pub fn compile_in_child(&mut self, exe: PathBuf) {
        self.compiler = Some(exe);
    }

    fn entry(&self, wasm: &[u8]) -> PathBuf {
        let digest = Sha256::digest(wasm);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}-{}.cwasm", build_key()))
    }

    /// The compiled component for `wasm`: from the cache when a valid entry
    /// exists, otherwise compiled (by the compiler process if there is one,
    /// else by `compile_here`) and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        compile_here: impl FnOnce() -> Result<Component, CompileFailure>,
    ) -> Result<(Component, Origin), CompileFailure> {
        let path = self.entry(wasm);
        match self.read(engine, &path) {
            Ok(component) => return Ok((component, Origin::Cache)),
            Err(Miss::Absent) => {}
            Err(Miss::Unusable(why)) => {
                tracing::warn!(path = %path.display(), reason = %why, "compile cache entry not used; compiling again");
            }
        }
        if let Some(exe) = &self.compiler {
            run_child(exe, &self.dir, wasm)?;
            return match self.read(engine, &path) {
                Ok(component) => Ok((component, Origin::Compiled)),
                Err(Miss::Absent) => Err(CompileFailure::Compiler(format!(
                    "{} wrote no entry at {}",
                    exe.display(),
                    path.display()
                ))),
                Err(Miss::Unusable(why)) => Err(CompileFailure::Compiler(format!(
                    "the entry {} wrote is not usable here: {why}",
                    exe.display()
                ))),
            };
        }
        let component = compile_here()?;
        if let Err(e) = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_entry(&path, &bytes))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write compile cache entry");
        }
        Ok((component, Origin::Compiled))
    }

    fn read(&self, engine: &Engine, path: &Path) -> Result<Component, Miss> {
        match verify(path) {
            Ok(true) => {}
            Ok(false) => return Err(Miss::Unusable("corrupt or truncated".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
            Err(e) => return Err(Miss::Unusable(format!("cannot read it: {e}"))),
        }
        #[expect(unsafe_code, reason = "loading precompiled code is unsafe in wasmtime's API")]
        // SAFETY: wasmtime requires that the file holds what
        // `Component::serialize` produced and is not altered while mapped.
        // The entry lives in a directory only the agent writes (mode 0700),
        // its SHA-256 checksum was just verified, and entries are only ever
        // replaced by renaming a new file over them (a mapping keeps the old
        // one); wasmtime checks the artifact's header, its version and
        // engine settings and refuses a mismatch.
        let loaded = unsafe { Component::deserialize_file(engine, path) };
        loaded.map_err(|e| Miss::Unusable(format!("refused: {e:#}")))
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

/// Runs `exe --cache dir` with `wasm` on its stdin.
fn run_child(exe: &Path, dir: &Path, wasm: &[u8]) -> Result<(), CompileFailure> {
    use std::process::{Command, Stdio};
    let failed = |e: &dyn std::fmt::Display| {
        CompileFailure::Compiler(format!("cannot run {}: {e}", exe.display()))
    };
    let mut child = Command::new(exe)
        .arg("--cache")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(&e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A compiler that exits early (a broken pipe) says why below.
        let _ = stdin.write_all(wasm);
    }
    let out = child.wait_with_output().map_err(|e| failed(&e))?;
    let why = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(()),
        Some(code) if code == i32::from(EXIT_INVALID) => {
            Err(CompileFailure::Invalid(why.trim().to_owned()))
        }
        _ => Err(CompileFailure::Compiler(format!(
            "{} failed ({}): {}",
            exe.display(),
            out.status,
            why.trim()
        ))),
    }
}

/// The child's side (`wasmtap-compile`): compiles the component read from
/// `input` with the agent's engine settings and writes it into the cache at
/// `dir`.
#[cfg(feature = "compiler")]
pub fn compile_child(dir: &Path, mut input: impl std::io::Read) -> Result<(), CompileFailure> {
    let failed = |e: &dyn std::fmt::Display| CompileFailure::Compiler(e.to_string());
    let mut wasm = Vec::new();
    input.read_to_end(&mut wasm).map_err(|e| failed(&format!("reading the component: {e}")))?;
    let engine = super::new_engine().map_err(|e| failed(&format!("{e:#}")))?;
    let cache =
        CompileCache::open(dir).map_err(|e| failed(&format!("opening {}: {e}", dir.display())))?;
    let component =
        Component::new(&engine, &wasm).map_err(|e| CompileFailure::Invalid(format!("{e:#}")))?;
    let artifact = component.serialize().map_err(|e| failed(&format!("{e:#}")))?;
    let entry = cache.entry(&wasm);
    write_entry(&entry, &artifact).map_err(|e| failed(&format!("writing {}: {e}", entry.display())))
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

/// Creates `dir` (and its missing parents) for this user alone, mode 0700,
/// and sets that mode if it already exists.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
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

#[cfg(all(test, feature = "compiler"))]
mod tests {
    use super::*;

    // The smallest valid component.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine() -> Engine {
        Engine::default()
    }

    fn here(engine: &Engine) -> Result<Component, CompileFailure> {
        Component::new(engine, EMPTY_COMPONENT).map_err(|e| CompileFailure::Invalid(e.to_string()))
    }

    #[test]
    fn second_load_comes_from_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine();
        let cache = CompileCache::open(&dir.path().join("c")).expect("open");
        let compile = || here(&e);
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
    fn a_compiler_process_that_fails_fails_the_load_with_its_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine();
        let mut cache = CompileCache::open(&dir.path().join("c")).expect("open");
        let script = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
            path
        };
        let entry = cache.entry(EMPTY_COMPONENT);
        let garbage = script("garbage", &format!("cat >/dev/null; printf x > {}", entry.display()));
        let cases = [
            (PathBuf::from("/nonexistent/wasmtap-compile"), "No such file", false),
            (script("fails", "echo out of memory >&2; exit 3"), "out of memory", false),
            (script("silent", "cat >/dev/null"), "wrote no entry", false),
            (garbage, "corrupt or truncated", false),
            (script("invalid", "cat >/dev/null; echo bad magic >&2; exit 65"), "bad magic", true),
        ];
        for (exe, why, invalid) in cases {
            cache.compile_in_child(exe.clone());
            let here = || -> Result<Component, CompileFailure> { panic!("never compiles here") };
            let err = cache.load_or_compile(&e, EMPTY_COMPONENT, here).expect_err("fails");
            assert_eq!(matches!(err, CompileFailure::Invalid(_)), invalid, "{err:?}");
            let err = err.to_string();
            assert!(err.contains(why), "{}: {err}", exe.display());
        }
    }

    #[test]
    fn an_entry_the_compiler_process_wrote_that_is_refused_fails_the_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine();
        let mut cache = CompileCache::open(dir.path()).expect("open");
        // A "compiler" that writes a well-checksummed entry of an engine
        // with other settings: wasmtime refuses it here.
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true);
        let other = Engine::new(&cfg).expect("engine");
        let artifact = Component::new(&other, EMPTY_COMPONENT).expect("compiles");
        let artifact = artifact.serialize().expect("serialize");
        let prepared = dir.path().join("prepared");
        write_entry(&prepared, &artifact).expect("write");
        let entry = cache.entry(EMPTY_COMPONENT);
        let exe = dir.path().join("copies");
        std::fs::write(
            &exe,
            format!("#!/bin/sh\ncat >/dev/null\ncp {} {}\n", prepared.display(), entry.display()),
        )
        .expect("script");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        cache.compile_in_child(exe);
        let here = || -> Result<Component, CompileFailure> { panic!("never compiles here") };
        let err = cache.load_or_compile(&e, EMPTY_COMPONENT, here).expect_err("refused");
        assert!(format!("{err:#}").contains("not usable here"), "{err:#}");
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
        let cache = CompileCache::open(dir.path()).expect("open");
        let refuse = || -> Result<Component, CompileFailure> {
            Err(CompileFailure::Compiler("not compiled here".into()))
        };
        let (_, origin) = cache.load_or_compile(rt.engine(), EMPTY_COMPONENT, refuse).expect("ok");
        assert_eq!(origin, Origin::Cache);
    }

    #[test]
    fn corrupt_or_truncated_entries_are_recompiled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine();
        let cache = CompileCache::open(dir.path()).expect("open");
        let compile = || here(&e);
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
        let cache = CompileCache::open(dir.path()).expect("open");
        let compiled = Component::new(&e, EMPTY_COMPONENT).expect("compiles");
        let artifact = compiled.serialize().expect("serialize");
        let mut old = Sha256::digest(&artifact).to_vec();
        old.extend_from_slice(&artifact);
        std::fs::write(cache.entry(EMPTY_COMPONENT), old).expect("write");
        let compile = || here(&e);
        let (_, origin) = cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok");
        assert_eq!(origin, Origin::Compiled);
        let (_, origin) = cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok");
        assert_eq!(origin, Origin::Cache, "rewritten in today's layout");
    }

    #[test]
    fn an_entry_of_another_engine_configuration_is_compiled_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine();
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true);
        let other = Engine::new(&cfg).expect("engine");
        let cache = CompileCache::open(dir.path()).expect("open");
        let compile_other = || here(&other);
        let (_, origin) =
            cache.load_or_compile(&other, EMPTY_COMPONENT, compile_other).expect("ok");
        assert_eq!(origin, Origin::Compiled);
        let compile = || here(&e);
        let (_, origin) = cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok");
        assert_eq!(origin, Origin::Compiled, "the other engine's entry is refused");
        let (_, origin) = cache.load_or_compile(&e, EMPTY_COMPONENT, compile).expect("ok");
        assert_eq!(origin, Origin::Cache, "and replaced by this engine's");
    }
}
