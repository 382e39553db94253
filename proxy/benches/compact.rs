//! What compressing a closed segment costs the store's maintenance thread,
//! per value, in its two parts: reading the row records back into
//! per-series columns (`Builder::add`: the records' checksums, their
//! samples, each series looked up, each value coded against the one before
//! it) and finishing the block (`Builder::finish`: each column through the
//! entropy coder, the chunk records, the index). The values are those of
//! `cargo xtask bench-store` (`examples/store_load/host.rs`): 10 agents of
//! 1,000 series, one batch per agent and second, stored as rows first.
//!
//! Beside them, the floor of any compression at rest: general-purpose
//! zstd over the same row files, from very fast levels (−50) up.
//!
//! Run: `cargo bench -p wasmtap-proxy --bench compact`
//! (`BENCH_SECONDS` changes the 300 simulated seconds, `BENCH_SEGMENT_MIB`
//! the segment size, 32 MiB by default; the figures are the best of three
//! passes over the same row files).

#[path = "../examples/store_load/host.rs"]
mod host;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use wasmtap_protocol::access_key::ProjectId;
use wasmtap_proxy::store::block::Builder;
use wasmtap_proxy::store::catalog;
use wasmtap_proxy::store::rows::{Item, RowFile};
use wasmtap_proxy::store::{Fsync, Store, StoreConfig, StoredBatch};

const AGENTS: u64 = 10;

fn main() -> anyhow::Result<()> {
    let seconds: u64 = match std::env::var("BENCH_SECONDS") {
        Ok(s) => s.parse().context("BENCH_SECONDS")?,
        Err(_) => 300,
    };
    let tmp = tempfile::tempdir()?;
    let project = ProjectId::new("bench")?;
    let segment_bytes: u64 = match std::env::var("BENCH_SEGMENT_MIB") {
        Ok(s) => s.parse::<u64>().context("BENCH_SEGMENT_MIB")? << 20,
        Err(_) => StoreConfig::default().segment_bytes,
    };
    let config = StoreConfig {
        fsync: Fsync::Off,
        compress: false,
        segment_bytes,
        // The load's times are in the past: kept whatever their age.
        retention: None,
        ..StoreConfig::default()
    };
    let store = Store::open_with(tmp.path(), config)?;
    let mut hosts: Vec<host::Host> = (0..AGENTS).map(host::Host::new).collect();
    let start_ms = 1_767_225_600_000;
    for second in 0..seconds {
        for (a, h) in (0..).zip(&mut hosts) {
            let batch = h.batch(second + 1, start_ms + second * 1000);
            let record = StoredBatch {
                agent: format!("bench-{a:03}"),
                session: 1,
                received_ms: start_ms + second * 1000,
                batch,
            };
            store.append(&project, record)?;
        }
    }
    store.close();
    let values = seconds * AGENTS * (host::SAMPLES * host::FIELDS) as u64;

    let dir = tmp.path().join(project.as_str());
    let segments: Vec<u64> =
        catalog::list(&dir)?.into_iter().filter(|s| s.rows).map(|s| s.id).collect();
    let files: Vec<RowFile> = segments
        .iter()
        .map(|id| RowFile::open(&catalog::row_path(&dir, *id))?.context("row file"))
        .collect::<anyhow::Result<_>>()?;
    let row_bytes: u64 = files.iter().map(RowFile::size).sum::<std::io::Result<u64>>()?;

    // Reading the rows back into columns.
    let build = |file: &RowFile, id: u64| -> anyhow::Result<Builder> {
        let len = file.size()?;
        let mut builder = Builder::new(id);
        let mut failed = None;
        let mut at = 0;
        while at < len {
            at = file.window(at, len, true, |item| {
                if let Item::Record { at, payload } = item
                    && let Err(e) = builder.add(at, payload)
                {
                    failed.get_or_insert(e);
                }
            })?;
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(builder),
        }
    };
    // Each pass reads every segment's rows into a builder, then finishes
    // the blocks; both parts are timed on their own, best of three.
    let (mut read, mut finish) = (Duration::MAX, Duration::MAX);
    let mut block_bytes = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let builders: Vec<Builder> = files
            .iter()
            .zip(&segments)
            .map(|(file, id)| build(file, *id))
            .collect::<anyhow::Result<_>>()?;
        read = read.min(started.elapsed());
        let started = Instant::now();
        block_bytes = 0;
        for (builder, file) in builders.into_iter().zip(&files) {
            let (block, index) = builder.finish(file.size()?);
            block_bytes += block.len() as u64;
            std::hint::black_box(index);
        }
        finish = finish.min(started.elapsed());
    }
    let per_value = |d: Duration| d.as_nanos() as f64 / values as f64;
    println!(
        "{values} values in {} segments ({} series), rows {:.2} bytes per value, block {:.2}",
        segments.len(),
        AGENTS * host::SAMPLES as u64,
        row_bytes as f64 / values as f64,
        block_bytes as f64 / values as f64,
    );
    println!("| part | ns per value |");
    println!("|---|---|");
    println!("| reading the rows into columns | {:.1} |", per_value(read));
    println!("| finishing the block | {:.1} |", per_value(finish));
    println!("| compressing a segment, in all | {:.1} |", per_value(read + finish));

    // The floor of any compression: general-purpose zstd over the row
    // files as they are, from very fast levels (−50) up, each file in one
    // call (best of three).
    let raw: Vec<Vec<u8>> = segments
        .iter()
        .map(|id| std::fs::read(catalog::row_path(&dir, *id)))
        .collect::<std::io::Result<_>>()?;
    println!();
    println!("| zstd over the rows, level | ns per value | bytes per value |");
    println!("|---|---|---|");
    for level in [-50, -10, -3, 1, 3] {
        let (mut best, mut bytes) = (Duration::MAX, 0);
        for _ in 0..3 {
            let started = Instant::now();
            bytes = 0;
            for file in &raw {
                bytes += zstd::bulk::compress(file, level)?.len() as u64;
            }
            best = best.min(started.elapsed());
        }
        println!("| {level} | {:.1} | {:.2} |", per_value(best), bytes as f64 / values as f64);
    }
    Ok(())
}
