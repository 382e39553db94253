//! `wasmtap-plugin`: the collector author's tools. The agent's
//! `wasmtap plugin …` runs this binary with the same arguments.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wasmtap plugin",
    bin_name = "wasmtap plugin",
    version,
    about = "Tools for wasmtap collector authors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a collector project in NAME/: source, manifest, README, build files.
    New {
        /// Collector and directory name ([a-z][a-z0-9_-]*).
        name: String,
        /// Language: rust, python or js.
        #[arg(long, value_parser = wasmtap_authoring::Lang::parse)]
        lang: wasmtap_authoring::Lang,
        /// Directory to create the project in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The Rust SDK (plugins/sdk) to depend on [default: $WASMTAP_SDK, else the
        /// wasmtap source tree this binary was built from].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a collector project (Rust, Python or JavaScript); prints the .wasm path last.
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Validate a component against the WIT world; print its fields and grants.
    Check {
        /// The collector component.
        file: PathBuf,
        /// Its manifest (default: <file>.toml beside it).
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Run a collector under the agent's sandbox and print its samples.
    Run {
        /// The collector component.
        file: PathBuf,
        /// Its manifest (default: <file>.toml beside it).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Call collect once and exit (the default).
        #[arg(long, conflicts_with = "every")]
        once: bool,
        /// Call collect repeatedly at this interval (e.g. 1s).
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Option<std::time::Duration>,
        /// With --every: stop after this many calls.
        #[arg(long, requires = "every")]
        count: Option<u64>,
        /// One JSON object per value and line.
        #[arg(long)]
        json: bool,
    },
    /// Create an ed25519 signing key for distributing collectors.
    Keygen {
        /// Where to write the key (never overwritten; mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a collector: writes <file>.sig.
    Sign {
        /// The collector component.
        file: PathBuf,
        /// The signing key file from `wasmtap plugin keygen`.
        #[arg(long)]
        key: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    run(cli.command)
}

fn run(cmd: Command) -> anyhow::Result<()> {
    use wasmtap_authoring::{self as authoring, Repeat};
    match cmd {
        Command::New { name, lang, dir, sdk } => {
            let project = authoring::scaffold::NewProject { name, lang, parent: dir, sdk };
            let made = authoring::scaffold::create(&project).context("creating the project")?;
            eprintln!("created a {lang:?} collector project; build it with:");
            eprintln!("  wasmtap plugin build {}", made.display());
            println!("{}", made.display());
        }
        Command::Build { dir } => {
            let wasm = authoring::builder::build(&dir)
                .with_context(|| format!("building {}", dir.display()))?;
            println!("{}", wasm.display());
        }
        Command::Check { file, manifest } => {
            let report = authoring::check(&file, manifest.as_deref())
                .with_context(|| format!("checking {}", file.display()))?;
            print!("{report}");
        }
        Command::Run { file, manifest, once: _, every, count, json } => {
            let repeat = every.map_or(Repeat::Once, |d| Repeat::Every(d, count));
            authoring::run(&file, manifest.as_deref(), repeat, json, |report| print!("{report}"))
                .with_context(|| format!("running {}", file.display()))?;
        }
        Command::Keygen { out } => {
            let public = authoring::keygen(&out)?;
            eprintln!("signing key written to {} (keep it secret)", out.display());
            println!("{public}");
        }
        Command::Sign { file, key } => {
            let sig = authoring::sign(&file, &key)?;
            println!("{}", sig.display());
        }
    }
    Ok(())
}
