//! The compact decoder under hostile input that is shaped like the real
//! thing, so that it gets past the dictionary checks into the decoder's
//! body: samples that mostly name defined series with the right number of
//! texts, and numbers that are mostly well-tagged (deltas, decimals at any
//! scale with mantissas up to `i64::MIN`, XORed bits), a few of them wrong.
//! The test counts where each case ended and asserts that most reached the
//! numbers, so it cannot quietly stop testing the body.

use std::cell::Cell;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use wasmtap_protocol::compact::{
    CompactHead, CompactSample, DecodeError, Decoder, Encoder, FieldKind, SeriesDef,
};
use wasmtap_protocol::message::{Batch, Value};
use wasmtap_protocol::simple::{NumericPayload, NumericWriter};

/// A number as the decoder reads it: a tag and what follows.
#[derive(Debug, Clone)]
enum Num {
    Delta(i64),
    Decimal(u8, i64),
    Bits(u64),
    Word(u64),
}

fn num() -> impl Strategy<Value = Num> {
    let mantissa = prop_oneof![
        4 => -1000i64..1000,
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, 1 << 53, -(1 << 53), (1 << 53) + 1]),
        1 => any::<i64>(),
    ];
    prop_oneof![
        3 => (-3i64..3).prop_map(Num::Delta),
        1 => any::<i64>().prop_map(Num::Delta),
        12 => (0u8..=9, -1000i64..1000).prop_map(|(e, m)| Num::Decimal(e, m)),
        2 => (0u8..=40, mantissa).prop_map(|(e, m)| Num::Decimal(e, m)),
        5 => any::<u64>().prop_map(Num::Bits),
        1 => any::<u64>().prop_map(Num::Word),
    ]
}

fn put(w: &mut NumericWriter, n: &Num) {
    match *n {
        Num::Delta(d) => w.u64((((d << 1) ^ (d >> 63)) as u64) << 1),
        Num::Decimal(e, m) => w.u64(1 | (u64::from(e) << 2)).i64(m),
        Num::Bits(b) => w.u64(3).u64(b),
        Num::Word(x) => w.u64(x),
    };
}

fn def() -> impl Strategy<Value = SeriesDef> {
    let kind = prop::sample::select(vec![FieldKind::Gauge, FieldKind::Counter, FieldKind::Text]);
    (
        "[a-z]{0,6}",
        prop::collection::vec(("[a-z]{0,4}", "(?s).{0,6}"), 0..3),
        prop::collection::vec(("[a-z]{0,6}", kind), 0..5),
    )
        .prop_map(|(collector, labels, fields)| SeriesDef { collector, labels, fields })
}

/// One sample as sent: which series (mostly a defined one), its time
/// change, its texts (mostly the right count) and its numbers (mostly one
/// per numeric field).
#[derive(Debug, Clone)]
struct Spec {
    series: Result<Index, u32>,
    time: i64,
    exact: bool,
    texts: Vec<String>,
    numbers: Vec<Num>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop_oneof![19 => any::<Index>().prop_map(Ok), 1 => any::<u32>().prop_map(Err)],
        prop_oneof![3 => Just(0i64), 1 => any::<i64>()],
        prop::bool::weighted(0.9),
        prop::collection::vec("[a-z]{0,4}", 0..3),
        prop::collection::vec(num(), 0..6),
    )
        .prop_map(|(series, time, exact, texts, numbers)| Spec {
            series,
            time,
            exact,
            texts,
            numbers,
        })
}

/// A session: its dictionary, then one to three batches of samples.
fn session() -> impl Strategy<Value = (Vec<SeriesDef>, Vec<Vec<Spec>>)> {
    (
        prop::collection::vec(def(), 1..4),
        prop::collection::vec(prop::collection::vec(spec(), 0..5), 1..4),
    )
}

