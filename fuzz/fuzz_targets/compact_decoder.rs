//! The compact decoder fed a session of batches built from `arbitrary`
//! heads and bodies shaped like the real thing: series definitions, then
//! samples that mostly name a defined series with the right number of
//! texts, and numbers written with the codec's own tags (deltas, decimals
//! at any scale with any mantissa, `i64::MIN` included, XORed bits, raw
//! words), mostly one per numeric field. So most inputs get past the
//! dictionary checks and into the decoding of numbers.
//!
//! Nothing panics; a session stops at its first error (as a proxy ends the
//! session); every batch that decodes survives the codec again, bit for
//! bit.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wasmtap_protocol::compact::{
    CompactHead, CompactSample, Decoder, Encoder, FieldKind, SeriesDef,
};
use wasmtap_protocol::message;
use wasmtap_protocol::simple::{NumericPayload, NumericWriter};

#[derive(Debug, Clone, Arbitrary)]
enum Num {
    Delta(i64),
    Decimal(u8, i64),
    Bits(u64),
    Word(u64),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Kind {
    Gauge,
    Counter,
    Text,
}

#[derive(Debug, Arbitrary)]
struct Def {
    collector: String,
    labels: Vec<(String, String)>,
    fields: Vec<(String, Kind)>,
}

#[derive(Debug, Arbitrary)]
struct SampleSpec {
    /// Most of the time the index of a defined series; else a raw number.
    series: u16,
    raw_series: bool,
    time: i64,
    /// Fit texts and numbers to the series' fields.
    fit: bool,
    texts: Vec<String>,
    numbers: Vec<Num>,
}

#[derive(Debug, Arbitrary)]
struct BatchSpec {
    reset: bool,
    defs: Vec<Def>,
    samples: Vec<SampleSpec>,
    /// Where the numbers are split into a second payload.
    split: u8,
}

fn put(w: &mut NumericWriter, n: &Num) {
    match *n {
        Num::Delta(d) => w.u64((((d << 1) ^ (d >> 63)) as u64) << 1),
        Num::Decimal(e, m) => w.u64(1 | (u64::from(e % 16) << 2)).i64(m),
        Num::Bits(b) => w.u64(3).u64(b),
        Num::Word(x) => w.u64(x),
    };
}

fn def(d: Def) -> SeriesDef {
    let kind = |k| match k {
        Kind::Gauge => FieldKind::Gauge,
        Kind::Counter => FieldKind::Counter,
        Kind::Text => FieldKind::Text,
    };
    SeriesDef {
        collector: d.collector,
        labels: d.labels.into_iter().take(4).collect(),
        fields: d.fields.into_iter().take(8).map(|(n, k)| (n, kind(k))).collect(),
    }
}

fuzz_target!(|session: Vec<BatchSpec>| {
    let mut dec = Decoder::with_limit(1 << 20);
    // The dictionary as the decoder should hold it, to fit samples to it.
    let mut known: Vec<SeriesDef> = Vec::new();
    let mut decoded = Vec::new();
    for (seq, spec) in session.into_iter().take(6).enumerate() {
        if spec.reset {
            known.clear();
        }
        let defs: Vec<SeriesDef> = spec.defs.into_iter().take(8).map(def).collect();
        known.extend(defs.iter().cloned());
        let mut numbers = Vec::new();
        let mut all_texts = Vec::new();
        let samples = spec
            .samples
            .into_iter()
            .take(32)
            .map(|s| {
                let series = match (s.raw_series, known.len()) {
                    (false, n) if n > 0 => usize::from(s.series) % n,
                    _ => usize::from(s.series),
                };
                let (mut texts, mut nums) = (s.texts, s.numbers);
                if let (true, Some(d)) = (s.fit, known.get(series)) {
                    let count = |text: bool| {
                        d.fields.iter().filter(|(_, k)| (*k == FieldKind::Text) == text).count()
                    };
                    texts.resize(count(true), String::new());
                    nums.resize(count(false), Num::Decimal(0, 1));
                }
                numbers.extend(nums.into_iter().take(16));
                all_texts.extend(texts);
                CompactSample { series: series as u32, time: s.time }
            })
            .collect();
        let head =
            CompactHead { seq: seq as u64, reset: spec.reset, defs, samples, texts: all_texts };
        // The head travels sealed: it must survive its own codec first.
        let head: CompactHead =
            message::decode(&message::encode(&head)).expect("a head round-trips");
        let split = usize::from(spec.split).min(numbers.len());
        let payloads: Vec<NumericPayload> = [&numbers[..split], &numbers[split..]]
            .iter()
            .map(|part| {
                let mut w = NumericWriter::new();
                for n in *part {
                    put(&mut w, n);
                }
                w.finish()
            })
            .collect();
        match dec.decode(head, &payloads) {
            Ok(batch) => decoded.push(batch),
            Err(_) => break,
        }
    }
    let (mut enc, mut again) = (Encoder::new(), Decoder::new());
    for b in &decoded {
        let (head, numbers) = enc.encode(b);
        let back = again.decode(head, &numbers).expect("own encoding decodes");
        assert_eq!(message::encode(&back), message::encode(b));
    }
});
