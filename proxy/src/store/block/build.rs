//! Turning the row records of a closed segment into a compressed block
//! and its index (the compactor's work, without the files).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use wasmtap_protocol::compact::FieldKind;
use wasmtap_protocol::record;

use super::Header;
use super::chunk::{ChunkWriter, MAX_SAMPLES, Packer, SeriesDef};
use super::index::{ChunkRef, Index, TableRef};
use super::table::{self, BatchMeta, runs_of};
use crate::store::format::{self, FormatError, SampleView, View, Viewed};

/// A hash of bytes, fast and good enough for a table whose hits are
/// checked (FxHash's multiply-rotate, eight bytes at a time).
#[derive(Debug, Default, Clone, Copy)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        let mut w = [0u8; 8];
        let rest = chunks.remainder();
        w[..rest.len()].copy_from_slice(rest);
        self.0 =
            (self.0.rotate_left(5) ^ u64::from_le_bytes(w) ^ bytes.len() as u64).wrapping_mul(K);
    }
}

#[derive(Debug)]
struct Series {
    def: SeriesDef,
    /// Its agent, as the builder holds it (compared by address).
    agent: Arc<str>,
    /// Its field layout's number in the builder.
    layout: u32,
    /// Its labels as a row record encodes them (compared in place).
    labels: Box<[u8]>,
    chunk: ChunkWriter,
}

impl Series {
    fn is(&self, agent: &Arc<str>, layout: u32, s: &SampleView<'_>) -> bool {
        self.layout == layout
            && Arc::ptr_eq(&self.agent, agent)
            && *self.labels == *s.labels_bytes()
            && self.def.collector == s.collector
    }
}

/// The field layouts met in a segment, each numbered once: a sample's
/// layout is then compared as a number, not field by field.
#[derive(Debug, Default)]
struct Layouts {
    all: Vec<Box<[(String, FieldKind)]>>,
    by_hash: hashbrown::HashMap<u64, Vec<u32>>,
}

impl Layouts {
    /// The number of `layout`, whose hash is `hash`.
    fn number(&mut self, layout: &[(&str, FieldKind)], hash: u64) -> u32 {
        let ids = self.by_hash.entry(hash).or_default();
        let same = |id: &&u32| {
            let known = &self.all[**id as usize];
            known.len() == layout.len()
                && known.iter().zip(layout).all(|((n, k), (m, l))| n == m && k == l)
        };
        if let Some(&id) = ids.iter().find(same) {
            return id;
        }
        let id = u32::try_from(self.all.len()).unwrap_or(u32::MAX);
        ids.push(id);
        self.all.push(layout.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect());
        id
    }
}

/// Collects a segment's records into a block; see the module docs.
#[derive(Debug)]
pub struct Builder {
    batches: Vec<BatchMeta>,
    series: Vec<Series>,
    /// Series by the hash of their parts (a fast hash: the keys are hashes already).
    by_hash: hashbrown::HashMap<u64, Vec<u32>>,
    /// Finished chunks: series and record payload.
    chunks: Vec<(u64, Vec<u8>)>,
    packer: Packer,
    agents: HashMap<String, Arc<str>>,
    layouts: Layouts,
    header: Header,
}

impl Builder {
    /// A block for segment `segment`.
    pub fn new(segment: u64) -> Self {
        Self {
            batches: Vec::new(),
            series: Vec::new(),
            by_hash: hashbrown::HashMap::new(),
            chunks: Vec::new(),
            packer: Packer::default(),
            agents: HashMap::new(),
            layouts: Layouts::default(),
            header: Header { segment, min_time: u64::MAX, ..Header::default() },
        }
    }

    /// Batches added so far.
    pub fn batches(&self) -> usize {
        self.batches.len()
    }

