use super::*;

fn field(name: &str, kind: wit::FieldKind) -> wit::Field {
    wit::Field {
        name: name.into(),
        kind,
        unit: String::new(),
        help: String::new(),
        precision: None,
    }
}

fn schema() -> Schema {
    Schema::from_descriptor(wit::Descriptor {
        name: "load".into(),
        version: "1".into(),
        default_interval_ms: 1000,
        fields: vec![
            field("load1", wit::FieldKind::Gauge),
            field("state", wit::FieldKind::Text),
            field("ctx", wit::FieldKind::Counter),
        ],
    })
    .expect("valid")
}

fn sample(numbers: Vec<(u32, f64)>, texts: Vec<(u32, &str)>) -> wit::Sample {
    wit::Sample {
        labels: vec![("cpu".into(), "0".into())],
        numbers: numbers.into_iter().map(|(field, value)| wit::Number { field, value }).collect(),
        texts: texts.into_iter().map(|(field, v)| wit::Text { field, value: v.into() }).collect(),
    }
}

#[test]
fn declared_values_pass_with_their_kind() {
    let out = schema()
        .enforce(
            vec![sample(vec![(0, 0.5), (2, 7.0)], vec![(1, "ok")])],
            42,
            &OutputLimits::default(),
        )
        .expect("within limits");
    assert_eq!(out.undeclared + out.wrong_kind, 0);
    let s = &out.samples[0];
    assert_eq!(&*s.collector, "load");
    assert_eq!(s.time_ms, 42);
    assert_eq!(
        s.values,
        vec![
            ("load1".into(), Value::Gauge(0.5)),
            ("ctx".into(), Value::Counter(7.0)),
            ("state".into(), Value::Text("ok".into()))
        ]
    );
}

#[test]
fn undeclared_and_mistyped_values_are_dropped_and_counted() {
    let out = schema()
        .enforce(
            vec![sample(vec![(9, 1.0), (1, 2.0)], vec![(0, "smuggled"), (7, "x"), (1, "fine")])],
            0,
            &OutputLimits::default(),
        )
        .expect("within limits");
    assert_eq!(out.undeclared, 2);
    assert_eq!(out.wrong_kind, 2);
    assert_eq!(out.samples[0].values, vec![("state".into(), Value::Text("fine".into()))]);
}

#[test]
fn caps_fail_the_call() {
    let limits = OutputLimits {
        max_samples: 1,
        max_label_len: 4,
        max_text_len: 3,
        ..OutputLimits::default()
    };
    let s = schema();
    assert!(matches!(
        s.enforce(vec![sample(vec![], vec![]), sample(vec![], vec![])], 0, &limits),
        Err(OutputError::TooMany { .. })
    ));
    let mut long = sample(vec![], vec![]);
    long.labels.push(("k".into(), "x".repeat(5)));
    assert!(matches!(
        s.enforce(vec![long], 0, &limits),
        Err(OutputError::TooLong { what: "label", .. })
    ));
    assert!(matches!(
        s.enforce(vec![sample(vec![], vec![(1, "long")])], 0, &limits),
        Err(OutputError::TooLong { .. })
    ));
}

#[test]
fn total_text_bytes_are_capped() {
    let limits = OutputLimits { max_text_bytes: 10, ..OutputLimits::default() };
    let ok = sample(vec![], vec![(1, "abcdefgh")]);
    assert!(schema().enforce(vec![ok], 0, &limits).is_err(), "label cpu=0 plus 8 bytes is 12");
    let small = wit::Sample {
        labels: vec![],
        numbers: vec![],
        texts: vec![wit::Text { field: 1, value: "0123456789".into() }],
    };
    assert!(schema().enforce(vec![small], 0, &limits).is_ok());
}

#[test]
fn bad_schemas_are_refused() {
    let d = |name: &str, fields| wit::Descriptor {
        name: name.into(),
        version: "1".into(),
        default_interval_ms: 1,
        fields,
    };
    assert!(matches!(Schema::from_descriptor(d("Load", vec![])), Err(SchemaError::BadName { .. })));
    assert!(matches!(Schema::from_descriptor(d("", vec![])), Err(SchemaError::BadName { .. })));
    assert!(matches!(
        Schema::from_descriptor(d(
            "l",
            vec![field("a", wit::FieldKind::Gauge), field("a", wit::FieldKind::Text)]
        )),
        Err(SchemaError::Duplicate(_))
    ));
    assert!(matches!(
        Schema::from_descriptor(d("l", vec![field("a b", wit::FieldKind::Gauge)])),
        Err(SchemaError::BadName { .. })
    ));
    let many = (0..=MAX_FIELDS).map(|i| field(&format!("f{i}"), wit::FieldKind::Gauge)).collect();
    assert!(matches!(Schema::from_descriptor(d("l", many)), Err(SchemaError::TooManyFields(_))));
}

