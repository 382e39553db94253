use super::*;

fn publish(name: &str, canary: Option<CanaryPlan>) -> Publish {
    Publish {
        name: name.into(),
        version: "1.0.0".into(),
        manifest: None,
        signature: None,
        signer: None,
        canary,
        judge: None,
    }
}

fn agents(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("web-{i:02}")).collect()
}

const PLAN: CanaryPlan = CanaryPlan { percent: 10, watch_ms: 60_000, hold: false };

fn wants(c: &Catalog, agent: &str) -> Vec<String> {
    c.desired(agent).collectors.into_iter().map(|w| w.sha256).collect()
}

#[test]
fn a_plain_publish_reaches_every_agent_and_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Catalog::open(dir.path()).expect("open");
    let r = c.publish(publish("cpu", None), b"v1", &[], 1_000).expect("publish");
    assert_eq!((r.id, r.state), (1, ReleaseState::Promoted));
    assert_eq!(std::fs::read(c.blob_path(&r.sha256)).expect("blob"), b"v1");
    for a in agents(3) {
        assert_eq!(wants(&c, &a), vec![r.sha256.clone()]);
    }
    let again = c.publish(publish("cpu", None), b"v1", &[], 2_000);
    assert!(matches!(again, Err(CatalogError::Refused(_))), "{again:?}");
    let r2 = c.publish(publish("cpu", None), b"v2", &[], 3_000).expect("publish");
    let c = Catalog::open(dir.path()).expect("reopen");
    assert_eq!(c.releases().len(), 2);
    assert_eq!(c.releases()[0].state, ReleaseState::Superseded);
    assert_eq!(wants(&c, "web-00"), vec![r2.sha256]);
}

#[test]
fn a_canary_runs_on_about_n_percent_and_is_promoted_after_a_clean_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Catalog::open(dir.path()).expect("open");
    let old = c.publish(publish("cpu", None), b"v1", &[], 0).expect("publish");
    let fleet = agents(20);
    let new = c.publish(publish("cpu", Some(PLAN)), b"v2", &fleet, 1_000).expect("canary");
    let chosen = new.canary.as_ref().expect("canary").agents.clone();
    assert_eq!(chosen.len(), 2, "10 % of 20");
    for a in &fleet {
        let want = if chosen.contains(a) { &new.sha256 } else { &old.sha256 };
        assert_eq!(&wants(&c, a), &vec![want.clone()], "{a}");
    }
    let busy = c.publish(publish("cpu", None), b"v3", &fleet, 2_000);
    assert!(matches!(busy, Err(CatalogError::Refused(_))), "one candidate at a time");
    assert_eq!(c.judge(new.id, None, true, 30_000).expect("judge"), None, "window still open");
    let verdict = c.judge(new.id, None, true, 61_000).expect("judge");
    assert!(matches!(verdict, Some(Verdict::Passed(ref r)) if r.state == ReleaseState::Promoted));
    for a in &fleet {
        assert_eq!(wants(&c, a), vec![new.sha256.clone()]);
    }
    // At least one agent, even at 1 % of a few.
    assert_eq!(pick(&agents(3), "x", 1).len(), 1);
    assert_eq!(pick(&agents(3), "x", 100).len(), 3);
}

#[test]
fn a_failing_canary_is_rolled_back_and_every_agent_returns_to_the_old_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Catalog::open(dir.path()).expect("open");
    let old = c.publish(publish("cpu", None), b"v1", &[], 0).expect("publish");
    let fleet = agents(4);
    let new = c.publish(publish("cpu", Some(PLAN)), b"v2", &fleet, 1_000).expect("canary");
    let verdict = c.judge(new.id, Some("web-01: quarantined".into()), false, 2_000);
    let Some(Verdict::RolledBack(r)) = verdict.expect("judge") else { panic!("rolled back") };
    assert_eq!(r.reason.as_deref(), Some("web-01: quarantined"));
    for a in &fleet {
        assert_eq!(wants(&c, a), vec![old.sha256.clone()]);
    }
    // A canary of a new collector that nobody ran: removed everywhere.
    let lone = c.publish(publish("disk", Some(PLAN)), b"d1", &fleet, 3_000).expect("canary");
    let verdict = c.judge(lone.id, None, false, 64_000).expect("judge");
    assert!(
        matches!(verdict, Some(Verdict::RolledBack(ref r)) if r.reason.as_deref().is_some_and(|w| w.contains("no canary agent")))
    );
    assert!(c.desired("web-00").collectors.iter().all(|w| w.name != "disk"));
    // No agent connected: no canary.
    let none = c.publish(publish("net", Some(PLAN)), b"n1", &[], 4_000);
    assert!(matches!(none, Err(CatalogError::Refused(_))));
}

