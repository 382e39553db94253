//! Turning the row records of a closed segment into a compressed block
//! and its index (the compactor's work, without the files).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

use wasmtap_protocol::compact::FieldKind;
use wasmtap_protocol::message::{Sample, Value};
use wasmtap_protocol::record;

use super::Header;
use super::chunk::{ChunkWriter, MAX_SAMPLES, SeriesDef};
use super::index::{ChunkRef, Index, TableRef};
use super::table::{self, BatchMeta, runs_of};
use crate::store::StoredBatch;

fn kind_of(v: &Value) -> FieldKind {
    match v {
        Value::Gauge(_) => FieldKind::Gauge,
        Value::Counter(_) => FieldKind::Counter,
        Value::Text(_) => FieldKind::Text,
    }
}

/// The hash of the series `sample` of `agent` belongs to.
fn series_hash(agent: &str, s: &Sample) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    agent.hash(&mut h);
    s.collector.hash(&mut h);
    s.labels.hash(&mut h);
    for (name, v) in &s.values {
        name.hash(&mut h);
        kind_of(v).hash(&mut h);
    }
    h.finish()
}

fn is_series(def: &SeriesDef, agent: &str, s: &Sample) -> bool {
    def.agent == agent
        && *def.collector == *s.collector
        && def.labels.len() == s.labels.len()
        && def.labels.iter().zip(s.labels.iter()).all(|(a, b)| a == b)
        && def.fields.len() == s.values.len()
        && def.fields.iter().zip(&s.values).all(|((n, k), (m, v))| **n == **m && *k == kind_of(v))
}

#[derive(Debug)]
struct Series {
    def: SeriesDef,
    chunk: ChunkWriter,
}

/// Collects a segment's records into a block; see the module docs.
#[derive(Debug)]
pub struct Builder {
    batches: Vec<BatchMeta>,
    series: Vec<Series>,
    by_hash: HashMap<u64, Vec<u32>>,
    /// Finished chunks: series and record payload.
    chunks: Vec<(u64, Vec<u8>)>,
    agents: HashMap<String, Arc<str>>,
    header: Header,
}

impl Builder {
    /// A block for segment `segment`.
    pub fn new(segment: u64) -> Self {
        Self {
            batches: Vec::new(),
            series: Vec::new(),
            by_hash: HashMap::new(),
            chunks: Vec::new(),
            agents: HashMap::new(),
            header: Header { segment, min_time: u64::MAX, ..Header::default() },
        }
    }

    /// Batches added so far.
    pub fn batches(&self) -> usize {
        self.batches.len()
    }

    fn series_of(&mut self, agent: &str, s: &Sample) -> u32 {
        let hash = series_hash(agent, s);
        let ids = self.by_hash.entry(hash).or_default();
        if let Some(&id) =
            ids.iter().find(|&&id| is_series(&self.series[id as usize].def, agent, s))
        {
            return id;
        }
        let id = u32::try_from(self.series.len()).unwrap_or(u32::MAX);
        ids.push(id);
        let def = SeriesDef {
            agent: agent.to_owned(),
            collector: s.collector.to_string(),
            labels: s.labels.to_vec(),
            fields: s.values.iter().map(|(n, v)| (n.to_string(), kind_of(v))).collect(),
        };
        let chunk = ChunkWriter::new(def.fields.iter().map(|(_, k)| *k));
        self.series.push(Series { def, chunk });
        id
    }

    /// Adds the batch of the row record at `rows` of the row file.
    pub fn add(&mut self, rows: Range<u64>, record: &StoredBatch) {
        let batch = self.batches.len() as u64;
        let mut ids = Vec::with_capacity(record.batch.samples.len());
        for s in &record.batch.samples {
            let id = self.series_of(&record.agent, s);
            ids.push(u64::from(id));
            let series = &mut self.series[id as usize];
            series.chunk.push(batch, s.time_ms, s.values.iter().map(|(_, v)| v.clone()));
            if series.chunk.len() >= MAX_SAMPLES {
                let kinds = series.def.fields.iter().map(|(_, k)| *k);
                let full = std::mem::replace(&mut series.chunk, ChunkWriter::new(kinds));
                let mut payload = Vec::new();
                full.finish(u64::from(id), &series.def, &mut payload);
                self.chunks.push((u64::from(id), payload));
            }
            let h = &mut self.header;
            h.samples += 1;
            h.values +=
                s.values.iter().filter(|(_, v)| !matches!(v, Value::Text(_))).count() as u64;
            h.min_time = h.min_time.min(s.time_ms);
            h.max_time = h.max_time.max(s.time_ms);
        }
        let agent = match self.agents.get(record.agent.as_str()) {
            Some(a) => a.clone(),
            None => {
                let a: Arc<str> = Arc::from(record.agent.as_str());
                self.agents.insert(record.agent.clone(), a.clone());
                a
            }
        };
        self.header.newest_received = self.header.newest_received.max(record.received_ms);
        self.batches.push(BatchMeta {
            agent,
            session: record.session,
            seq: record.batch.seq,
            received_ms: record.received_ms,
            rows,
            samples: ids.len() as u64,
            runs: runs_of(ids.into_iter()),
        });
    }

    /// Notes `bytes` of damaged row records that are not carried over.
    pub fn damaged(&mut self, bytes: u64) {
        self.header.damaged_bytes += bytes;
    }

    /// The block file's bytes and its index, for a row file of `row_len` bytes.
    pub fn finish(mut self, row_len: u64) -> (Vec<u8>, Index) {
        for (id, s) in self.series.iter_mut().enumerate() {
            if !s.chunk.is_empty() {
                let kinds = s.def.fields.iter().map(|(_, k)| *k);
                let last = std::mem::replace(&mut s.chunk, ChunkWriter::new(kinds));
                let mut payload = Vec::new();
                last.finish(id as u64, &s.def, &mut payload);
                self.chunks.push((id as u64, payload));
            }
        }
        // Each series' chunks together, in the order they were filled.
        self.chunks.sort_by_key(|(id, _)| *id);
        let header = Header {
            row_len,
            batches: self.batches.len() as u64,
            series: self.series.len() as u64,
            ..self.header
        };
        let mut out = Vec::new();
        record::append_with(&mut out, |o| header.encode(o));
        let mut index = Index { header, ..Index::default() };
        for (i, part) in self.batches.chunks(table::PART).enumerate() {
            let (offset, first) = (out.len() as u64, (i * table::PART) as u64);
            record::append_with(&mut out, |o| table::encode(first, part, o));
            let len = out.len() as u64 - offset;
            index.tables.push(TableRef { offset, len, first, count: part.len() as u64 });
        }
        for (id, payload) in &self.chunks {
            let offset = out.len() as u64;
            record::encode(payload, &mut out);
            let def = self.series[*id as usize].def.clone();
            let parsed = super::chunk::parse(payload);
            let (count, min_time, max_time) =
                parsed.map(|c| (c.count as u64, c.min_time, c.max_time)).unwrap_or((0, 0, 0));
            let len = out.len() as u64 - offset;
            index.chunks.push(ChunkRef {
                offset,
                len,
                series: *id,
                def,
                count,
                min_time,
                max_time,
            });
        }
        index.block_len = out.len() as u64;
        (out, index)
    }
}
