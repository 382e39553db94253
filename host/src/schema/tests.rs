use super::*;

fn field(name: &str, kind: wit::FieldKind) -> wit::Field {
    wit::Field { name: name.into(), kind, unit: String::new(), help: String::new() }
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