/// The head and numbers of `specs`, fitted to `defs` where a spec says so.
fn build(
    seq: u64,
    defs: &[SeriesDef],
    new_defs: Vec<SeriesDef>,
    specs: &[Spec],
) -> (CompactHead, Vec<NumericPayload>) {
    let mut w = NumericWriter::new();
    let mut all_texts = Vec::new();
    let samples = specs
        .iter()
        .map(|s| {
            let series = match &s.series {
                Ok(i) => i.index(defs.len()),
                Err(raw) => *raw as usize,
            };
            let def = defs.get(series);
            let (mut texts, mut numbers) = (s.texts.clone(), s.numbers.clone());
            if let (Some(def), true) = (def, s.exact) {
                let count = |text: bool| {
                    def.fields.iter().filter(|(_, k)| (*k == FieldKind::Text) == text).count()
                };
                texts.resize(count(true), String::new());
                numbers.resize(count(false), Num::Decimal(0, 7));
            }
            for n in &numbers {
                put(&mut w, n);
            }
            all_texts.extend(texts);
            CompactSample { series: u32::try_from(series).unwrap_or(u32::MAX), time: s.time }
        })
        .collect();
    let head = CompactHead { seq, reset: false, defs: new_defs, samples, texts: all_texts };
    (head, vec![w.finish()])
}

/// Floats compared bit for bit.
fn same(a: &Batch, b: &Batch) -> bool {
    let bits = |v: &Value| match v {
        Value::Gauge(x) | Value::Counter(x) => Some(x.to_bits()),
        Value::Text(_) => None,
    };
    a.seq == b.seq
        && a.samples.len() == b.samples.len()
        && a.samples.iter().zip(&b.samples).all(|(s, t)| {
            s.collector == t.collector
                && s.time_ms == t.time_ms
                && s.labels == t.labels
                && s.values.len() == t.values.len()
                && s.values.iter().zip(&t.values).all(|((n, x), (m, y))| {
                    n == m && bits(x) == bits(y) && (bits(x).is_some() || x == y)
                })
        })
}

#[test]
fn structured_hostile_input_reaches_the_decoder_body_and_never_panics() {
    let cases = 1024;
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    // Batches decoded with at least one number; refused in the numbers;
    // refused before them (dictionary, series, texts).
    let (numbers_ok, numbers_refused, refused_before) = (Cell::new(0), Cell::new(0), Cell::new(0));
    runner
        .run(&session(), |(defs, batches)| {
            let mut dec = Decoder::new();
            let mut decoded = Vec::new();
            for (i, specs) in batches.iter().enumerate() {
                let new_defs = if i == 0 { defs.clone() } else { Vec::new() };
                let (head, numbers) = build(i as u64, &defs, new_defs, specs);
                let sent = numbers.iter().map(NumericPayload::len).sum::<usize>();
                match dec.decode(head, &numbers) {
                    Ok(b) => {
                        prop_assert_eq!(b.samples.len(), specs.len());
                        if sent > 0 {
                            numbers_ok.set(numbers_ok.get() + 1);
                        }
                        decoded.push(b);
                    }
                    Err(DecodeError::Numbers(_)) => {
                        numbers_refused.set(numbers_refused.get() + 1);
                        break;
                    }
                    Err(_) => {
                        refused_before.set(refused_before.get() + 1);
                        break;
                    }
                }
            }
            // Whatever decoded survives the codec again, bit for bit.
            let (mut enc, mut again) = (Encoder::new(), Decoder::new());
            for b in &decoded {
                let (head, numbers) = enc.encode(b);
                let back = again.decode(head, &numbers).expect("own encoding decodes");
                prop_assert!(same(b, &back), "{:?} != {:?}", b, back);
            }
            Ok(())
        })
        .expect("no case fails");
    let (ok, refused, before) = (numbers_ok.get(), numbers_refused.get(), refused_before.get());
    eprintln!(
        "compact decoder: {ok} batches decoded numbers, {refused} refused in the numbers, {before} refused before them, over {cases} sessions"
    );
    assert!(ok >= cases as usize / 4, "too few batches decode their numbers: {ok}");
    assert!(refused >= cases as usize / 10, "too few reach a bad number: {refused}");
}