#[test]
fn held_promote_rollback_and_remove_by_hand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Catalog::open(dir.path()).expect("open");
    let v1 = c.publish(publish("cpu", None), b"v1", &[], 0).expect("publish");
    let plan = CanaryPlan { hold: true, ..PLAN };
    let v2 = c.publish(publish("cpu", Some(plan)), b"v2", &agents(2), 0).expect("canary");
    let held = c.judge(v2.id, None, true, 60_000).expect("judge");
    assert!(matches!(held, Some(Verdict::Passed(ref r)) if r.state == ReleaseState::Held));
    assert_eq!(c.promote("cpu", 70_000).expect("promote").id, v2.id);
    // Rolling back a promoted release promotes the one before it again.
    let back = c.rollback("cpu", "operator", 80_000).expect("rollback");
    assert_eq!(back.state, ReleaseState::RolledBack);
    assert_eq!(wants(&c, "web-00"), vec![v1.sha256.clone()]);
    assert_eq!(c.remove("cpu", 90_000).expect("remove").len(), 1);
    assert!(c.desired("web-00").collectors.is_empty());
    for refused in [c.promote("cpu", 0).err(), c.remove("cpu", 0).err()] {
        assert!(matches!(refused, Some(CatalogError::Refused(_))), "{refused:?}");
    }
    assert!(matches!(c.rollback("nope", "x", 0), Err(CatalogError::NotFound(_))));
    // Published again after the removal, then rolled back: nothing from
    // before the removal comes back.
    c.publish(publish("cpu", None), b"v3", &[], 100_000).expect("publish");
    c.rollback("cpu", "operator", 110_000).expect("rollback");
    assert!(c.desired("web-00").collectors.is_empty(), "{:?}", c.desired("web-00"));
}

#[test]
fn a_corrupt_catalog_is_an_error_and_a_failed_write_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(CATALOG_FILE), b"{ not json").expect("write");
    assert!(matches!(Catalog::open(dir.path()), Err(CatalogError::Corrupt { .. })));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Catalog::open(dir.path()).expect("open");
    c.publish(publish("cpu", None), b"v1", &[], 0).expect("publish");
    // The catalog file cannot be replaced: a directory stands where its temporary goes.
    std::fs::create_dir(dir.path().join("catalog.tmp")).expect("mkdir");
    let failed = c.publish(publish("cpu", None), b"v2", &[], 1);
    assert!(matches!(failed, Err(CatalogError::Io { .. })), "{failed:?}");
    assert_eq!(c.releases().len(), 1);
    assert!(!c.blob_path(&wasmtap_protocol::fleet::sha256_hex(b"v2")).exists(), "no orphan blob");
    assert_eq!(Catalog::open(dir.path()).expect("reopen").releases().len(), 1);
}

#[test]
fn a_shared_document_replaces_the_copy_and_a_bad_one_changes_nothing() {
    let (one, two) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let mut a = Catalog::open(one.path()).expect("open");
    let plan = Some(CanaryPlan { percent: 50, watch_ms: 60_000, hold: false });
    let mut p = publish("cpu", plan);
    p.judge = Some("proxy-a".into());
    a.publish(p, b"v1", &agents(2), 0).expect("publish");
    let doc = a.document().expect("document");
    let mut b = Catalog::open(two.path()).expect("open");
    b.replace(&doc).expect("replace");
    assert_eq!(b.releases(), a.releases());
    assert_eq!(b.document().expect("document"), doc, "round trip");
    let judge = b.releases()[0].canary.as_ref().and_then(|k| k.judge.clone());
    assert_eq!(judge.as_deref(), Some("proxy-a"));
    assert_eq!(Catalog::open(two.path()).expect("reopen").releases(), a.releases(), "saved");
    for bad in [&b"{ not json"[..], br#"{"releases": 3}"#] {
        assert!(matches!(b.replace(bad), Err(CatalogError::Corrupt { .. })));
        assert_eq!(b.releases(), a.releases(), "unchanged");
    }
}
