use super::*;
use crate::decimal::MAX_MANTISSA;
use crate::message::{self, Batch, Sample, Value};

fn sample(collector: &str, cpu: &str, t: u64, values: &[(&str, Value)]) -> Sample {
    Sample {
        collector: collector.into(),
        time_ms: t,
        labels: vec![("cpu".into(), cpu.into())].into(),
        values: values.iter().map(|(n, v)| (FieldName::from(*n), v.clone())).collect(),
    }
}

fn wire_size(head: &CompactHead, numbers: &[NumericPayload]) -> usize {
    message::encode(head).len() + numbers.iter().map(NumericPayload::len).sum::<usize>()
}

#[test]
fn round_trips_across_batches_with_one_dictionary() {
    let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
    for seq in 0..5u64 {
        let t = 1_700_000_000_000 + seq * 10_000;
        let batch = Batch {
            seq,
            samples: vec![
                sample(
                    "cpu",
                    "0",
                    t,
                    &[
                        ("user", Value::Counter(1000.0 + seq as f64 * 7.0)),
                        ("state", Value::Text(format!("s{seq}"))),
                        ("util", Value::Gauge(0.25 * seq as f64 + 0.1)),
                    ],
                ),
                sample("cpu", "1", t + 1, &[("user", Value::Counter(5.0))]),
            ],
        };
        let (head, numbers) = enc.encode(&batch);
        assert_eq!(head.defs.len(), if seq == 0 { 2 } else { 0 });
        let head = message::decode(&message::encode(&head)).expect("head codec");
        let got = dec.decode(head, &numbers).expect("decodes");
        let (a, b) = (&got.samples[0].values[0].0, &got.samples[1].values[0].0);
        assert!(std::sync::Arc::ptr_eq(a, b), "series share one copy of a field name");
        assert_eq!(got, batch);
    }
    assert_eq!((enc.series(), dec.series()), (2, 2));
}

#[test]
fn every_kind_of_float_survives_bit_for_bit() {
    let specials = [
        0.0,
        -0.0,
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        1e300,
        0.1,
        0.1 + 0.2,
        123.456_789_012_3,
        9_007_199_254_740_993.0,
        -42.5,
        1e9,
    ];
    let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
    for (seq, v) in specials.iter().chain(specials.iter().rev()).enumerate() {
        let batch = Batch {
            seq: seq as u64,
            samples: vec![sample("c", "0", 0, &[("g", Value::Gauge(*v))])],
        };
        let (head, numbers) = enc.encode(&batch);
        let back = dec.decode(head, &numbers).expect("decodes");
        let Value::Gauge(got) = back.samples[0].values[0].1 else { panic!("kind changed") };
        assert_eq!(got.to_bits(), v.to_bits(), "{v:?}");
    }
}

#[test]
fn steady_state_costs_about_a_byte_per_number() {
    let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
    let mut sizes = Vec::new();
    for seq in 0..20u64 {
        let t = 1_700_000_000_000 + seq * 5_000;
        let samples = (0..8)
            .map(|cpu| {
                let step = seq as f64;
                sample(
                    "cpu",
                    &cpu.to_string(),
                    t,
                    &[
                        ("user", Value::Counter(123_456.0 + step * 40.0)),
                        ("system", Value::Counter(65_432.0 + step * 11.0)),
                        ("idle", Value::Counter(9_876_543.0 + step * 450.0)),
                        ("load", Value::Gauge(0.52 + (seq % 3) as f64 / 100.0)),
                    ],
                )
            })
            .collect();
        let batch = Batch { seq, samples };
        let (head, numbers) = enc.encode(&batch);
        sizes.push(wire_size(&head, &numbers));
        assert_eq!(dec.decode(head, &numbers), Ok(batch));
    }
    // 32 numbers per batch: in steady state each costs one or two bytes,
    // and each sample's series number and time about three more.
    let steady = sizes[10];
    assert!(steady < 32 * 3, "steady batch is {steady} bytes: {sizes:?}");
    assert!(sizes[0] > steady * 3, "first batch carries the dictionary: {sizes:?}");
}

#[test]
fn the_dictionary_starts_over_when_full() {
    let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
    let big = |seq: u64, base: usize| Batch {
        seq,
        samples: (0..MAX_SERIES / 2 + 1)
            .map(|i| sample("c", &(base + i).to_string(), 1, &[("v", Value::Gauge(1.0))]))
            .collect(),
    };
    let (h1, n1) = enc.encode(&big(1, 0));
    assert!(!h1.reset);
    dec.decode(h1, &n1).expect("first");
    let (h2, n2) = enc.encode(&big(2, MAX_SERIES));
    assert!(h2.reset);
    dec.decode(h2, &n2).expect("second");
    assert_eq!(dec.series(), MAX_SERIES / 2 + 1);
}