    fn series_of(
        &mut self,
        agent: &Arc<str>,
        s: &SampleView<'_>,
        layout: &[(&str, FieldKind)],
        (number, hash): (u32, u64),
    ) -> u32 {
        let mut h = Fx(hash);
        h.add(agent.as_bytes());
        h.add(s.collector.as_bytes());
        h.add(s.labels_bytes());
        let ids = self.by_hash.entry(h.0).or_default();
        if let Some(&id) = ids.iter().find(|&&id| self.series[id as usize].is(agent, number, s)) {
            return id;
        }
        let id = u32::try_from(self.series.len()).unwrap_or(u32::MAX);
        ids.push(id);
        let def = SeriesDef {
            agent: agent.to_string(),
            collector: s.collector.to_owned(),
            labels: s.labels().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            fields: layout.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect(),
        };
        let chunk = ChunkWriter::new(def.fields.iter().map(|(_, k)| *k));
        let series = Series {
            def,
            agent: agent.clone(),
            layout: number,
            labels: s.labels_bytes().into(),
            chunk,
        };
        self.series.push(series);
        id
    }

    /// The agent's name as this block holds it.
    fn agent(&mut self, agent: &str) -> Arc<str> {
        match self.agents.get(agent) {
            Some(a) => a.clone(),
            None => {
                let a: Arc<str> = Arc::from(agent);
                self.agents.insert(agent.to_owned(), a.clone());
                a
            }
        }
    }

    /// Adds the batch of the row record at `rows` of the row file, its
    /// payload `payload` (either format).
    pub fn add(&mut self, rows: Range<u64>, payload: &[u8]) -> Result<(), FormatError> {
        match format::view(payload)? {
            Viewed::View(v) => self.add_view(rows, v),
            Viewed::Decoded(record) => {
                // The first format: read through the current one.
                let mut again = Vec::new();
                format::encode(&record, &mut again);
                match format::view(&again)? {
                    Viewed::View(v) => self.add_view(rows, v),
                    Viewed::Decoded(_) => Err(FormatError::UnknownVersion(0)),
                }
            }
        }
    }

    fn add_view(&mut self, rows: Range<u64>, mut v: View<'_>) -> Result<(), FormatError> {
        let batch = self.batches.len() as u64;
        // Each of the record's layouts: its number in the block, and its hash.
        let layouts: Vec<(u32, u64)> = (0..v.layouts())
            .map(|i| {
                let mut h = Fx::default();
                for (name, kind) in v.layout(i) {
                    h.add(name.as_bytes());
                    h.add(&[*kind as u8]);
                }
                (self.layouts.number(v.layout(i), h.0), h.0)
            })
            .collect();
        let agent = self.agent(v.agent);
        let mut ids = Vec::new();
        while let Some(s) = v.next_sample()? {
            let layout = v.layout(s.layout);
            let id = self.series_of(&agent, &s, layout, layouts[s.layout]);
            ids.push(u64::from(id));
            let series = &mut self.series[id as usize];
            let numeric = layout.iter().filter(|(_, k)| *k != FieldKind::Text).count();
            series.chunk.push(batch, s.time_ms, s.cells(layout));
            if series.chunk.len() >= MAX_SAMPLES {
                let kinds = series.def.fields.iter().map(|(_, k)| *k);
                let full = std::mem::replace(&mut series.chunk, ChunkWriter::new(kinds));
                let mut payload = Vec::new();
                full.finish(u64::from(id), &series.def, &mut self.packer, &mut payload);
                self.chunks.push((u64::from(id), payload));
            }
            let h = &mut self.header;
            h.samples += 1;
            h.values += numeric as u64;
            h.min_time = h.min_time.min(s.time_ms);
            h.max_time = h.max_time.max(s.time_ms);
        }
        self.header.newest_received = self.header.newest_received.max(v.received_ms);
        self.batches.push(BatchMeta {
            agent,
            session: v.session,
            seq: v.seq,
            received_ms: v.received_ms,
            rows,
            samples: ids.len() as u64,
            runs: runs_of(ids.into_iter()),
        });
        Ok(())
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
                last.finish(id as u64, &s.def, &mut self.packer, &mut payload);
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