#[test]
fn numbers_are_rounded_to_the_declared_precision() {
    let mut pct = field("busy", wit::FieldKind::Gauge);
    pct.precision = Some(2);
    let mut whole = field("ops", wit::FieldKind::Counter);
    whole.precision = Some(0);
    let s = Schema::from_descriptor(wit::Descriptor {
        name: "p".into(),
        version: "1".into(),
        default_interval_ms: 1000,
        fields: vec![pct, whole, field("raw", wit::FieldKind::Gauge)],
    })
    .expect("valid");
    let cases: [(u32, f64, f64); 6] = [
        (0, 12.345_678_9, 12.35),
        (0, -0.001, 0.0),
        (0, 99.995, 100.0),
        (1, 41.5, 42.0),
        (2, 0.1 + 0.2, 0.1 + 0.2),
        (0, 1e300, 1e300),
    ];
    for (field, given, shipped) in cases {
        let out = s
            .enforce(vec![sample(vec![(field, given)], vec![])], 1, &OutputLimits::default())
            .expect("within limits");
        let got = match &out.samples[0].values[0].1 {
            Value::Gauge(v) | Value::Counter(v) => *v,
            Value::Text(t) => panic!("text {t}"),
        };
        assert_eq!(got.to_bits(), shipped.to_bits(), "field {field}: {given} → {got}");
    }
    let nan = s
        .enforce(vec![sample(vec![(0, f64::NAN)], vec![])], 1, &OutputLimits::default())
        .expect("within limits");
    assert!(matches!(nan.samples[0].values[0].1, Value::Gauge(v) if v.is_nan()));
}

#[test]
fn a_precision_beyond_nine_places_is_refused() {
    let mut f = field("x", wit::FieldKind::Gauge);
    f.precision = Some(10);
    let err = Schema::from_descriptor(wit::Descriptor {
        name: "p".into(),
        version: "1".into(),
        default_interval_ms: 1000,
        fields: vec![f],
    })
    .expect_err("10 places");
    assert_eq!(err, SchemaError::BadPrecision { field: "x".into(), places: 10 });
    assert!(err.to_string().contains("at most 9"), "{err}");
}

/// The data wasmtime counts against the hostcall fuel when it copies
/// `samples` out of a guest: each list's length times its element's host
/// size, and each string's bytes.
fn copied(samples: &[wit::Sample]) -> usize {
    use std::mem::{size_of, size_of_val};
    let strings = |s: &wit::Sample| {
        s.labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + s.texts.iter().map(|t| t.value.len()).sum::<usize>()
    };
    size_of_val(samples)
        + samples
            .iter()
            .map(|s| {
                s.labels.len() * size_of::<(String, String)>()
                    + s.numbers.len() * size_of::<wit::Number>()
                    + s.texts.len() * size_of::<wit::Text>()
                    + strings(s)
            })
            .sum::<usize>()
}

#[test]
fn output_at_every_cap_fits_the_copy_budget_and_a_flood_does_not() {
    let limits = OutputLimits::default();
    let label = "l".repeat(limits.max_label_len);
    // Every sample at the label cap, as many values as allowed, and the
    // text budget spent: the largest output the caps let through.
    let per_sample = limits.max_values / limits.max_samples;
    let mut text_left = limits.max_text_bytes;
    let widest: Vec<wit::Sample> = (0..limits.max_samples)
        .map(|_| {
            let labels = (0..limits.max_labels)
                .map(|_| {
                    let take = label.len().min(text_left / 2);
                    text_left -= 2 * take;
                    (label[..take].to_owned(), label[..take].to_owned())
                })
                .collect();
            let texts = (0..per_sample)
                .map(|i| wit::Text { field: i as u32, value: String::new() })
                .collect();
            wit::Sample { labels, numbers: Vec::new(), texts }
        })
        .collect();
    assert!(schema().enforce(widest.clone(), 0, &limits).is_ok(), "within the caps");
    assert!(
        copied(&widest) <= limits.copy_budget(),
        "{} > {}",
        copied(&widest),
        limits.copy_budget()
    );

    // The `flood` test collector's million empty samples: refused from the
    // outer list's length alone.
    let flood = 1_000_000 * std::mem::size_of::<wit::Sample>();
    assert!(flood > limits.copy_budget());
}