#[test]
fn hostile_heads_are_errors_not_panics() {
    let mut dec = Decoder::new();
    let head = |samples, defs, texts: &[&str]| CompactHead {
        seq: 1,
        reset: false,
        defs,
        samples,
        texts: texts.iter().map(|t| t.to_string()).collect(),
    };
    let def = SeriesDef {
        collector: "c".into(),
        labels: vec![],
        fields: vec![("g".into(), FieldKind::Gauge), ("t".into(), FieldKind::Text)],
    };
    let s = |series| CompactSample { series, time: 0 };
    let one_number = || {
        let mut w = NumericWriter::new();
        w.u64(1).i64(5);
        vec![w.finish()]
    };
    assert_eq!(dec.decode(head(vec![s(7)], vec![], &[]), &[]), Err(DecodeError::UnknownSeries(7)));
    for (texts, error) in [
        (&[][..], DecodeError::Texts("fewer texts than fields")),
        (&["x", "y"], DecodeError::Texts("more texts than fields")),
    ] {
        let mut dec = Decoder::new();
        assert_eq!(
            dec.decode(head(vec![s(0)], vec![def.clone()], texts), &one_number()),
            Err(error)
        );
    }
    let mut dec = Decoder::new();
    assert!(matches!(
        dec.decode(head(vec![s(0)], vec![def.clone()], &["x"]), &[]),
        Err(DecodeError::Numbers(_))
    ));
    // A delta with no decimal before it, an unknown tag, a scale out of range.
    for words in [[0u64, 0], [7, 0], [1 | (10 << 2), 5]] {
        let mut w = NumericWriter::new();
        w.u64(words[0]).u64(words[1]);
        let mut dec = Decoder::new();
        let r = dec.decode(head(vec![s(0)], vec![def.clone()], &["x"]), &[w.finish()]);
        assert!(matches!(r, Err(DecodeError::Numbers(_))), "{words:?}: {r:?}");
    }
    let mut dec = Decoder::new();
    let too_many = vec![def; MAX_SERIES + 1];
    assert_eq!(dec.decode(head(vec![], too_many, &[]), &[]), Err(DecodeError::TooManySeries));
}

#[test]
fn a_decoder_refuses_a_dictionary_over_its_memory_limit() {
    let mut enc = Encoder::new();
    let mut dec = Decoder::with_limit(10_000);
    let batch = |seq: u64, n: usize| Batch {
        seq,
        samples: (0..n)
            .map(|i| sample("c", &format!("{i:0>100}"), 1, &[("v", Value::Gauge(1.0))]))
            .collect(),
    };
    let (h, n) = enc.encode(&batch(1, 10));
    dec.decode(h, &n).expect("small dictionary");
    let (h, n) = enc.encode(&batch(2, 100));
    assert_eq!(dec.decode(h, &n), Err(DecodeError::TooLarge(10_000)));
}

#[test]
fn a_mantissa_of_i64_min_is_refused_not_a_panic() {
    let def = SeriesDef {
        collector: "c".into(),
        labels: vec![],
        fields: vec![("g".into(), FieldKind::Gauge)],
    };
    let head = |n: usize, defs: Vec<SeriesDef>| CompactHead {
        seq: 1,
        reset: false,
        defs,
        samples: vec![CompactSample { series: 0, time: 0 }; n],
        texts: vec![],
    };
    // A decimal at a new scale whose mantissa is i64::MIN.
    let mut w = NumericWriter::new();
    w.u64(1).i64(i64::MIN);
    let r = Decoder::new().decode(head(1, vec![def.clone()]), &[w.finish()]);
    assert_eq!(r, Err(DecodeError::Numbers("decimal out of range")));
    // The largest delta a header word can carry (about -2^62), out of range.
    let mut w = NumericWriter::new();
    w.u64(1).i64(-1).u64(u64::MAX - 1);
    let r = Decoder::new().decode(head(2, vec![def.clone()]), &[w.finish()]);
    assert_eq!(r, Err(DecodeError::Numbers("delta out of range")));
    // The largest mantissas the codec sends still decode.
    for m in [MAX_MANTISSA, -MAX_MANTISSA] {
        let mut w = NumericWriter::new();
        w.u64(1).i64(m);
        let b = Decoder::new().decode(head(1, vec![def.clone()]), &[w.finish()]).expect("in range");
        assert_eq!(b.samples[0].values[0].1, Value::Gauge(m as f64));
    }
}

#[test]
fn rounded_values_keep_their_scale() {
    // Two-decimal values, some with trailing zeros (12.3, 12.0), round-trip
    // bit for bit and cost a byte each after the first: a trailing zero does
    // not switch the series to a shorter scale and back.
    let values = [12.35, 12.3, 12.2, 12.25, 12.1, 12.0, 12.05, 12.1];
    let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
    let mut sizes = Vec::new();
    for (seq, v) in values.iter().enumerate() {
        let t = 1_700_000_000_000 + seq as u64 * 1_000;
        let batch = Batch {
            seq: seq as u64,
            samples: vec![sample("cpu", "0", t, &[("user", Value::Gauge(*v))])],
        };
        let (head, numbers) = enc.encode(&batch);
        let payload: usize = numbers.iter().map(|p| p.len()).sum();
        sizes.push(payload);
        assert_eq!(dec.decode(head, &numbers), Ok(batch));
    }
    assert!(sizes[1..].iter().all(|s| *s == sizes[1]), "one size after the first: {sizes:?}");
    assert!(sizes[1] < sizes[0], "{sizes:?}");
}
